"""The camera: pixel integration, dose and shot noise, detector blur, gain, offset, read noise,
slow background variation and X-ray spikes, recorded as 16-bit integers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

__all__ = ["Camera", "bin_pixels", "expose", "random_camera"]

#: Largest value a 16-bit camera records.
FULL_WELL = 65535


@dataclass(frozen=True)
class Camera:
    """Camera and exposure settings of one micrograph.

    Attributes
    ----------
    dose : float
        Electron dose in e/A^2.
    kind : str
        ``"direct"`` (counting detector: no blur beyond the pixel) or ``"scintillator"``
        (CCD/CMOS behind a scintillator: Lorentzian-like blur of signal and noise).
    mtf_half : float
        For scintillators, the frequency (in units of Nyquist) where the blur's MTF is 1/2.
    gain : float
        Digital units per detected electron.
    offset : float
        Dark level in digital units.
    read_noise : float
        Standard deviation of the read noise in digital units.
    background : float
        Relative amplitude of the slow illumination variation (0.05 = +-5 %).
    spikes : int
        Number of X-ray spikes (single bright pixels or short streaks).
    """

    dose: float
    kind: str
    mtf_half: float
    gain: float
    offset: float
    read_noise: float
    background: float
    spikes: int

    def to_dict(self) -> dict[str, float | int | str]:
        """Settings as a plain dict for the metadata table."""
        return asdict(self)


def random_camera(rng: np.random.Generator, dose: float, pixel_size: float, size: int) -> Camera:
    """Draw camera settings for a micrograph.

    Parameters
    ----------
    rng : numpy.random.Generator
    dose : float
        Electron dose in e/A^2.
    pixel_size : float
        Detector pixel size in A.
    size : int
        Detector side in pixels (the spike count scales with the area).
    """
    electrons = dose * pixel_size**2
    # Keep bright regions (up to ~4x the mean) below the 16-bit ceiling, as an operator would.
    gain = float(min(rng.uniform(0.5, 8.0), 0.75 * FULL_WELL / (4.0 * electrons)))
    # Cameras write dark-subtracted or slightly offset data: the offset is a small part of the
    # signal, not larger than it (a fixed 0-1000 DN swamped weak HRTEM signals).
    offset = float(rng.uniform(0, 0.25)) * gain * electrons
    direct = rng.random() < 0.5
    return Camera(
        dose=float(dose),
        kind="direct" if direct else "scintillator",
        mtf_half=1.0 if direct else float(rng.uniform(0.2, 0.6)),
        gain=gain,
        offset=offset,
        read_noise=float(rng.uniform(0.5, 6.0)),
        background=float(rng.uniform(0.0, 0.08)),
        spikes=int(rng.poisson(rng.uniform(0, 8) * size * size / 512**2)),
    )


def bin_pixels(intensity: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks: what a pixel collects from a finer image.

    Parameters
    ----------
    intensity : numpy.ndarray
        ``(rows, cols)``, both multiples of `factor`.
    factor : int

    Returns
    -------
    numpy.ndarray
        float32 ``(rows // factor, cols // factor)``.
    """
    rows, cols = intensity.shape
    blocks = intensity.reshape(rows // factor, factor, cols // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _slow_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(shape) / 6, mode="wrap")
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _blur(counts: np.ndarray, mtf_half: float) -> np.ndarray:
    rows, cols = counts.shape
    qy = sfft.fftfreq(rows)[:, None] * 2  # in units of Nyquist
    qx = sfft.fftfreq(cols)[None, :] * 2
    mtf = 1.0 / (1.0 + (qy**2 + qx**2) / mtf_half**2)
    return sfft.ifft2(sfft.fft2(counts) * mtf).real


def expose(
    intensity: np.ndarray, camera: Camera, pixel_size: float, rng: np.random.Generator
) -> np.ndarray:
    """Record an image: electrons, shot noise, blur, gain, offset, read noise, spikes, 16 bit.

    Parameters
    ----------
    intensity : numpy.ndarray
        Detector-pixel intensity ``(rows, cols)``, 1 for the empty beam.
    camera : Camera
    pixel_size : float
        Detector pixel size in A.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        uint16 ``(rows, cols)``.
    """
    electrons = camera.dose * pixel_size**2
    illumination = 1.0 + camera.background * _slow_field(intensity.shape, rng)
    expected = np.clip(intensity * illumination, 0, None) * electrons
    counts = rng.poisson(expected).astype(np.float64)
    if camera.kind == "scintillator":
        counts = _blur(counts, camera.mtf_half)
    signal = camera.gain * counts + camera.offset
    signal += rng.normal(0.0, camera.read_noise, size=signal.shape)
    rows, cols = signal.shape
    for _ in range(camera.spikes):
        r, c = int(rng.integers(rows)), int(rng.integers(cols))
        # An X-ray deposits many times the signal of one electron; some leave a short track.
        value = camera.gain * max(electrons, 1.0) * rng.uniform(5, 40)
        signal[r, c] += value
        if rng.random() < 0.3:
            dr, dc = (0, 1) if rng.random() < 0.5 else (1, 0)
            signal[min(r + dr, rows - 1), min(c + dc, cols - 1)] += value * rng.uniform(0.3, 1.0)
    return np.clip(np.rint(signal), 0, FULL_WELL).astype(np.uint16)
