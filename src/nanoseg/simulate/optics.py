"""Electron optics: particle exit waves by multislice (abTEM), the carbon film, and the lens.

How one exit wave is computed (lengths in Angstrom, arrays indexed ``[row, col] = [y, x]``):

1. Each particle is simulated alone by abTEM multislice (Lobato potentials, infinite projection,
   2 A slices) in a vacuum-padded box at a fine sampling (about 0.07 A, so the strong dynamical
   scattering of heavy columns converges), Fourier-cropped to the simulation grid (the crop
   removes electrons scattered beyond the grid's band limit, as an objective aperture would),
   normalised so vacuum is 1, and multiplied into a plane wave at its place in the field.
2. The wave then crosses the amorphous carbon film, modelled as phase screens about 1.5 nm
   apart with Fresnel propagation between them. Each screen is a Gaussian random phase field
   whose power spectrum is that of the projected potential of atomistic amorphous carbon
   (random atoms with a minimum C-C distance at 2 g/cm^3, built once per process with abTEM),
   scaled with thickness. ``docs/simulation.md`` shows side by side that this film gives the
   same images and power spectra as multislice through the atoms themselves, at a fraction of
   the cost for large fields. Optionally (``--film-roughness``) one more screen,
   :func:`roughness_screen`, adds the film's varying thickness.
3. :func:`image` applies the objective lens with abTEM's CTF (defocus, Cs, partial temporal
   coherence as focal spread, partial spatial coherence as angular spread, optional aperture).

Simulation-grid pixel ``i`` is centred at ``(i + 0.5) * sampling``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import fft as sfft

__all__ = [
    "carbon_psd",
    "carbon_screen",
    "configure_abtem",
    "image",
    "particle_exit_wave",
    "particle_sampling",
    "propagate",
    "roughness_screen",
]

#: Target sampling of the particle multislice, A; coarser than ~0.08 A misrepresents the
#: dynamical scattering of Au columns (measured: 54 % image error at 0.125 A, 7.5 % at 0.0625 A).
PARTICLE_SAMPLING = 0.07
#: Coarser particle sampling for coarser detectors, as (detector pixel at least, A; sampling, A).
#: Lattice fringes are not resolved there, and the binned images differ from 0.07 A multislice
#: by 1-2 % (0.1 A) and 4-5 % (0.14 A) mean absolute error, with the same particle contrast
#: (benchmarks/coarse_sampling.py); the multislice is 3x and 7x faster.
COARSE_SAMPLING = ((1.5, 0.14), (0.5, 0.1))
#: Largest particle-box grid; bigger particles are simulated slightly coarser instead.
MAX_PARTICLE_GPTS = 1536
#: Slice thickness of the particle multislice, A (2.6 % error against 0.5 A slices).
SLICE_THICKNESS = 2.0
#: Vacuum margin around a particle in its box, A.
BOX_MARGIN = 10.0
#: Thickness of the atomistic carbon block whose potential spectrum the film reproduces, A.
_CARBON_BLOCK = (48.0, 48.0, 30.0)
_CARBON_SAMPLING = 0.05
#: Mean inner potential of amorphous carbon, V (measured 7.8-10.7 V for densities 1.6-2.2).
CARBON_INNER_POTENTIAL = 9.0


def configure_abtem() -> None:
    """Run abTEM eagerly on the CPU with deterministic FFTs (same seed, same bytes)."""
    import abtem
    import dask

    abtem.config.set(
        {
            "device": "cpu",
            # FFTW_MEASURE times plans and can pick another one per run, which changes the last
            # bits; FFTW_ESTIMATE is deterministic and still faster than numpy's FFT here.
            "fft": "fftw",
            "fftw.threads": 1,
            "fftw.planning_effort": "FFTW_ESTIMATE",
            "precision": "float32",
            "diagnostics.progress_bar": False,
        }
    )
    dask.config.set(scheduler="synchronous")


def sigma(energy: float) -> float:
    """Interaction constant in rad/(V A) at `energy` eV (relativistic), as abTEM defines it."""
    from abtem.core.energy import energy2sigma

    return float(energy2sigma(energy))


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength in A at `energy` eV."""
    from abtem.core.energy import energy2wavelength

    return float(energy2wavelength(energy))


def _potential(atoms: Any, gpts: int, slice_thickness: float) -> Any:
    """abTEM potential of `atoms` on a square grid: the one scattering model of the simulator.

    Lobato parametrisation with infinite projection, for the particles and for the atomistic
    carbon whose spectrum the film reproduces, so both always scatter the same way.
    """
    import abtem

    return abtem.Potential(
        atoms,
        gpts=(gpts, gpts),
        slice_thickness=slice_thickness,
        projection="infinite",
        parametrization="lobato",
    )


def particle_sampling(detector_px: float) -> float:
    """Sampling (A) of the particle multislice for a detector pixel of `detector_px` A."""
    for coarsest, fine in COARSE_SAMPLING:
        if detector_px >= coarsest:
            return fine
    return PARTICLE_SAMPLING


def particle_gpts(extent: float, box: int = 0, sampling: float = PARTICLE_SAMPLING) -> int:
    """Side of the fine multislice grid of a particle box `extent` A wide (at least `box`)."""
    return sfft.next_fast_len(int(min(MAX_PARTICLE_GPTS, max(box, round(extent / sampling)))))


def particle_exit_wave(
    positions: np.ndarray,
    numbers: np.ndarray,
    box: int,
    sampling: float,
    energy: float,
    fine_sampling: float = PARTICLE_SAMPLING,
) -> np.ndarray:
    """Exit wave of one particle in a box of ``box x box`` simulation pixels.

    Parameters
    ----------
    positions : numpy.ndarray
        ``(n, 3)`` atom positions in A relative to the box origin: x, y inside
        ``[0, box * sampling)``, z increasing along the beam.
    numbers : numpy.ndarray
        ``(n,)`` atomic numbers.
    box : int
        Box side in simulation pixels.
    sampling : float
        Simulation-grid sampling in A.
    energy : float
        Beam energy in eV.
    fine_sampling : float
        Target sampling of the multislice grid in A (see :func:`particle_sampling`).

    Returns
    -------
    numpy.ndarray
        complex64 ``(box, box)`` indexed ``[y, x]``, 1 in vacuum, at the plane of the
        particle's lowest atom.
    """
    import abtem
    from ase import Atoms

    extent = box * sampling
    fine = particle_gpts(extent, box, fine_sampling)
    pos = np.array(positions, dtype=float)
    pos[:, 2] -= pos[:, 2].min() - 1.0
    height = math.ceil((pos[:, 2].max() + 1.0) / SLICE_THICKNESS) * SLICE_THICKNESS
    atoms = Atoms(numbers=numbers, positions=pos, cell=(extent, extent, height), pbc=True)
    potential = _potential(atoms, fine, SLICE_THICKNESS)
    waves = abtem.PlaneWave(energy=energy).multislice(potential, lazy=False)
    psi = np.asarray(waves.array, dtype=np.complex64).T  # abTEM indexes [x, y]
    psi = fourier_crop(psi, box)
    ring = np.concatenate(
        [psi[:2].ravel(), psi[-2:].ravel(), psi[:, :2].ravel(), psi[:, -2:].ravel()]
    )
    reference = ring.mean()
    return (psi / reference).astype(np.complex64)


def fourier_crop(psi: np.ndarray, size: int) -> np.ndarray:
    """Band-limit a square wave to ``size x size`` samples over the same extent.

    Parameters
    ----------
    psi : numpy.ndarray
        complex ``(n, n)``, ``n >= size``.
    size : int

    Returns
    -------
    numpy.ndarray
        complex64 ``(size, size)``; amplitudes are preserved (vacuum stays 1).
    """
    n = psi.shape[0]
    if n == size:
        return psi.astype(np.complex64)
    spectrum = sfft.fftshift(sfft.fft2(psi))
    start = n // 2 - size // 2
    cropped = spectrum[start : start + size, start : start + size]
    out = sfft.ifft2(sfft.ifftshift(cropped)) * (size * size / (n * n))
    return out.astype(np.complex64)


def _frequencies(shape: Sequence[int], sampling: float) -> np.ndarray:
    ky = sfft.fftfreq(shape[0], sampling)
    kx = sfft.fftfreq(shape[1], sampling)
    return (ky[:, None] ** 2 + kx[None, :] ** 2).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _propagator(
    shape: tuple[int, int], sampling: float, distance: float, energy: float
) -> np.ndarray:
    k2 = _frequencies(shape, sampling)
    kernel = np.exp(-1j * np.pi * wavelength(energy) * distance * k2).astype(np.complex64)
    # abTEM's anti-aliasing aperture: keep 2/3 of the Nyquist frequency.
    kernel[k2 > (2 / 3 * 0.5 / sampling) ** 2] = 0
    return kernel


def propagate(psi: np.ndarray, sampling: float, distance: float, energy: float) -> np.ndarray:
    """Fresnel-propagate a wave by `distance` A through vacuum (band-limited to 2/3 Nyquist)."""
    kernel = _propagator(psi.shape, float(sampling), float(distance), float(energy))
    return sfft.ifft2(sfft.fft2(psi) * kernel).astype(np.complex64)


@functools.lru_cache(maxsize=4)
def carbon_psd(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of the projected potential of amorphous carbon.

    Built once per process from an atomistic film
    (:func:`~nanoseg.simulate.structures.amorphous_carbon`, 48 x 48 A, 30 A thick) with
    abTEM's Lobato potentials at 0.05 A sampling.

    Returns
    -------
    k : numpy.ndarray
        Spatial frequencies in 1/A.
    psd : numpy.ndarray
        Power spectral density of the projected potential, in (V A)^2 A^2 per A of film
        thickness (the film is many atoms thick, so the spectrum scales with thickness).
    """

    from nanoseg.simulate.structures import amorphous_carbon

    lx, ly, lz = _CARBON_BLOCK
    atoms = amorphous_carbon(lx, ly, lz, np.random.default_rng(seed))
    gpts = round(lx / _CARBON_SAMPLING)
    potential = _potential(atoms, gpts, lz).build(lazy=False)
    projected = np.asarray(potential.array, dtype=np.float64).sum(axis=0)
    projected -= projected.mean()
    dx = lx / gpts
    power = np.abs(np.fft.fft2(projected)) ** 2 * dx * dx / (gpts * gpts)
    k = np.sqrt(_frequencies((gpts, gpts), dx)).astype(np.float64)
    dk = 1.0 / lx
    bins = np.rint(k / dk).astype(int)
    counts = np.bincount(bins.ravel())
    profile = np.bincount(bins.ravel(), power.ravel()) / np.maximum(counts, 1)
    k_axis = np.arange(len(profile)) * dk
    keep = counts > 0
    return k_axis[keep], profile[keep] / lz


def carbon_screen(
    shape: tuple[int, int],
    sampling: float,
    thickness: float,
    energy: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Phase shift (rad) of a slab of amorphous carbon, as a Gaussian random field.

    Parameters
    ----------
    shape : (int, int)
        Grid ``(rows, cols)``.
    sampling : float
        Grid sampling in A.
    thickness : float
        Slab thickness in A.
    energy : float
        Beam energy in eV.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        float32 phase of `shape`, zero mean.
    """
    k_axis, psd = carbon_psd()
    k = np.sqrt(_frequencies(shape, sampling))
    # Below the block's lowest frequency the spectrum is flat (density fluctuations are local).
    density = np.interp(k, k_axis[1:], psd[1:], left=psd[1], right=0.0)
    density[0, 0] = 0.0
    amplitude = np.sqrt(density * thickness).astype(np.float32) * (sigma(energy) / sampling)
    return _coloured_noise(amplitude, rng).astype(np.float32)


def _coloured_noise(amplitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise of `amplitude`'s shape filtered by it (a Fourier amplitude)."""
    noise = sfft.fft2(rng.standard_normal(amplitude.shape, dtype=np.float32))
    return sfft.ifft2(noise * amplitude).real


def roughness_screen(
    shape: tuple[int, int],
    sampling: float,
    rms: float,
    length: float,
    energy: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Phase shift (rad) of a carbon film's thickness variation, as a Gaussian random field.

    The atomistic spectrum of :func:`carbon_screen` is that of a film of uniform thickness and
    density; real films also vary in thickness over a few nanometres. The extra projected
    potential is the carbon's mean inner potential times that variation.

    Parameters
    ----------
    shape : (int, int)
        Grid ``(rows, cols)``.
    sampling : float
        Grid sampling in A.
    rms : float
        Root-mean-square thickness variation in A.
    length : float
        Its correlation length in A (1/e width of a Gaussian correlation).
    energy : float
        Beam energy in eV.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        float32 phase of `shape`, zero mean.
    """
    k2 = _frequencies(shape, sampling)
    # A Gaussian correlation exp(-r^2 / length^2) has the power spectrum exp(-(pi k length)^2).
    amplitude = np.exp(-((np.pi * length) ** 2) * k2 / 2).astype(np.float32)
    amplitude[0, 0] = 0.0
    field = _coloured_noise(amplitude, rng)
    field *= rms / max(float(field.std()), 1e-12)
    return (sigma(energy) * CARBON_INNER_POTENTIAL * field).astype(np.float32)


def image(
    psi: np.ndarray,
    sampling: float,
    energy: float,
    *,
    cs: float,
    defocus: float,
    focal_spread: float,
    angular_spread: float,
    aperture: float | None,
) -> np.ndarray:
    """Bright-field image intensity of an exit wave through the objective lens (abTEM CTF).

    Parameters
    ----------
    psi : numpy.ndarray
        complex64 exit wave ``(rows, cols)``.
    sampling : float
        Grid sampling in A.
    energy : float
        Beam energy in eV.
    cs : float
        Spherical aberration C3 in A (1.2 mm = 1.2e7 A; aberration-corrected: a few 1e4 A).
    defocus : float
        Defocus in A, abTEM's sign: positive is underfocus (``C10 = -defocus``).
    focal_spread : float
        1/e half-width of the focal spread in A (partial temporal coherence).
    angular_spread : float
        Beam convergence semi-angle in mrad (partial spatial coherence).
    aperture : float or None
        Objective aperture semi-angle in mrad, or None for no aperture.

    Returns
    -------
    numpy.ndarray
        float32 intensity, 1 for an empty beam.
    """
    import abtem

    ctf = abtem.CTF(
        energy=energy,
        Cs=cs,
        defocus=defocus,
        focal_spread=focal_spread,
        angular_spread=angular_spread,
        semiangle_cutoff=np.inf if aperture is None else aperture,
    )
    # The CTF here is round (no astigmatism), so abTEM's [x, y] indexing does not matter.
    waves = abtem.Waves(psi, energy=energy, sampling=sampling)
    result = waves.apply_ctf(ctf).intensity()
    array = result.compute().array if hasattr(result, "compute") else result.array
    return np.asarray(array, dtype=np.float32)
