"""Regenerate every figure and number of ``docs/simulation.md`` (the simulator's realism).

Run from the repository root::

    .venv/bin/python docs/figures/make_simulation_figures.py

It simulates its micrographs with :func:`nanoseg.simulate.simulate` into a temporary folder
(``--work DIR`` keeps them, and a second run with the same folder resumes), measures them, and
writes PNG figures and ``simulation_realism.json`` into ``--out`` (default ``docs/figures``).
Everything but the timings is determined by ``--seed``.

Real micrographs are read from ``--real-dev`` (default ``../shared/data``, next to the
repository) and skipped when absent:

- ``real-dev-hrtem``: four tiles of msa-em/microscopy-seg-track (CC-BY-4.0); they may appear in
  the committed montage, with the credit in its title.
- ``real-dev``: crops with no licence. Their pixels never go into ``--out``: only numbers
  (contrast, power spectra) are compared with them. ``--private-out DIR`` writes a montage with
  them for local viewing (do not commit it).

The paper's released combined network is read from ``--paper-weights`` (never copied) with
:func:`nanoseg.model.import_keras`; that part is skipped when the file is absent.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]

#: HRTEM pixel sizes of the paper's data, nm/px.
HRTEM_PIXEL = (0.02, 0.04)
#: Medium magnification (mass-thickness contrast), nm/px.
MEDIUM_PIXEL = (0.1, 0.2)
#: Micrographs recorded per simulated scene.
VARIANTS = 4
#: Gaussian smoothing (px) before the particle contrast is measured.
SMOOTH_PX = 2.0
#: Particle pixels used for contrast lie this deep inside the label, nm.
INNER_NM = 0.25
#: Background pixels lie this far outside every label (CTF delocalisation), nm.
GUARD_NM = 1.0
#: Spatial-frequency band of the lattice fringes of Au, Pd and CdSe, 1/nm (d = 0.18-0.40 nm).
BRAGG_BAND = (2.5, 5.5)
#: Electron doses of the matched Au/CdSe/Pd comparison, e/A^2.
MATCHED_DOSES = (100.0, 1000.0, 10000.0)
#: Gold lattice constant, nm, and the spacings marked in the power spectra.
AU_A = 0.4078
AU_SPACINGS = {
    "111": AU_A / math.sqrt(3),
    "200": AU_A / 2,
    "220": AU_A / math.sqrt(8),
}
#: Credit line of the CC-BY-4.0 real tiles.
REAL_CREDIT = "real tiles: msa-em/microscopy-seg-track, CC-BY-4.0"


@dataclass(frozen=True)
class SetSpec:
    """One simulated set: ``simulate(...)`` arguments."""

    materials: tuple[str, ...]
    n: int
    pixel_size: tuple[float, float]
    particle_size: tuple[float, float]
    seed_offset: int


@dataclass
class Sample:
    """One simulated micrograph with its label and metadata."""

    image: np.ndarray
    label: np.ndarray
    meta: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def rounded(value: Any, digits: int = 4) -> Any:
    """Round floats (also inside lists and dicts) to `digits` significant digits for the JSON.

    Parameters
    ----------
    value : Any
        Number, or list/tuple/dict of them.
    digits : int
        Significant digits.

    Returns
    -------
    Any
        The same structure with rounded floats (numpy scalars become Python numbers).
    """
    if isinstance(value, dict):
        return {str(k): rounded(v, digits) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return rounded(value.tolist(), digits)
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    if isinstance(value, np.integer | bool | np.bool_):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float | np.floating):
        value = float(value)
        if not math.isfinite(value) or value == 0:
            return None if not math.isfinite(value) else 0.0
        return float(f"{value:.{digits}g}")
    return value


def mean_std(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, standard deviation and count of `values` (NaNs dropped)."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if not len(array):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(array.mean()), "std": float(array.std()), "n": len(array)}


def save_figure(fig: Any, path: Path, *, dpi: int = 100, colours: int = 96) -> int:
    """Save a Matplotlib figure as a small palette PNG (commit-sized); return its size in bytes.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : pathlib.Path
    dpi : int
        Rendering resolution.
    colours : int
        Palette size (greyscale micrographs need few levels; plots a handful of colours).

    Returns
    -------
    int
        File size in bytes.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    palette = image.quantize(
        colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    palette.save(path, optimize=True)
    return path.stat().st_size


def stretch(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Display limits: the `low` and `high` percentiles of a 3x3 median-filtered copy."""
    filtered = ndimage.median_filter(image, 3)
    lo, hi = np.percentile(filtered, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1)


def show(ax: Any, image: np.ndarray, title: str = "", limits: tuple[float, float] | None = None):
    """Show a micrograph (3x3 median filtered, grey, no axes) with a small title."""
    filtered = ndimage.median_filter(image, 3)
    lo, hi = limits if limits is not None else stretch(image)
    ax.imshow(filtered, cmap="gray", vmin=lo, vmax=hi, interpolation="antialiased")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=7)


def scale_bar(ax: Any, shape: tuple[int, int], pixel_nm: float, length_nm: float) -> None:
    """Draw a white scale bar of `length_nm` at the lower left of an image axis."""
    rows, cols = shape
    px = length_nm / pixel_nm
    y = rows * 0.93
    ax.plot([cols * 0.05, cols * 0.05 + px], [y, y], color="white", lw=2.5)
    ax.text(
        cols * 0.05 + px / 2,
        y - rows * 0.03,
        f"{length_nm:g} nm",
        color="white",
        ha="center",
        va="bottom",
        fontsize=6,
    )


def power_spectrum(image: np.ndarray) -> np.ndarray:
    """Power spectrum (fftshifted) of a Hann-windowed, zero-mean, unit-variance image."""
    data = np.asarray(image, np.float64)
    data = (data - data.mean()) / max(data.std(), 1e-12)
    window = np.outer(np.hanning(data.shape[0]), np.hanning(data.shape[1]))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(data * window))) ** 2
    return spectrum / (window**2).sum()


def frequency_grid(shape: tuple[int, int], pixel: float = 1.0) -> np.ndarray:
    """Radial spatial frequency (fftshifted) in 1/(unit of `pixel`) for an image of `shape`."""
    ky = np.fft.fftshift(np.fft.fftfreq(shape[0], pixel))
    kx = np.fft.fftshift(np.fft.fftfreq(shape[1], pixel))
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def radial_profile(
    spectrum: np.ndarray, k: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of `spectrum` in rings of `k` between consecutive `edges`.

    Returns
    -------
    centres, profile : numpy.ndarray
        Ring centres and mean power (NaN for empty rings).
    """
    index = np.digitize(k.ravel(), edges) - 1
    valid = (index >= 0) & (index < len(edges) - 1)
    sums = np.bincount(index[valid], spectrum.ravel()[valid], minlength=len(edges) - 1)
    counts = np.bincount(index[valid], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = sums / counts
    return (edges[:-1] + edges[1:]) / 2, profile


def center_crops(image: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping-as-possible `size` crops: the left and right ends of the middle band."""
    rows, cols = image.shape
    r0 = max(0, (rows - size) // 2)
    band = image[r0 : r0 + size]
    if cols <= size:
        return [band[:, :size]]
    return [band[:, :size], band[:, cols - size :]]


# ---------------------------------------------------------------------------------------------
# simulated data
# ---------------------------------------------------------------------------------------------


def set_specs(n_hrtem: int, n_medium: int) -> dict[str, SetSpec]:
    """The simulated sets: Au, CdSe and Pd at HRTEM pixel sizes with the same seed (so the
    same pixel size and particle-size draw per scene), paper-like 1.5-3 nm CdSe dots, and
    medium-magnification Au/Pd."""
    return {
        "au": SetSpec(("au",), n_hrtem, HRTEM_PIXEL, (2.0, 8.0), 0),
        "cdse": SetSpec(("cdse",), n_hrtem, HRTEM_PIXEL, (2.0, 8.0), 0),
        "pd": SetSpec(("pd",), n_hrtem, HRTEM_PIXEL, (2.0, 8.0), 0),
        "cdse_dots": SetSpec(("cdse",), max(4, n_hrtem // 2), HRTEM_PIXEL, (1.5, 3.0), 1),
        "medium": SetSpec(("au", "pd"), n_medium, MEDIUM_PIXEL, (3.0, 8.0), 2),
    }


def load_set(folder: Path) -> list[Sample]:
    """Read the micrographs, labels and metadata ``simulate`` wrote into `folder`."""
    from nanoseg.io import read_label_map, read_micrograph

    samples = []
    for path in sorted((folder / "metadata").glob("sim_*.json")):
        meta = json.loads(path.read_text())
        image = read_micrograph(folder / meta["file"]).data
        label = read_label_map(folder / meta["label"], image.shape)
        samples.append(Sample(image, label, meta))
    return samples


def simulate_sets(
    work: Path, specs: dict[str, SetSpec], *, size: int, seed: int, workers: int
) -> tuple[dict[str, list[Sample]], dict[str, float]]:
    """Simulate (or resume) every set into ``work/<name>`` and load it.

    Returns
    -------
    samples : dict of str to list of Sample
    seconds : dict of str to float
        Wall time per set.
    """
    from nanoseg.simulate import simulate

    samples, seconds = {}, {}
    for name, spec in specs.items():
        start = time.perf_counter()
        simulate(
            work / name,
            spec.n,
            materials=spec.materials,
            size=size,
            pixel_size=spec.pixel_size,
            particle_size=spec.particle_size,
            variants=VARIANTS,
            seed=seed + spec.seed_offset,
            workers=workers,
        )
        seconds[name] = time.perf_counter() - start
        samples[name] = load_set(work / name)
        print(f"  set {name}: {len(samples[name])} micrographs, {seconds[name]:.0f} s", flush=True)
    return samples, seconds


def direct_camera(dose: float, pixel_nm: float) -> Any:
    """A fixed direct-detection camera for the controlled scenes (no spikes, flat field)."""
    from nanoseg.simulate.camera import FULL_WELL, Camera

    electrons = dose * (pixel_nm * 10) ** 2
    gain = float(min(2.0, (FULL_WELL - 100.0) / (4.0 * electrons)))
    return Camera(dose, "direct", 1.0, gain, 100.0, 2.0, 0.0, 0)


def scherzer_nm(cs_mm: float, voltage_kv: float) -> float:
    """Scherzer defocus in nm (abTEM's sign: positive is underfocus)."""
    from nanoseg.simulate.optics import wavelength

    return math.sqrt(1.5 * cs_mm * 1e7 * wavelength(voltage_kv * 1e3)) / 10


def render_matched(material: str, index: int, seed: int, size: int) -> list[tuple]:
    """Scene `index` of `material` under the matched imaging conditions, at each matched dose.

    Planned with the same seed and index for every material, so pixel size, particle-size
    draw and coverage target agree; the optics (300 kV, Cs 10 um at Scherzer focus, 5 nm
    carbon) and the camera are fixed. Runs in a worker process.

    Returns
    -------
    list of (image, label, meta)
        One per dose in :data:`MATCHED_DOSES`.
    """
    from nanoseg.simulate.optics import configure_abtem
    from nanoseg.simulate.scene import Imaging, SceneSettings, plan_scene, render_scene

    configure_abtem()
    settings = SceneSettings((material,), size, HRTEM_PIXEL, (2.0, 8.0), variants=1)
    scene = plan_scene(settings, index, seed)
    scene.voltage_kv, scene.carbon_nm = 300.0, 5.0
    scene.imaging = [
        Imaging(0.01, scherzer_nm(0.01, 300.0), 3.0, 0.1, None, direct_camera(d, scene.pixel_size))
        for d in MATCHED_DOSES
    ]
    return render_scene(scene)


def matched_study(seed: int, size: int, scenes: int, workers: int) -> dict[str, list[list[Sample]]]:
    """Render the matched Au/CdSe/Pd scenes (in parallel).

    Returns
    -------
    dict of str to list of list of Sample
        Per material, per scene, one Sample per dose.
    """
    from nanoseg.simulate.runner import worker_pool

    jobs = [(m, k) for m in ("au", "cdse", "pd") for k in range(scenes)]
    with worker_pool(workers) as pool:
        futures = [pool.submit(render_matched, m, k, seed, size) for m, k in jobs]
        results = [f.result() for f in futures]
    study: dict[str, list[list[Sample]]] = {"au": [], "cdse": [], "pd": []}
    for (material, _), rendered in zip(jobs, results, strict=True):
        study[material].append([Sample(img.astype(np.float32), lab, m) for img, lab, m in rendered])
    return study


# ---------------------------------------------------------------------------------------------
# contrast
# ---------------------------------------------------------------------------------------------


def regions(label: np.ndarray, pixel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Particle interior (deeper than :data:`INNER_NM`) and background (farther than
    :data:`GUARD_NM` from any particle) of a label map."""
    inside = ndimage.distance_transform_edt(label) * pixel_nm
    outside = ndimage.distance_transform_edt(~label) * pixel_nm
    return inside > INNER_NM, outside > GUARD_NM


def bragg_band_power(image: np.ndarray, pixel_nm: float) -> np.ndarray:
    """Local power of the image band-passed to :data:`BRAGG_BAND` (relative intensity)."""
    data = np.asarray(image, np.float64)
    data = data / data.mean() - 1.0
    ky = np.fft.fftfreq(data.shape[0], pixel_nm)
    kx = np.fft.fftfreq(data.shape[1], pixel_nm)
    k = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    band = (k >= BRAGG_BAND[0]) & (k <= BRAGG_BAND[1])
    return np.fft.ifft2(np.fft.fft2(data) * band).real ** 2


def particle_contrast(
    image: np.ndarray, label: np.ndarray, pixel_nm: float, offset: float | None
) -> dict[str, Any] | None:
    """Contrast of the labelled particles against the carbon in one micrograph.

    After a 3x3 median filter (X-ray spikes) and a Gaussian of :data:`SMOOTH_PX` px:

    - ``cnr``: ``|mean(particle) - mean(background)| / std(background)``;
    - ``relative``: ``(mean(background) - mean(particle)) / (mean(background) - offset)``,
      the fraction of the beam the particles remove (positive: particles darker; only with a
      known camera offset);
    - ``fringe``: power in the lattice-fringe band :data:`BRAGG_BAND` inside the particles over
      that in the background (1: no more lattice signal than the carbon and the noise); None
      when the band is not below the Nyquist frequency (medium magnification).

    Returns
    -------
    dict or None
        None when the micrograph has too few particle or background pixels.
    """
    inner, background = regions(label, pixel_nm)
    if inner.sum() < 50 or background.sum() < 2000:
        return None
    filtered = ndimage.median_filter(np.asarray(image, np.float64), 3)
    smooth = ndimage.gaussian_filter(filtered, SMOOTH_PX)
    mean_p, mean_b, std_b = (
        smooth[inner].mean(),
        smooth[background].mean(),
        smooth[background].std(),
    )
    out: dict[str, Any] = {"cnr": float(abs(mean_p - mean_b) / std_b), "fringe": None}
    if BRAGG_BAND[1] < 0.5 / pixel_nm:
        band = bragg_band_power(filtered, pixel_nm)
        out["fringe"] = float(band[inner].mean() / band[background].mean())
    if offset is not None:
        out["relative"] = float((mean_b - mean_p) / (mean_b - offset))
    return out


def summarise_contrast(samples: Sequence[Sample]) -> dict[str, Any]:
    """Mean and spread of :func:`particle_contrast` over simulated micrographs."""
    rows = [
        particle_contrast(s.image, s.label, s.meta["pixel_size_nm"], s.meta["camera"]["offset"])
        for s in samples
    ]
    rows = [r for r in rows if r is not None]
    return {key: mean_std([r[key] for r in rows]) for key in ("cnr", "relative", "fringe")}


def real_contrast(folder: Path, pixel_nm: float) -> dict[str, Any]:
    """:func:`particle_contrast` (CNR and fringe ratio) of real images with masks in `folder`.

    `pixel_nm` is only an estimate (the files record none); it sets the guard distances.
    """
    from nanoseg.io import read_label_map, read_micrograph

    rows = []
    for path in sorted((folder / "images").glob("*.png")):
        image = read_micrograph(path).data
        label = read_label_map(folder / "masks" / path.name, image.shape)
        row = particle_contrast(image, label, pixel_nm, None)
        if row is not None:
            rows.append(row)
    return {
        "assumed_pixel_nm": pixel_nm,
        **{key: mean_std([r[key] for r in rows]) for key in ("cnr", "fringe")},
    }


def contrast_figure(out: Path, study: dict[str, list[list[Sample]]], table: dict[str, Any]) -> int:
    """Au, CdSe and Pd of matched scene 0 at 1000 e/A^2 with one display stretch, and the
    contrast-to-noise and fringe ratios against dose."""
    import matplotlib.pyplot as plt

    dose_index = MATCHED_DOSES.index(1000.0)
    fig = plt.figure(figsize=(9.0, 6.6))
    grid = fig.add_gridspec(
        2,
        6,
        height_ratios=[1.35, 1.0],
        hspace=0.3,
        wspace=0.9,
        left=0.07,
        right=0.98,
        top=0.88,
        bottom=0.08,
    )
    relative = {}
    for material in ("au", "cdse", "pd"):
        sample = study[material][0][dose_index]
        offset = sample.meta["camera"]["offset"]
        _, background = regions(sample.label, sample.meta["pixel_size_nm"])
        signal = ndimage.median_filter(sample.image - offset, 3)
        relative[material] = (sample.image - offset) / signal[background].mean()
    limits = stretch(relative["au"], 0.2, 99.8)
    names = {"au": "Au", "cdse": "CdSe", "pd": "Pd"}
    for i, material in enumerate(("au", "cdse", "pd")):
        ax = fig.add_subplot(grid[0, 2 * i : 2 * i + 2])
        sample = study[material][0][dose_index]
        show(ax, relative[material], limits=limits)
        ax.contour(sample.label, levels=[0.5], colors=["#ffb000"], linewidths=0.6)
        pixel = sample.meta["pixel_size_nm"]
        scale_bar(ax, sample.image.shape, pixel, 2.0)
        ax.set_title(f"{names[material]}: 1000 e/Å², {pixel:.3f} nm/px", fontsize=8)
    for j, (key, ylabel) in enumerate(
        (("cnr", "particle contrast / background noise"), ("fringe", "Bragg-band power ratio"))
    ):
        ax = fig.add_subplot(grid[1, 3 * j : 3 * j + 3])
        for material, colour in (("au", "#c08000"), ("pd", "#4060c0"), ("cdse", "#c03030")):
            stats = table[material]
            means = [stats[f"{d:g}"][key]["mean"] for d in MATCHED_DOSES]
            stds = [stats[f"{d:g}"][key]["std"] for d in MATCHED_DOSES]
            ax.errorbar(
                MATCHED_DOSES,
                means,
                yerr=stds,
                marker="o",
                capsize=3,
                color=colour,
                label=names[material],
            )
        ax.set_xscale("log")
        ax.set_xlabel("dose (e/Å²)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Matched scenes: same pixel size and particle-size draw, 300 kV, Cs 10 µm at Scherzer "
        "focus, 5 nm carbon, same camera.\nTop: scene 0 at the same dose and the same display "
        "stretch (intensity / background mean). Bottom: mean ± std over the scenes.",
        fontsize=8.5,
    )
    return save_figure(fig, out / "contrast_au_vs_cdse.png", dpi=95)


# ---------------------------------------------------------------------------------------------
# carbon film: atomistic multislice against Gaussian phase screens
# ---------------------------------------------------------------------------------------------


def carbon_comparison(out: Path, seed: int, realisations: int = 3) -> dict[str, Any]:
    """Image a 5 nm amorphous carbon film two ways and compare images and power spectra.

    Atomistic: random carbon atoms (minimum C-C distance, 2 g/cm^3) and abTEM multislice
    (Lobato potentials, 2 A slices). Screens: the simulator's Gaussian phase screens with the
    atomistic spectrum (:func:`nanoseg.simulate.optics.carbon_screen`), 15 A apart, Fresnel
    propagation between them. 512 x 512 px at 0.2 A, 300 kV, no camera noise. Also records
    the projected phase of both films and, as a convergence check, the image contrast of
    screens 5 A and 2 A apart.
    """
    import abtem
    import matplotlib.pyplot as plt

    from nanoseg.simulate import optics
    from nanoseg.simulate.scene import CARBON_SLAB
    from nanoseg.simulate.structures import amorphous_carbon

    n, sampling, thickness, energy = 512, 0.2, 50.0, 300e3
    extent = n * sampling
    settings = {
        "uncorrected_scherzer": {"cs_mm": 1.2, "defocus_nm": scherzer_nm(1.2, 300.0)},
        "corrected_scherzer": {"cs_mm": 0.01, "defocus_nm": scherzer_nm(0.01, 300.0)},
        "defocus_100nm": {"cs_mm": 1.2, "defocus_nm": 100.0},
    }
    optics.carbon_psd()  # built once per process; not part of the timing
    images: dict[str, dict[str, list[np.ndarray]]] = {
        s: {"atomistic": [], "screens": []} for s in settings
    }
    timings: dict[str, list[float]] = {"atomistic": [], "screens": []}
    phase_std: dict[str, list[float]] = {"atomistic": [], "screens": []}
    spacings = (CARBON_SLAB, 5.0, 2.0)
    spacing_std: dict[str, dict[float, list[float]]] = {
        s: {d: [] for d in spacings} for s in settings
    }

    def film(rng: np.random.Generator, spacing: float) -> tuple[np.ndarray, np.ndarray]:
        """Exit wave and total phase of the screens, `spacing` A apart."""
        slabs = max(1, round(thickness / spacing))
        slab = thickness / slabs
        psi, total = np.ones((n, n), np.complex64), np.zeros((n, n), np.float64)
        for _ in range(slabs):
            phase = optics.carbon_screen((n, n), sampling, slab, energy, rng)
            total += phase
            psi = optics.propagate(
                psi * np.exp(1j * phase).astype(np.complex64), sampling, slab, energy
            )
        return psi, total

    def picture(psi: np.ndarray, lens: dict[str, float]) -> np.ndarray:
        return optics.image(
            psi,
            sampling,
            energy,
            cs=lens["cs_mm"] * 1e7,
            defocus=lens["defocus_nm"] * 10,
            focal_spread=30.0,
            angular_spread=0.1,
            aperture=None,
        )

    for r in range(realisations):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7000 + r]))
        atoms = amorphous_carbon(extent, extent, thickness, rng)
        start = time.perf_counter()
        potential = abtem.Potential(
            atoms,
            gpts=(n, n),
            slice_thickness=2.0,
            projection="infinite",
            parametrization="lobato",
        ).build(lazy=False)
        waves = abtem.PlaneWave(energy=energy).multislice(potential, lazy=False)
        atomistic = np.asarray(waves.array, np.complex64).T
        timings["atomistic"].append(time.perf_counter() - start)
        projected = np.asarray(potential.array, np.float64).sum(axis=0)
        phase_std["atomistic"].append(float(projected.std() * optics.sigma(energy)))

        start = time.perf_counter()
        screens, total = film(rng, CARBON_SLAB)
        timings["screens"].append(time.perf_counter() - start)
        phase_std["screens"].append(float(total.std()))
        for name, lens in settings.items():
            for method, psi in (("atomistic", atomistic), ("screens", screens)):
                images[name][method].append(picture(psi, lens))
            spacing_std[name][CARBON_SLAB].append(float(images[name]["screens"][-1].std()))
        for spacing in spacings[1:]:
            psi, _ = film(rng, spacing)
            for name, lens in settings.items():
                spacing_std[name][spacing].append(float(picture(psi, lens).std()))

    k = frequency_grid((n, n), sampling)
    edges = np.linspace(0, 2 / 3 * 0.5 / sampling, 97)
    result: dict[str, Any] = {
        "grid": {"px": n, "sampling_A": sampling, "thickness_nm": thickness / 10},
        "voltage_kv": 300.0,
        "focal_spread_nm": 3.0,
        "angular_spread_mrad": 0.1,
        "realisations": realisations,
        "settings": {},
        "seconds_per_film": {m: mean_std(t) for m, t in timings.items()},
        "projected_phase_std_rad": {m: mean_std(v) for m, v in phase_std.items()},
    }
    fig, axes = plt.subplots(3, 3, figsize=(9.0, 9.0))
    for row, (name, lens) in enumerate(settings.items()):
        entry: dict[str, Any] = {**lens}
        entry["image_std_screens_by_spacing_A"] = {
            f"{d:g}": mean_std(v) for d, v in spacing_std[name].items()
        }
        profiles = {}
        for method in ("atomistic", "screens"):
            stds = [float(img.std()) for img in images[name][method]]
            entry[f"image_std_{method}"] = mean_std(stds)
            spectra = [power_spectrum(img) * img.var() for img in images[name][method]]
            centres, profile = radial_profile(np.mean(spectra, axis=0), k, edges)
            profiles[method] = profile
        ratio = np.log10(profiles["screens"][1:] / profiles["atomistic"][1:])
        entry["spectrum_log10_ratio_mean_abs"] = float(np.nanmean(np.abs(ratio)))
        entry["spectrum_log10_ratio_max_abs"] = float(np.nanmax(np.abs(ratio)))
        result["settings"][name] = entry
        first = {m: images[name][m][0] for m in ("atomistic", "screens")}
        lo = min(np.percentile(v, 0.5) for v in first.values())
        hi = max(np.percentile(v, 99.5) for v in first.values())
        for col, method in enumerate(("atomistic", "screens")):
            ax = axes[row, col]
            ax.imshow(first[method][:256, :256], cmap="gray", vmin=lo, vmax=hi)
            ax.set_axis_off()
            std = entry[f"image_std_{method}"]["mean"]
            ax.set_title(f"{method}, {name.replace('_', ' ')}\nimage std {std:.4f}", fontsize=8)
        ax = axes[row, 2]
        for method, colour in (("atomistic", "k"), ("screens", "#d04000")):
            ax.semilogy(centres[1:], profiles[method][1:], color=colour, lw=1, label=method)
        ax.set_xlabel("spatial frequency (1/Å)", fontsize=8)
        ax.set_ylabel("radial power", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.set_title(
            f"Cs {lens['cs_mm']:g} mm, Δf {lens['defocus_nm']:.1f} nm; "
            f"mean |log10 ratio| {entry['spectrum_log10_ratio_mean_abs']:.3f}",
            fontsize=8,
        )
    fig.suptitle(
        "5 nm amorphous carbon at 300 kV, 0.2 Å sampling (5.1 nm crops shown): "
        "atomistic multislice vs Gaussian phase screens",
        fontsize=9,
    )
    fig.tight_layout()
    result["figure_bytes"] = save_figure(fig, out / "carbon_atomistic_vs_screens.png", dpi=85)
    return result


# ---------------------------------------------------------------------------------------------
# power spectra: Thon rings, Bragg spots, medium magnification against real micrographs
# ---------------------------------------------------------------------------------------------


def ctf_zeros(voltage_kv: float, cs_mm: float, defocus_nm: float, k_max: float) -> np.ndarray:
    """Spatial frequencies (1/nm) where sin(chi) = 0, below `k_max`.

    ``chi(k) = -pi lambda df k^2 + pi/2 Cs lambda^3 k^4`` (abTEM's sign: positive defocus is
    underfocus), zero at ``chi = n pi``.
    """
    from nanoseg.simulate.optics import wavelength

    lam = wavelength(voltage_kv * 1e3) / 10  # nm
    cs = cs_mm * 1e6  # nm
    df = defocus_nm
    a, b = cs * lam**3 / 2, -lam * df
    roots = []
    n_max = int(abs(a * k_max**4 + b * k_max**2)) + 2
    for n in range(-n_max, n_max + 1):
        disc = b * b + 4 * a * n
        if disc < 0:
            continue
        for sign in (1, -1):
            u = (-b + sign * math.sqrt(disc)) / (2 * a)
            if u > 1e-12:
                roots.append(math.sqrt(u))
    zeros = np.unique(np.round(roots, 9))
    return zeros[zeros < k_max]


def match_minima(
    centres: np.ndarray, detrended: np.ndarray, zeros: np.ndarray
) -> list[tuple[float, float]]:
    """For each expected zero above 1/nm, the nearest minimum of the detrended log spectrum.

    The search window is +-30 % of the distance to the neighbouring zeros.

    Returns
    -------
    list of (expected, measured)
        Spatial frequencies in 1/nm.
    """
    matches = []
    for i, k0 in enumerate(zeros):
        if k0 < 1.0:  # below 1/nm the carbon's own spectrum dominates the shape
            continue
        neighbours = [abs(k0 - z) for z in (*zeros[max(i - 1, 0) : i], *zeros[i + 1 : i + 2])]
        half = 0.3 * min(neighbours) if neighbours else 0.3
        window = (centres > k0 - half) & (centres < k0 + half)
        if window.sum() >= 3:
            matches.append((float(k0), float(centres[window][np.nanargmin(detrended[window])])))
    return matches


def thon_scene(seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A carbon-only micrograph (8 nm film, 300 kV, Cs 1.2 mm, 80 nm underfocus, 1024 px at
    0.04 nm/px, 2000 e/A^2) through the simulator's scene renderer."""
    from nanoseg.simulate.optics import configure_abtem
    from nanoseg.simulate.scene import Imaging, Scene, render_scene

    configure_abtem()
    pixel = 0.04
    imaging = Imaging(1.2, 80.0, 3.0, 0.1, None, direct_camera(2000.0, pixel))
    scene = Scene(
        index=0,
        material="au",
        pixel_size=pixel,
        size=1024,
        voltage_kv=300.0,
        carbon_nm=8.0,
        particles=[],
        placements=[],
        imaging=[imaging],
        rng=np.random.default_rng(np.random.SeedSequence([seed, 8000])),
    )
    image, _, meta = render_scene(scene)[0]
    return image.astype(np.float32), meta


def bragg_scene(seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One ~6 nm Au truncated octahedron on the [110] zone axis, on 3 nm of carbon (300 kV,
    Cs 10 um at Scherzer focus, 512 px at 0.02 nm/px, 2000 e/A^2)."""
    from nanoseg.simulate.optics import configure_abtem
    from nanoseg.simulate.scene import Imaging, Placement, Scene, render_scene
    from nanoseg.simulate.structures import MATERIALS, build_particle

    configure_abtem()
    pixel, size = 0.02, 512
    for attempt in range(200):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 9000, attempt]))
        particle = build_particle(
            MATERIALS["au"], "truncated_octahedron", 6.0, rng, zone_axis_probability=1.0
        )
        if particle.zone_axis == (0, 1, 1):
            break
    imaging = Imaging(0.01, scherzer_nm(0.01, 300.0), 3.0, 0.1, None, direct_camera(2000.0, pixel))
    field = size * pixel
    scene = Scene(
        index=0,
        material="au",
        pixel_size=pixel,
        size=size,
        voltage_kv=300.0,
        carbon_nm=3.0,
        particles=[particle],
        placements=[Placement(0, 0, (field / 2, field / 2))],
        imaging=[imaging],
        rng=rng,
    )
    image, label, meta = render_scene(scene)[0]
    return image.astype(np.float32), label, meta


def spectra_study(
    out: Path,
    seed: int,
    medium: Sequence[Sample],
    hrtem: Sequence[Sample],
    real_root: Path | None,
) -> dict[str, Any]:
    """Thon rings of carbon, Bragg spots of an Au particle, and normalised radial spectra of
    medium-magnification simulations against real micrographs (numbers only)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Arc

    result: dict[str, Any] = {}

    # (i) Thon rings of a carbon-only micrograph.
    carbon, cmeta = thon_scene(seed)
    filtered = ndimage.median_filter(carbon, 3)
    pixel = cmeta["pixel_size_nm"]
    spectrum = power_spectrum(filtered)
    k = frequency_grid(filtered.shape, pixel)
    nyquist = 0.5 / pixel
    edges = np.linspace(0, nyquist, 257)
    centres, profile = radial_profile(spectrum, k, edges)
    log_profile = np.log10(profile)
    baseline = ndimage.uniform_filter1d(np.nan_to_num(log_profile), 15, mode="nearest")
    detrended = log_profile - baseline
    envelope_limit = 7.0  # 1/nm, beyond it the focal-spread envelope flattens the rings
    # The metadata's defocus refers to the particles, i.e. the film's top surface; the film's
    # mid-plane is t/2 further from the lens's focus, its exit surface t.
    references = {
        "exit_surface": cmeta["defocus_nm"] + cmeta["carbon_thickness_nm"],
        "film_mid_plane": cmeta["defocus_nm"] + cmeta["carbon_thickness_nm"] / 2,
    }
    zero_sets = {
        name: ctf_zeros(cmeta["voltage_kv"], cmeta["cs_mm"], df, 0.9 * nyquist)
        for name, df in references.items()
    }
    result["thon"] = {
        "voltage_kv": cmeta["voltage_kv"],
        "cs_mm": cmeta["cs_mm"],
        "defocus_nm": cmeta["defocus_nm"],
        "carbon_nm": cmeta["carbon_thickness_nm"],
        "pixel_size_nm": pixel,
        "dose_e_per_a2": cmeta["dose_e_per_a2"],
        "compared_below_per_nm": envelope_limit,
    }
    for name, zeros in zero_sets.items():
        matches = match_minima(centres, detrended, zeros[zeros < envelope_limit])
        result["thon"][name] = {
            "defocus_nm": references[name],
            "expected_zeros_per_nm": zeros[zeros < envelope_limit],
            "measured_minima_per_nm": [m[1] for m in matches],
            "mean_abs_relative_error": float(np.mean([abs(b - a) / a for a, b in matches])),
        }
    zeros, exit_zeros = zero_sets["film_mid_plane"], zero_sets["exit_surface"]

    # (ii) Bragg spots of an Au particle on [110].
    gold, glabel, gmeta = bragg_scene(seed)
    gfiltered = ndimage.median_filter(gold, 3)
    gpixel = gmeta["pixel_size_nm"]
    gspectrum = power_spectrum(gfiltered)
    gk = frequency_grid(gfiltered.shape, gpixel)
    gedges = np.linspace(0, 0.5 / gpixel, 257)
    gcentres, gprofile = radial_profile(gspectrum, gk, gedges)
    spots = {}
    for name, d in AU_SPACINGS.items():
        annulus = (gk > 0.94 / d) & (gk < 1.06 / d)
        peak = np.argmax(np.where(annulus, gspectrum, -np.inf))
        spots[name] = {
            "d_expected_nm": d,
            "d_measured_nm": float(1 / gk.ravel()[peak]),
            "peak_over_annulus_median": float(
                gspectrum.ravel()[peak] / np.median(gspectrum[annulus])
            ),
        }
    result["bragg"] = {
        "material": "au",
        "zone_axis": [0, 1, 1],
        "shape": gmeta["particles"][0]["shape"],
        "diameter_nm": gmeta["particles"][0]["diameter_nm"],
        "pixel_size_nm": gpixel,
        "cs_mm": gmeta["cs_mm"],
        "defocus_nm": gmeta["defocus_nm"],
        "dose_e_per_a2": gmeta["dose_e_per_a2"],
        "spots": spots,
    }

    # (iii) Normalised radial spectra (1/px) of medium-magnification simulations and real images.
    fedges = np.linspace(0, 0.5, 65)
    curves: dict[str, np.ndarray] = {}

    def mean_log_profile(images: Sequence[np.ndarray]) -> np.ndarray:
        logs = []
        for image in images:
            for crop in center_crops(ndimage.median_filter(image, 3), 512):
                spec = power_spectrum(crop)
                _, prof = radial_profile(spec, frequency_grid(crop.shape), fedges)
                logs.append(np.log10(prof))
        return np.nanmean(logs, axis=0)

    curves["simulated medium magnification (0.1-0.2 nm/px)"] = mean_log_profile(
        [s.image for s in medium]
    )
    curves["simulated HRTEM Au (0.02-0.04 nm/px)"] = mean_log_profile([s.image for s in hrtem])
    real_keys = []
    if real_root is not None:
        from nanoseg.io import read_micrograph

        for folder, key in (
            ("real-dev", "real-dev (8 crops, ~0.1-0.2 nm/px)"),
            ("real-dev-hrtem", "real-dev-hrtem (4 tiles, ~0.05 nm/px)"),
        ):
            paths = sorted((real_root / folder / "images").glob("*.png"))
            if paths:
                curves[key] = mean_log_profile([read_micrograph(p).data for p in paths])
                real_keys.append(key)
    fcentres = (fedges[:-1] + fedges[1:]) / 2
    sim_key = "simulated medium magnification (0.1-0.2 nm/px)"
    summary: dict[str, Any] = {
        "frequency_per_px": fcentres,
        "log10_power": {k: v for k, v in curves.items()},
    }
    band = (fcentres > 0.01) & (fcentres < 0.45)
    for key in real_keys:
        summary[f"rms_log10_difference_medium_vs_{key.split(' ')[0]}"] = float(
            np.sqrt(np.nanmean((curves[sim_key][band] - curves[key][band]) ** 2))
        )
    result["medium_vs_real"] = summary

    # Figure.
    fig = plt.figure(figsize=(10.0, 9.4))
    grid = fig.add_gridspec(3, 3, hspace=0.42, wspace=0.35)
    ax = fig.add_subplot(grid[0, 0])
    show(ax, carbon[:512, :512])
    scale_bar(ax, (512, 512), pixel, 5.0)
    ax.set_title("carbon only (20 nm of 41 nm shown)", fontsize=8)
    ax = fig.add_subplot(grid[0, 1])
    log_spec = np.log10(spectrum)
    lo, hi = np.percentile(log_spec, [5, 99.9])
    ext = [-nyquist, nyquist, nyquist, -nyquist]
    ax.imshow(log_spec, cmap="gray", vmin=lo, vmax=hi, extent=ext, interpolation="antialiased")
    for z in zeros[zeros < envelope_limit]:
        ax.add_patch(Arc((0, 0), 2 * z, 2 * z, theta1=-90, theta2=90, color="#ff5000", lw=0.5))
    ax.set_xlim(-envelope_limit * 1.1, envelope_limit * 1.1)
    ax.set_ylim(envelope_limit * 1.1, -envelope_limit * 1.1)
    ax.set_xlabel("1/nm", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title("log power; right half: sin²χ = 0 at Δf - t/2", fontsize=8)
    ax = fig.add_subplot(grid[0, 2])
    ax.plot(centres, log_profile, color="k", lw=0.8)
    for z in exit_zeros[exit_zeros < envelope_limit + 1]:
        ax.axvline(z, color="#3070ff", lw=0.6, ls=":")
    for z in zeros[zeros < envelope_limit + 1]:
        ax.axvline(z, color="#ff5000", lw=0.6, ls="--")
    ax.set_xlim(0, envelope_limit + 1)
    ax.set_xlabel("spatial frequency (1/nm)", fontsize=8)
    ax.set_ylabel("log10 radial power", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(
        f"Thon rings, 300 kV, Cs 1.2 mm, Δf {cmeta['defocus_nm']:g} nm, "
        f"{cmeta['carbon_thickness_nm']:g} nm film\nsin²χ = 0 at Δf + t/2 "
        "(dashed, film mid-plane) and Δf + t (dotted, exit surface)",
        fontsize=8,
    )

    ax = fig.add_subplot(grid[1, 0])
    show(ax, gold)
    ax.contour(glabel, levels=[0.5], colors=["#ffb000"], linewidths=0.6)
    scale_bar(ax, gold.shape, gpixel, 2.0)
    ax.set_title("Au truncated octahedron on [110]", fontsize=8)
    ax = fig.add_subplot(grid[1, 1])
    gnyq = 0.5 / gpixel
    glog = np.log10(gspectrum)
    lo, hi = np.percentile(glog, [5, 99.95])
    ax.imshow(glog, cmap="gray", vmin=lo, vmax=hi, extent=[-gnyq, gnyq, gnyq, -gnyq])
    colours = {"111": "#ff5000", "200": "#00b0ff", "220": "#50d050"}
    for name, d in AU_SPACINGS.items():
        ax.add_patch(
            Arc((0, 0), 2 / d, 2 / d, theta1=0, theta2=360, color=colours[name], lw=0.5, ls="--")
        )
    ax.set_xlim(-8, 8)
    ax.set_ylim(8, -8)
    ax.set_xlabel("1/nm", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title("log power; circles: Au {111}, {200}, {220}", fontsize=8)
    ax = fig.add_subplot(grid[1, 2])
    ax.semilogy(gcentres, gprofile, color="k", lw=0.8)
    for name, d in AU_SPACINGS.items():
        ax.axvline(1 / d, color=colours[name], lw=0.8, ls="--", label=f"{{{name}}} {d:.3f} nm")
    ax.set_xlim(0, 10)
    ax.set_xlabel("spatial frequency (1/nm)", fontsize=8)
    ax.set_ylabel("radial power", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title("Bragg peaks at the Au spacings", fontsize=8)

    ax = fig.add_subplot(grid[2, :])
    styles = ["-", "--", "-", "--"]
    colours_list = ["#d04000", "#f0a000", "k", "#606060"]
    for (key, curve), style, colour in zip(curves.items(), styles, colours_list, strict=False):
        ax.plot(fcentres[1:], curve[1:], style, color=colour, lw=1.2, label=key)
    ax.set_xscale("log")
    ax.set_xlabel("spatial frequency (1/px)", fontsize=8)
    ax.set_ylabel("log10 radial power (unit-variance images)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(
        "Radially averaged power spectra, per pixel (real files have no pixel size)", fontsize=8
    )
    fig.suptitle("Power spectra of simulated micrographs", fontsize=10)
    result["figure_bytes"] = save_figure(fig, out / "power_spectra.png", dpi=90)
    return result


# ---------------------------------------------------------------------------------------------
# the paper's network on simulated micrographs
# ---------------------------------------------------------------------------------------------


#: Input scalings of the paper network tried here; "paper" is the paper's own (the headline).
NETWORK_INPUTS = {
    "paper": "3x3 median filter, divide by the image maximum, 512x512, p > 0.5",
    "robust_max": "3x3 median filter, divide by the 99.9th percentile, p > 0.5",
    "offset_subtracted": "3x3 median filter, subtract the camera offset (metadata), divide by "
    "the maximum, p > 0.5 (diagnostic: a dark-reference-subtracted camera)",
}


def paper_input(image: np.ndarray, mode: str, offset: float = 0.0) -> np.ndarray:
    """Network input: 3x3 median filter, then scaled as :data:`NETWORK_INPUTS` ``[mode]``."""
    filtered = ndimage.median_filter(np.asarray(image, np.float32), 3)
    if mode == "offset_subtracted":
        filtered = filtered - np.float32(offset)
    scale = np.percentile(filtered, 99.9) if mode == "robust_max" else filtered.max()
    return (filtered / max(float(scale), 1e-6)).astype(np.float32)


def predict(
    model: Any, images: Sequence[np.ndarray], mode: str, offsets: Sequence[float] | None = None
) -> list[np.ndarray]:
    """Particle probability maps of the network for each image (batches of 4)."""
    offsets = offsets if offsets is not None else [0.0] * len(images)
    out = []
    for start in range(0, len(images), 4):
        batch = np.stack(
            [
                paper_input(im, mode, off)
                for im, off in zip(
                    images[start : start + 4], offsets[start : start + 4], strict=True
                )
            ]
        )
        out.extend(model.predict_proba(batch[:, None]))
    return out


def pooled_scores(labels: Sequence[np.ndarray], predictions: Sequence[np.ndarray]) -> dict:
    """Pixel Dice (particle class) and pixel accuracy pooled over micrographs."""
    tp = fp = fn = tn = 0
    for label, pred in zip(labels, predictions, strict=True):
        tp += int(np.sum(label & pred))
        fp += int(np.sum(~label & pred))
        fn += int(np.sum(label & ~pred))
        tn += int(np.sum(~label & ~pred))
    return {
        "dice": 2 * tp / max(2 * tp + fp + fn, 1),
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1),
        "particle_recall": tp / max(tp + fn, 1),
        "background_recall": tn / max(tn + fp, 1),
        "predicted_particle_fraction": (tp + fp) / max(tp + tn + fp + fn, 1),
        "true_particle_fraction": (tp + fn) / max(tp + tn + fp + fn, 1),
    }


def dice(label: np.ndarray, pred: np.ndarray) -> float:
    """Particle Dice of one micrograph (1 when both are empty)."""
    total = label.sum() + pred.sum()
    return float(2 * np.sum(label & pred) / total) if total else 1.0


def network_study(
    out: Path,
    weights: Path,
    samples: dict[str, list[Sample]],
    real_root: Path | None,
) -> dict[str, Any]:
    """Apply the paper's released combined network to the simulated HRTEM sets."""
    import matplotlib.pyplot as plt
    import torch

    from nanoseg.model import import_keras

    torch.manual_seed(0)
    model, info = import_keras(weights)
    result: dict[str, Any] = {
        "weights": weights.name,
        "sha256": info.get("sha256"),
        "inputs": NETWORK_INPUTS,
        "sets": {},
    }
    examples = {}
    for name in ("au", "cdse", "pd", "cdse_dots"):
        items = samples[name]
        labels = [s.label for s in items]
        images = [s.image for s in items]
        offsets = [s.meta["camera"]["offset"] for s in items]
        entry: dict[str, Any] = {"n": len(items)}
        for mode in NETWORK_INPUTS:
            preds = [p > 0.5 for p in predict(model, images, mode, offsets)]
            entry[mode] = pooled_scores(labels, preds)
            if mode != "paper":
                continue
            per = [dice(lab, pr) for lab, pr in zip(labels, preds, strict=True)]
            entry["per_micrograph"] = [
                {
                    "file": s.meta["file"],
                    "dice": d,
                    "dose_e_per_a2": s.meta["dose_e_per_a2"],
                    "cs_mm": s.meta["cs_mm"],
                    "defocus_nm": s.meta["defocus_nm"],
                    "pixel_size_nm": s.meta["pixel_size_nm"],
                    "particle_fraction": s.meta["particle_fraction"],
                    "offset_over_mean": s.meta["camera"]["offset"] / float(s.image.mean()),
                }
                for s, d in zip(items, per, strict=True)
            ]
            high = [s.meta["dose_e_per_a2"] >= 1000 for s in items]
            for tag, keep in (("dose_ge_1000", True), ("dose_lt_1000", False)):
                chosen = [i for i, h in enumerate(high) if h == keep]
                entry[f"paper_{tag}"] = pooled_scores(
                    [labels[i] for i in chosen], [preds[i] for i in chosen]
                ) | {"n": len(chosen)}
            pooled = entry["paper"]["dice"]
            pick = min(
                (i for i in range(len(items)) if labels[i].any()),
                key=lambda i: (abs(per[i] - pooled), i),
            )
            examples[name] = (items[pick], preds[pick], per[pick])
        entry["max_over_p999_raw"] = mean_std(
            [float(im.max() / np.percentile(im, 99.9)) for im in images]
        )
        entry["max_over_p999_median_filtered"] = mean_std(
            [float(ndimage.median_filter(im, 3).max() / np.percentile(im, 99.9)) for im in images]
        )
        entry["offset_over_mean"] = mean_std(
            [off / float(im.mean()) for off, im in zip(offsets, images, strict=True)]
        )
        result["sets"][name] = entry
        print(
            f"  paper network on {name}: Dice "
            + ", ".join(f"{mode} {entry[mode]['dice']:.3f}" for mode in NETWORK_INPUTS),
            flush=True,
        )

    if real_root is not None and (real_root / "real-dev-hrtem" / "images").is_dir():
        from nanoseg.io import read_label_map, read_micrograph

        folder = real_root / "real-dev-hrtem"
        paths = sorted((folder / "images").glob("*.png"))
        images = [read_micrograph(p).data for p in paths]
        labels = [
            read_label_map(folder / "masks" / p.name, im.shape)
            for p, im in zip(paths, images, strict=True)
        ]
        preds = [p > 0.5 for p in predict(model, images, "paper")]
        result["real_dev_hrtem_check"] = pooled_scores(labels, preds) | {"n": len(paths)}

    names = {"au": "Au", "cdse": "CdSe", "pd": "Pd", "cdse_dots": "CdSe dots"}
    fig, axes = plt.subplots(len(examples), 3, figsize=(7.5, 2.7 * len(examples)))
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.01, wspace=0.04, hspace=0.3)
    for row, (name, (sample, pred, score)) in enumerate(examples.items()):
        show(axes[row, 0], sample.image, f"{names[name]}: {caption(sample.meta)}")
        scale_bar(axes[row, 0], sample.image.shape, sample.meta["pixel_size_nm"], 2.0)
        axes[row, 1].imshow(sample.label, cmap="gray", interpolation="nearest")
        axes[row, 1].set_title("label (projected footprint)", fontsize=7)
        axes[row, 2].imshow(pred, cmap="gray", interpolation="nearest")
        axes[row, 2].set_title(f"paper network, p > 0.5\nDice {score:.2f}", fontsize=7)
        for ax in axes[row, 1:]:
            ax.set_axis_off()
    fig.suptitle(
        "The paper's released Au+CdSe network on simulated HRTEM, paper preprocessing\n"
        "(typical examples: the micrograph whose Dice is nearest the set's pooled Dice)",
        fontsize=8,
    )
    result["figure_bytes"] = save_figure(fig, out / "paper_network_on_simulated.png", dpi=90)
    return result


# ---------------------------------------------------------------------------------------------
# montages
# ---------------------------------------------------------------------------------------------


def caption(meta: dict[str, Any]) -> str:
    """Two-line panel caption: pixel size, voltage, Cs, defocus and dose."""
    return (
        f"{meta['pixel_size_nm']:.3f} nm/px, {meta['voltage_kv']:.0f} kV, "
        f"Cs {meta['cs_mm']:.2g} mm\nΔf {meta['defocus_nm']:.0f} nm, "
        f"{meta['dose_e_per_a2']:.0f} e/Å²"
    )


def montage(out: Path, samples: dict[str, list[Sample]], real_root: Path | None) -> int:
    """Simulated Au and CdSe HRTEM and medium-magnification micrographs beside the real
    CC-BY-4.0 HRTEM tiles (the first variant of the first four scenes of each set: no
    selection)."""
    import matplotlib.pyplot as plt

    rows: list[tuple[str, list[tuple[np.ndarray, str, float | None, float | None]]]] = []
    for name, title, bar in (
        ("au", "simulated Au\nHRTEM", 2.0),
        ("cdse", "simulated CdSe\nHRTEM", 2.0),
        ("medium", "simulated Au/Pd\nmedium magnification", 10.0),
    ):
        panels = [
            (s.image, caption(s.meta), s.meta["pixel_size_nm"], bar)
            for s in samples[name][::VARIANTS][:4]
        ]
        rows.append((title, panels))
    title = "Simulated micrographs (whole 512 px fields, 3x3 median filtered)"
    if real_root is not None:
        from nanoseg.io import read_micrograph

        paths = sorted((real_root / "real-dev-hrtem" / "images").glob("*.png"))[:4]
        if paths:
            rows.append(
                (
                    "real HRTEM tiles\n(CC-BY-4.0)",
                    [
                        (read_micrograph(p).data, f"{p.stem}\n(no pixel size)", None, None)
                        for p in paths
                    ],
                )
            )
            title = f"Simulated (rows 1-3) vs real micrographs (row 4; {REAL_CREDIT})"
    fig, axes = plt.subplots(len(rows), 4, figsize=(8.6, 2.45 * len(rows)))
    fig.subplots_adjust(left=0.07, right=0.995, top=0.94, bottom=0.005, wspace=0.03, hspace=0.2)
    for r, (row_title, panels) in enumerate(rows):
        for c in range(4):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(panels):
                continue
            image, text, pixel, bar = panels[c]
            show(ax, image, text)
            if pixel is not None and bar is not None:
                scale_bar(ax, image.shape, pixel, bar)
        axes[r, 0].text(
            -0.04,
            0.5,
            row_title,
            transform=axes[r, 0].transAxes,
            rotation=90,
            ha="right",
            va="center",
            fontsize=7,
        )
    fig.suptitle(title, fontsize=8.5)
    return save_figure(fig, out / "simulated_vs_real.png", dpi=92, colours=48)


def private_montage(private: Path, samples: dict[str, list[Sample]], real_root: Path) -> None:
    """Medium-magnification simulations beside the unlicensed real-dev crops (local only)."""
    import matplotlib.pyplot as plt

    from nanoseg.io import read_micrograph

    private.mkdir(parents=True, exist_ok=True)
    paths = sorted((real_root / "real-dev" / "images").glob("*.png"))
    reals = [center_crops(read_micrograph(p).data, 512)[0] for p in paths[::2][:4]]
    sims = [s.image for s in samples["medium"][::VARIANTS][:4]]
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
    for c in range(4):
        for r, (images, what) in enumerate(((sims, "simulated"), (reals, "real-dev"))):
            axes[r, c].set_axis_off()
            if c < len(images):
                show(axes[r, c], images[c], what)
    fig.suptitle("PRIVATE: real-dev has no licence; do not commit", fontsize=10)
    fig.tight_layout()
    fig.savefig(private / "medium_vs_real_dev_PRIVATE.png", dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--real-dev",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="folder holding real-dev/ and real-dev-hrtem/ (skipped if absent)",
    )
    parser.add_argument(
        "--paper-weights",
        type=Path,
        default=REPO.parent
        / "shared"
        / "reference"
        / "pynanofind-weights"
        / "unet32_AuCdSeDots_09_final.h5",
    )
    parser.add_argument(
        "--private-out",
        type=Path,
        default=None,
        help="also write a montage with the unlicensed real-dev crops here",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep the simulated micrographs here (resumable); default: temp",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-hrtem", type=int, default=32, help="HRTEM micrographs per material")
    parser.add_argument("--n-medium", type=int, default=16)
    parser.add_argument(
        "--matched-scenes",
        type=int,
        default=6,
        help="scenes per material in the matched contrast comparison",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=512,
        help="micrograph side (512 for the docs; smaller only to smoke-test)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Simulate, measure and draw everything; return the numbers for the JSON."""
    from nanoseg.simulate.optics import configure_abtem

    configure_abtem()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    real_root = args.real_dev if (args.real_dev / "real-dev-hrtem").is_dir() else None
    if real_root is None:
        print(f"  no real micrographs under {args.real_dev}: real comparisons skipped")
    seconds: dict[str, Any] = {}
    results: dict[str, Any] = {"seed": args.seed, "size_px": args.size}

    start = time.perf_counter()
    specs = set_specs(args.n_hrtem, args.n_medium)
    samples, seconds["simulate"] = simulate_sets(
        work, specs, size=args.size, seed=args.seed, workers=args.workers
    )
    results["sets"] = {
        name: {
            "materials": list(spec.materials),
            "n": len(samples[name]),
            "pixel_size_nm": list(spec.pixel_size),
            "particle_size_nm": list(spec.particle_size),
            "variants": VARIANTS,
            "seed": args.seed + spec.seed_offset,
            "particle_fraction": mean_std([s.meta["particle_fraction"] for s in samples[name]]),
            "particles_per_micrograph": mean_std([s.meta["n_particles"] for s in samples[name]]),
        }
        for name, spec in specs.items()
    }

    print("carbon film: atomistic vs screens", flush=True)
    t = time.perf_counter()
    results["carbon_film"] = carbon_comparison(out, args.seed)
    seconds["carbon_film"] = time.perf_counter() - t

    print("power spectra", flush=True)
    t = time.perf_counter()
    results["power_spectra"] = spectra_study(
        out, args.seed, samples["medium"], samples["au"], real_root
    )
    seconds["power_spectra"] = time.perf_counter() - t

    print("contrast", flush=True)
    t = time.perf_counter()
    study = matched_study(args.seed + 3, args.size, args.matched_scenes, args.workers)
    matched: dict[str, Any] = {}
    for material, scenes in study.items():
        matched[material] = {
            f"{dose:g}": summarise_contrast([scene[i] for scene in scenes])
            for i, dose in enumerate(MATCHED_DOSES)
        }
        matched[material]["particle_fraction"] = mean_std(
            [scene[0].meta["particle_fraction"] for scene in scenes]
        )
    contrast: dict[str, Any] = {
        "definition": {
            "cnr": "|mean(particle) - mean(background)| / std(background), 3x3 median then "
            f"Gaussian sigma {SMOOTH_PX:g} px",
            "relative": "(mean(background) - mean(particle)) / (mean(background) - offset)",
            "fringe": f"power in {BRAGG_BAND[0]:g}-{BRAGG_BAND[1]:g} 1/nm inside / outside",
            "particle": f"deeper than {INNER_NM:g} nm inside the label",
            "background": f"farther than {GUARD_NM:g} nm from every label",
        },
        "matched": {
            "scenes_per_material": args.matched_scenes,
            "seed": args.seed + 3,
            "voltage_kv": 300.0,
            "cs_mm": 0.01,
            "defocus_nm": scherzer_nm(0.01, 300.0),
            "focal_spread_nm": 3.0,
            "carbon_nm": 5.0,
            "doses_e_per_a2": list(MATCHED_DOSES),
            "by_material": matched,
        },
        "sets": {name: summarise_contrast(samples[name]) for name in samples},
    }
    if real_root is not None:
        contrast["real"] = {
            "real-dev-hrtem": real_contrast(real_root / "real-dev-hrtem", 0.055),
            "real-dev": real_contrast(real_root / "real-dev", 0.15),
        }
    contrast["figure_bytes"] = contrast_figure(out, study, matched)
    results["contrast"] = contrast
    seconds["contrast"] = time.perf_counter() - t

    if args.paper_weights.is_file():
        print("paper network", flush=True)
        t = time.perf_counter()
        results["paper_network"] = network_study(out, args.paper_weights, samples, real_root)
        seconds["paper_network"] = time.perf_counter() - t
    else:
        print(f"  no paper weights at {args.paper_weights}: skipped")
        results["paper_network"] = None

    t = time.perf_counter()
    results["montage_bytes"] = montage(out, samples, real_root)
    if args.private_out is not None and real_root is not None:
        private_montage(args.private_out, samples, real_root)
    seconds["montage"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    results["seconds"] = seconds
    results["seconds_note"] = "wall times on the machine that ran the script (not deterministic)"
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: regenerate the figures and ``simulation_realism.json``."""
    args = parse_args(argv)
    args.out = args.out.resolve()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        results = run(args, args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="nanoseg-figures-") as tmp:
            results = run(args, Path(tmp))
    path = args.out / "simulation_realism.json"
    path.write_text(json.dumps(rounded(results), indent=1) + "\n")
    print(f"wrote {path} ({results['seconds']['total']:.0f} s)")


if __name__ == "__main__":
    main()
