"""Run a simulation: validate the request, render scenes in parallel, write files, resume.

Output layout (the same as a user's raw data, so ``nanoseg dataset build`` reads it unchanged)::

    OUT_DIR/images/sim_00000.mrc     uint16 micrograph, pixel size in the header
    OUT_DIR/labels/sim_00000.png     0/255 label map (projected particle footprints)
    OUT_DIR/metadata/sim_00000.json  everything about the micrograph (written last)
    OUT_DIR/metadata.csv             one row per micrograph, rebuilt at the end of each run

A micrograph is complete when its JSON exists; a run that is started again skips complete
micrographs and redoes the others (each is determined by the seed alone, so the result is the
same as an uninterrupted run).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from nanoseg.errors import NanosegError
from nanoseg.io import check_output_dir, write_csv, write_json, write_mask, write_mrc
from nanoseg.simulate.scene import SceneSettings, plan_scene, render_scene
from nanoseg.simulate.structures import MATERIALS

__all__ = ["SimulationError", "parse_range", "simulate", "validate"]

#: The smallest particle must be at least this many pixels wide at the coarsest pixel size.
MIN_PARTICLE_PX = 4.0


class SimulationError(NanosegError):
    """The simulation request is impossible (unknown material, sizes that cannot work, ...)."""


def parse_range(text: str, what: str) -> tuple[float, float]:
    """Parse ``"a:b"`` or ``"a"`` into ``(a, b)``; both positive, ``a <= b``.

    Parameters
    ----------
    text : str
    what : str
        Option name for the error message.
    """
    parts = str(text).split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise SimulationError(
            f"{what} must be a number or a range 'min:max', not '{text}'"
        ) from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise SimulationError(f"{what} must be positive, as 'min:max' or one value, not '{text}'")
    low, high = values
    if low > high:
        raise SimulationError(f"{what} range '{text}' has its minimum above its maximum")
    return low, high


def validate(
    n: int,
    materials: Sequence[str],
    size: int,
    pixel_size: tuple[float, float],
    particle_size: tuple[float, float],
    variants: int,
    workers: int,
    film_roughness: bool = False,
) -> SceneSettings:
    """Check a request before any work starts; return the scene settings.

    Raises
    ------
    SimulationError
        With one line saying what is wrong.
    """
    if n < 1:
        raise SimulationError(f"--n must be at least 1, not {n}")
    if workers < 1:
        raise SimulationError(f"--workers must be at least 1, not {workers}")
    if variants < 1:
        raise SimulationError(f"--variants must be at least 1, not {variants}")
    names = tuple(m.strip().lower() for m in materials if m.strip())
    unknown = [m for m in names if m not in MATERIALS]
    if unknown or not names:
        raise SimulationError(
            f"unknown material '{','.join(unknown) or '(none)'}'; "
            f"choose from {', '.join(MATERIALS)}"
        )
    if not 64 <= size <= 8192:
        raise SimulationError(f"--size must be between 64 and 8192 px, not {size}")
    if not (0.005 <= pixel_size[0] and pixel_size[1] <= 1.0):
        raise SimulationError(
            f"--pixel-size {pixel_size[0]:g}:{pixel_size[1]:g} nm is outside 0.005-1 nm/px"
        )
    if not (0.5 <= particle_size[0] and particle_size[1] <= 50):
        raise SimulationError("--particle-size must lie within 0.5-50 nm")
    smallest_px = particle_size[0] / pixel_size[1]
    if smallest_px < MIN_PARTICLE_PX:
        raise SimulationError(
            f"pixel size {pixel_size[1]:g} nm is too coarse for {particle_size[0]:g} nm particles "
            f"({smallest_px:.1f} px wide; at least {MIN_PARTICLE_PX:g} px needed)"
        )
    field = size * pixel_size[0]
    if particle_size[0] > 0.5 * field:
        raise SimulationError(
            f"{particle_size[0]:g} nm particles do not fit a {size} px field at "
            f"{pixel_size[0]:g} nm/px ({field:.1f} nm wide)"
        )
    return SceneSettings(names, size, pixel_size, particle_size, variants, film_roughness)


def _stem(index: int) -> str:
    return f"sim_{index:05d}"


def _complete(out: Path, index: int) -> bool:
    return (out / "metadata" / f"{_stem(index)}.json").exists()


def _scene_job(settings: SceneSettings, scene_index: int, seed: int, n: int, out: str) -> int:
    """Render one scene and write its missing micrographs; return how many were written."""
    from nanoseg.simulate.optics import configure_abtem

    configure_abtem()
    out_dir = Path(out)
    scene = plan_scene(settings, scene_index, seed)
    written = 0
    for variant, (image, label, meta) in enumerate(render_scene(scene)):
        index = scene_index * settings.variants + variant
        if index >= n or _complete(out_dir, index):
            continue
        stem = _stem(index)
        pixel_size = meta["pixel_size_nm"]
        write_mrc(out_dir / "images" / f"{stem}.mrc", image, pixel_size)
        write_mask(out_dir / "labels" / f"{stem}.png", label, pixel_size)
        row = {"file": f"images/{stem}.mrc", "label": f"labels/{stem}.png", "seed": seed, **meta}
        write_json(out_dir / "metadata" / f"{stem}.json", row)
        written += 1
    return written


def _scene_cost(job: tuple[SceneSettings, int, int]) -> float:
    """Rough work of rendering a scene: its particles' multislice grids, then the lens."""
    from nanoseg.simulate import optics

    settings, scene_index, seed = job
    scene = plan_scene(settings, scene_index, seed)
    work = 0.0
    for particle in scene.particles:
        side = optics.particle_gpts(
            2 * (particle.projected_radius + optics.BOX_MARGIN),
            sampling=optics.particle_sampling(scene.pixel_size * 10),
        )
        thickness = np.ptp(particle.atoms.positions[:, 2]) + 2.0
        work += side**2 * thickness / optics.SLICE_THICKNESS
    return work + settings.variants * (settings.size * 2) ** 2


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of spawned worker processes with one thread each.

    Several single-threaded processes beat threads inside abTEM on this kind of machine. The
    thread limits are set in the environment the workers inherit and restored afterwards.
    """
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    previous = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            yield pool
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def simulate(
    out_dir: str | os.PathLike[str],
    n: int,
    *,
    materials: Sequence[str] = ("au", "pd", "cdse"),
    size: int = 1024,
    pixel_size: tuple[float, float] = (0.02, 0.05),
    particle_size: tuple[float, float] = (1.5, 10.0),
    variants: int = 10,
    seed: int = 0,
    workers: int = 1,
    film_roughness: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate `n` labelled micrographs into `out_dir` (see the module docstring for the layout).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder (created; complete micrographs already there are kept).
    n : int
        Number of micrographs.
    materials : sequence of str
        Particle materials, keys of :data:`~nanoseg.simulate.structures.MATERIALS`.
    size : int
        Micrograph side in pixels.
    pixel_size : (float, float)
        Range of pixel sizes in nm (drawn log-uniformly per scene).
    particle_size : (float, float)
        Range of particle diameters in nm.
    variants : int
        Micrographs recorded per simulated scene (different lens, dose and camera).
    seed : int
        Same seed, same files, byte for byte.
    workers : int
        Worker processes.
    film_roughness : bool
        Give the carbon film a varying thickness (0.1-2.5 nm RMS over 0.3-2 nm), which adds
        speckle at medium magnification. Off by default: the bundled model was trained without.
    progress : callable, optional
        Called as ``progress(done, total)`` after each scene.

    Returns
    -------
    pathlib.Path
        The output folder.
    """
    settings = validate(
        n, materials, size, pixel_size, particle_size, variants, workers, film_roughness
    )
    out = check_output_dir(out_dir)
    for sub in ("images", "labels", "metadata"):
        (out / sub).mkdir(exist_ok=True)
    scenes = math.ceil(n / settings.variants)
    todo = [
        k
        for k in range(scenes)
        if not all(
            _complete(out, i)
            for i in range(k * settings.variants, min(n, (k + 1) * settings.variants))
        )
    ]
    done = n - sum(
        sum(
            1
            for i in range(k * settings.variants, min(n, (k + 1) * settings.variants))
            if not _complete(out, i)
        )
        for k in todo
    )
    if progress:
        progress(done, n)
    for written in _run(settings, todo, seed, n, str(out), workers):
        done += written
        if progress:
            progress(done, n)
    write_metadata_table(out)
    return out


def _run(
    settings: SceneSettings, todo: list[int], seed: int, n: int, out: str, workers: int
) -> Iterator[int]:
    if workers == 1 or len(todo) <= 1:
        for scene in todo:
            yield _scene_job(settings, scene, seed, n, out)
        return
    with worker_pool(workers) as pool:
        # Longest scenes first: a big-particle scene left for last would run alone on one
        # worker while the others idle. Planning is cheap next to rendering.
        jobs = [(settings, k, seed) for k in todo]
        costs = dict(zip(todo, pool.map(_scene_cost, jobs), strict=True))
        order = sorted(todo, key=lambda k: (-costs[k], k))
        futures = [pool.submit(_scene_job, settings, k, seed, n, out) for k in order]
        for future in as_completed(futures):
            yield future.result()


def write_metadata_table(out: Path) -> Path:
    """Rebuild ``metadata.csv`` from the per-micrograph JSON files (nested fields as JSON text)."""
    rows: list[dict[str, Any]] = []
    for path in sorted((out / "metadata").glob("sim_*.json")):
        row = json.loads(path.read_text())
        camera = row.pop("camera", {})
        row.update({f"camera_{k}": v for k, v in camera.items()})
        row["particles"] = json.dumps(row.get("particles", []), separators=(",", ":"))
        rows.append(row)
    return write_csv(out / "metadata.csv", rows)
