"""A scene: particles on a carbon film in one field of view, and the micrographs taken of it.

One exit wave is computed per scene (the expensive part: particle multislice and the film), and
several micrographs are recorded from it with different lens settings, doses and cameras (cheap).
The micrographs of one scene share their particles, so their metadata carries the scene number:
a dataset must keep a scene's micrographs in the same split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from nanoseg.simulate import optics
from nanoseg.simulate.camera import Camera, bin_pixels, expose, random_camera
from nanoseg.simulate.structures import MATERIALS, Particle, build_particle, footprint

__all__ = ["Imaging", "Scene", "SceneSettings", "plan_scene", "render_scene"]

#: Detector pixels are integrated from OVERSAMPLE x OVERSAMPLE simulation pixels.
OVERSAMPLE = 2
#: Carbon is modelled as phase screens about this far apart, A (15 A gave 14 % too little
#: carbon contrast with an aberration-corrected lens; 5 A matches atomistic multislice).
CARBON_SLAB = 5.0
#: Distinct particles simulated per scene; denser fields reuse them mirrored and turned.
MAX_DISTINCT = 6
#: Scenes whose mean particle is narrower than this (px) are dense monolayers half the time.
DENSE_BELOW_PX = 24.0
#: At most this many particles in a monolayer (bounds the metadata and the rendering time).
MAX_MONOLAYER = 3000


@dataclass(frozen=True)
class SceneSettings:
    """What the user asked for (ranges are inclusive; sizes in nm)."""

    materials: tuple[str, ...]
    size: int
    pixel_size: tuple[float, float]
    particle_size: tuple[float, float] = (1.5, 10.0)
    variants: int = 10
    film_roughness: bool = False  # add the film's thickness variation (see plan_scene)


@dataclass
class Imaging:
    """Lens settings and camera of one micrograph (lengths in nm, as in the metadata)."""

    cs_mm: float
    defocus_nm: float
    focal_spread_nm: float
    angular_spread_mrad: float
    aperture_mrad: float | None
    camera: Camera


@dataclass(frozen=True)
class Placement:
    """One particle in the field: a copy of ``Scene.particles[particle]`` moved to `centre`.

    `transform` (0-7) is a symmetry of the square grid applied to the particle (bit 0: mirror x,
    bit 1: mirror y, bit 2: swap x and y, applied first); the mirrored or turned copy of a crystal
    is a crystal, and its exit wave is exactly the transformed exit wave.
    """

    particle: int
    transform: int
    centre: tuple[float, float]  # (x, y) in nm from the detector's top-left corner


@dataclass
class Scene:
    """One field of view: its particles, film, beam, and the micrographs to record."""

    index: int
    material: str
    pixel_size: float  # nm
    size: int
    voltage_kv: float
    carbon_nm: float
    roughness_nm: float  # RMS of the film's thickness variation
    roughness_length_nm: float  # its correlation length
    particles: list[Particle]  # the distinct particles simulated (at most MAX_DISTINCT)
    placements: list[Placement]  # where each particle of the field is, and which one it is
    imaging: list[Imaging]
    rng: np.random.Generator = field(repr=False)
    film_rng: np.random.Generator = field(repr=False)  # the film's roughness only


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def plan_scene(settings: SceneSettings, index: int, seed: int) -> Scene:
    """Draw everything about scene `index` from ``SeedSequence([seed, index])``.

    Parameters
    ----------
    settings : SceneSettings
    index : int
        Scene number.
    seed : int
        Seed of the whole run.

    Returns
    -------
    Scene
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    material = MATERIALS[settings.materials[int(rng.integers(len(settings.materials)))]]
    pixel_size = _log_uniform(rng, *settings.pixel_size)
    field_nm = settings.size * pixel_size
    # Particle sizes cluster around a sample mean, as in a real synthesis; they must fit the field.
    d_low, d_high = settings.particle_size
    d_high = min(d_high, 0.4 * field_nm)
    d_low = min(d_low, d_high)
    mean_d = _log_uniform(rng, d_low, d_high)
    coverage = rng.uniform(0.05, 0.35)
    particles: list[Particle] = []
    placements: list[Placement] = []
    # Small particles (in pixels) also come as dense monolayers, as in survey images.
    dense = mean_d / pixel_size < DENSE_BELOW_PX and rng.random() < 0.5
    if dense:
        for _ in range(MAX_DISTINCT):
            d = float(np.clip(mean_d * math.exp(rng.normal(0, 0.1)), d_low, d_high))
            shape = material.shapes[int(rng.integers(len(material.shapes)))]
            particles.append(build_particle(material, shape, d, rng))
        placements = _monolayer(particles, mean_d, field_nm, rng)
    area = math.inf if dense else 0.0
    failures = 0
    while area < coverage * field_nm**2 and len(placements) < 60 and failures < 50:
        if len(particles) < MAX_DISTINCT:
            d = float(np.clip(mean_d * math.exp(rng.normal(0, 0.15)), d_low, d_high))
            shape = material.shapes[int(rng.integers(len(material.shapes)))]
            candidate, which, transform = build_particle(material, shape, d, rng), len(particles), 0
        else:
            which, transform = int(rng.integers(len(particles))), int(rng.integers(8))
            candidate = particles[which]
        centre = _place(candidate.projected_radius / 10, placements, particles, field_nm, rng)
        if centre is None:
            failures += 1
            continue
        if which == len(particles):
            particles.append(candidate)
        placements.append(Placement(which, transform, (float(centre[0]), float(centre[1]))))
        area += math.pi * (candidate.diameter / 2) ** 2
    voltage = float(rng.choice([200.0, 300.0]))
    # Grids for medium magnification usually carry thicker, standard carbon films.
    carbon = float(rng.uniform(2.0, 20.0 if pixel_size > 0.05 else 10.0))
    # Real films also vary in thickness over nanometres, which adds to the carbon's speckle at
    # medium magnification. Drawn from a stream of its own so the scene's other draws stay as
    # they were.
    # Off by default: the bundled model was trained without it (docs/simulation.md).
    film = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))
    roughness = roughness_length = 0.0
    if settings.film_roughness:
        roughness = min(_log_uniform(film, 0.1, 2.5), carbon / 3)
        roughness_length = _log_uniform(film, 0.3, 2.0)
    imaging = [
        _random_imaging(rng, pixel_size, settings.size, voltage) for _ in range(settings.variants)
    ]
    return Scene(
        index=index,
        material=material.name,
        pixel_size=pixel_size,
        size=settings.size,
        voltage_kv=voltage,
        carbon_nm=carbon,
        roughness_nm=roughness,
        roughness_length_nm=roughness_length,
        particles=particles,
        placements=placements,
        imaging=imaging,
        rng=rng,
        film_rng=film,
    )


def _place(
    radius: float,
    placements: list[Placement],
    particles: list[Particle],
    field_nm: float,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A centre (nm) for a particle of projected `radius` (nm), clear of or touching the others."""
    others = [(np.array(p.centre), particles[p.particle].projected_radius / 10) for p in placements]
    for _ in range(30):
        if others and rng.random() < 0.3:
            # Touching neighbours: projected outlines in contact (the max radii overlap a little).
            centre_j, radius_j = others[int(rng.integers(len(others)))]
            angle = rng.uniform(0, 2 * math.pi)
            centre = centre_j + 0.92 * (radius + radius_j) * np.array(
                [math.cos(angle), math.sin(angle)]
            )
            factor, gap = 0.85, 0.0
        else:
            centre = rng.uniform(0, field_nm, size=2)
            factor, gap = 1.0, 0.3
        if not (0 <= centre[0] <= field_nm and 0 <= centre[1] <= field_nm):
            continue
        if all(np.hypot(*(centre - c)) >= factor * (radius + r) + gap for c, r in others):
            return centre
    return None


def _monolayer(
    particles: list[Particle], mean_d: float, field_nm: float, rng: np.random.Generator
) -> list[Placement]:
    """Particles on a jittered hexagonal lattice, in islands with vacancies (nm, as `_place`).

    Self-assembled monolayers keep a near-constant gap set by the ligands; islands come from a
    thresholded smooth random field, so coverage varies from sparse patches to a full film.
    """
    spacing = mean_d * rng.uniform(1.08, 1.45)
    angle = rng.uniform(0, math.pi / 3)
    n = int(field_nm / spacing * 1.6) + 2
    i, j = np.meshgrid(np.arange(-n, n), np.arange(-n, n))
    xy = np.stack([i + 0.5 * (j % 2), j * math.sqrt(3) / 2], axis=-1).reshape(-1, 2) * spacing
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    xy = xy @ rot.T + field_nm / 2
    xy += rng.normal(0, 0.06 * spacing, xy.shape)
    xy = xy[np.all((xy >= 0) & (xy <= field_nm), axis=1)]
    # Islands: a smooth random field on a coarse grid, thresholded at a random level.
    grid = 32
    smooth = ndimage.gaussian_filter(
        rng.normal(size=(grid, grid)), rng.uniform(1.5, 4), mode="wrap"
    )
    cell = np.clip((xy / field_nm * grid).astype(int), 0, grid - 1)
    level = np.quantile(smooth, rng.uniform(0.0, 0.6))
    keep = (smooth[cell[:, 1], cell[:, 0]] >= level) & (rng.random(len(xy)) > rng.uniform(0, 0.25))
    xy = xy[keep]
    if len(xy) > MAX_MONOLAYER:
        xy = xy[np.sort(rng.choice(len(xy), MAX_MONOLAYER, replace=False))]
    which = rng.integers(len(particles), size=len(xy))
    transform = rng.integers(8, size=len(xy))
    return [
        Placement(int(w), int(t), (float(x), float(y)))
        for w, t, (x, y) in zip(which, transform, xy, strict=True)
    ]


def _transform_array(array: np.ndarray, transform: int) -> np.ndarray:
    if transform & 4:
        array = array.T
    if transform & 1:
        array = array[:, ::-1]
    if transform & 2:
        array = array[::-1, :]
    return array


def _transform_xy(xy: np.ndarray, transform: int) -> np.ndarray:
    """The same symmetry as :func:`_transform_array` on (x, y) positions relative to the centre."""
    xy = xy[:, ::-1].copy() if transform & 4 else xy.copy()
    if transform & 1:
        xy[:, 0] *= -1
    if transform & 2:
        xy[:, 1] *= -1
    return xy


def _random_imaging(
    rng: np.random.Generator, pixel_size: float, size: int, voltage: float
) -> Imaging:
    corrected = rng.random() < 0.5
    cs_mm = float(rng.uniform(-0.02, 0.02)) if corrected else float(rng.uniform(0.5, 1.5))
    energy = voltage * 1e3
    if pixel_size > 0.05 and rng.random() < 0.7:
        # Medium magnification is focused by eye on the carbon's granularity: the defocus leaves
        # a speckle a few pixels across, so it grows with the square of the pixel size.
        period = rng.uniform(1.5, 5.0) * pixel_size  # nm
        defocus_nm = (
            period**2 / (optics.wavelength(energy) / 10) * (1 if rng.random() < 0.8 else -1)
        )
    elif rng.random() < 0.4:
        # Near Scherzer focus (abTEM sign: positive is underfocus).
        scherzer = math.copysign(
            math.sqrt(1.5 * abs(cs_mm) * 1e7 * optics.wavelength(energy)), cs_mm
        )
        defocus_nm = scherzer / 10 + float(rng.normal(0, 3.0))
    else:
        defocus_nm = float(rng.uniform(-100, 100))  # the paper's autofocus range
    # Medium magnification is usually recorded with an objective aperture (mass-thickness contrast).
    aperture = float(rng.uniform(8, 25)) if pixel_size >= 0.08 and rng.random() < 0.6 else None
    # The same e/A^2 at every pixel size would give up to 40 000 electrons per 0.2 nm pixel;
    # lower-magnification images are recorded with at most ~1500 e per pixel.
    high = min(1e4, 1500 / (pixel_size * 10) ** 2)
    dose = _log_uniform(rng, min(50.0, high / 10), high)
    return Imaging(
        cs_mm=cs_mm,
        defocus_nm=defocus_nm,
        focal_spread_nm=float(rng.uniform(2, 6)),
        # Lower magnification spreads the beam: the convergence falls with the pixel size.
        angular_spread_mrad=float(rng.uniform(0.05, 0.3)) * min(1.0, 0.05 / pixel_size),
        aperture_mrad=aperture,
        camera=random_camera(rng, dose, pixel_size * 10, size),
    )


def render_scene(scene: Scene) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """Simulate the scene's exit wave once and record each of its micrographs.

    Returns
    -------
    list of (image, label, metadata)
        Per micrograph: uint16 image ``(size, size)``, boolean label ``(size, size)``, and a
        metadata dict (scene, material, particles, optics, camera).
    """
    detector_px = scene.pixel_size * 10  # A
    sampling = detector_px / OVERSAMPLE
    energy = scene.voltage_kv * 1e3
    boxes = [
        math.ceil(2 * (p.projected_radius + optics.BOX_MARGIN) / sampling) for p in scene.particles
    ]
    margin = max([20.0, *[b * sampling / 2 + 5.0 for b in boxes]])  # boxes and CTF delocalisation
    off = math.ceil(margin / sampling)
    n = sfft.next_fast_len(scene.size * OVERSAMPLE + 2 * off)
    origin = off * sampling  # detector top-left corner in simulation coordinates, A

    # Each distinct particle is simulated once, centred on its box's middle pixel centre.
    waves = []
    for particle, box in zip(scene.particles, boxes, strict=True):
        positions = particle.atoms.positions.copy()
        positions[:, :2] += (box - 1) / 2 * sampling
        waves.append(
            optics.particle_exit_wave(
                positions,
                particle.atoms.numbers,
                box,
                sampling,
                energy,
                optics.particle_sampling(detector_px),
            )
        )

    psi = np.ones((n, n), dtype=np.complex64)
    material = MATERIALS[scene.material]
    label = np.zeros((scene.size, scene.size), dtype=bool)
    # A footprint depends only on the particle, its transform and where its box starts within
    # a detector pixel (OVERSAMPLE^2 cases), so each is rasterised once and stamped.
    stamps: dict[tuple[int, int, int, int], np.ndarray] = {}
    particle_rows = []
    for placement in scene.placements:
        particle, box = scene.particles[placement.particle], boxes[placement.particle]
        wanted = origin + np.asarray(placement.centre) * 10  # simulation coordinates, A
        # Box pixel (r, c) is simulation pixel (i0 + r, j0 + c), centred at (j0 + c + 0.5) * s.
        j0, i0 = (round(v / sampling - 0.5 - (box - 1) / 2) for v in wanted)
        centre = (
            np.array([j0, i0]) + 0.5 + (box - 1) / 2
        ) * sampling - origin  # detector coords, A
        psi[i0 : i0 + box, j0 : j0 + box] *= _transform_array(
            waves[placement.particle], placement.transform
        )
        # The stamp's first detector pixel, and the particle centre relative to it.
        dc0, dr0 = (j0 - off) // OVERSAMPLE, (i0 - off) // OVERSAMPLE
        phase = (j0 - off - dc0 * OVERSAMPLE, i0 - off - dr0 * OVERSAMPLE)
        key = (placement.particle, placement.transform, *phase)
        if key not in stamps:
            local = (np.array(phase) + 0.5 + (box - 1) / 2) * sampling
            xy = _transform_xy(particle.atoms.positions[:, :2], placement.transform) + local
            side = box // OVERSAMPLE + 2
            stamps[key] = footprint(xy, material.radius, (side, side), detector_px, (0.0, 0.0))
        mask = _stamp(stamps[key], dr0, dc0, label)
        particle_rows.append(
            _particle_row(particle, placement, centre / 10, mask, scene.pixel_size)
        )

    slabs = max(1, round(scene.carbon_nm * 10 / CARBON_SLAB))
    thickness = scene.carbon_nm * 10 / slabs
    for _ in range(slabs):
        phase = optics.carbon_screen((n, n), sampling, thickness, energy, scene.rng)
        psi = optics.propagate(
            psi * np.exp(1j * phase).astype(np.complex64), sampling, thickness, energy
        )
    if scene.roughness_nm > 0:
        phase = optics.roughness_screen(
            (n, n),
            sampling,
            scene.roughness_nm * 10,
            scene.roughness_length_nm * 10,
            energy,
            scene.film_rng,
        )
        psi *= np.exp(1j * phase).astype(np.complex64)

    crop = slice(off, off + scene.size * OVERSAMPLE)
    results = []
    for variant, imaging in enumerate(scene.imaging):
        intensity = optics.image(
            psi,
            sampling,
            energy,
            cs=imaging.cs_mm * 1e7,
            # The recorded defocus is the particles' (their exit plane is the film's top
            # surface); the wave here has crossed the film, which lies that much downstream.
            defocus=(imaging.defocus_nm + scene.carbon_nm) * 10,
            focal_spread=imaging.focal_spread_nm * 10,
            angular_spread=imaging.angular_spread_mrad,
            aperture=imaging.aperture_mrad,
        )
        detector = bin_pixels(intensity[crop, crop], OVERSAMPLE)
        counts = expose(detector, imaging.camera, detector_px, scene.rng)
        meta = {
            "scene": scene.index,
            "variant": variant,
            "material": scene.material,
            "pixel_size_nm": scene.pixel_size,
            "size_px": scene.size,
            "voltage_kv": scene.voltage_kv,
            "cs_mm": imaging.cs_mm,
            "defocus_nm": imaging.defocus_nm,
            "focal_spread_nm": imaging.focal_spread_nm,
            "angular_spread_mrad": imaging.angular_spread_mrad,
            "aperture_mrad": imaging.aperture_mrad,
            "dose_e_per_a2": imaging.camera.dose,
            "carbon_thickness_nm": scene.carbon_nm,
            "carbon_roughness_nm": scene.roughness_nm,
            "carbon_roughness_length_nm": scene.roughness_length_nm,
            "n_particles": len(scene.placements),
            "particle_fraction": float(label.mean()),
            "camera": imaging.camera.to_dict(),
            "particles": particle_rows,
        }
        results.append((counts, label, meta))
    return results


def _stamp(stamp: np.ndarray, row: int, col: int, label: np.ndarray) -> np.ndarray:
    """OR `stamp` into `label` with its top-left at (`row`, `col`); return the part inside."""
    r0, c0 = max(row, 0), max(col, 0)
    r1 = min(row + stamp.shape[0], label.shape[0])
    c1 = min(col + stamp.shape[1], label.shape[1])
    if r0 >= r1 or c0 >= c1:
        return np.zeros((0, 0), dtype=bool)
    inside = stamp[r0 - row : r1 - row, c0 - col : c1 - col]
    label[r0:r1, c0:c1] |= inside
    return inside


def _particle_row(
    particle: Particle,
    placement: Placement,
    centre: np.ndarray,
    mask: np.ndarray,
    pixel_size: float,
) -> dict[str, Any]:
    from scipy.spatial.transform import Rotation

    area_px = int(mask.sum())
    euler = Rotation.from_matrix(particle.rotation).as_euler("zxz", degrees=True)
    return {
        "particle": placement.particle,
        "transform": placement.transform,
        "shape": particle.shape,
        "diameter_nm": round(particle.diameter, 4),
        "projected_diameter_nm": round(2 * math.sqrt(area_px / math.pi) * pixel_size, 4),
        "x_nm": round(float(centre[0]), 4),
        "y_nm": round(float(centre[1]), 4),
        "zone_axis": None if particle.zone_axis is None else list(particle.zone_axis),
        "euler_zxz_deg": [round(float(a), 3) for a in euler],
        "n_atoms": len(particle.atoms),
        "visible_px": area_px,
    }
