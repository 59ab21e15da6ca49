"""Figure for docs/simulation.md: the coarse particle multislice against the 0.07 A reference.

One medium-magnification scene (Au, 0.2 nm/px) is rendered twice from the same plan and the
same random numbers, without the camera: once with the particle multislice at the reference
0.07 A sampling, once at the sampling nanoseg uses for that pixel size (0.14 A). Shows both
micrographs, their difference, radially averaged power spectra and a line profile through
particles, and prints the relative error, the particle contrast and the render times.

    python docs/figures/make_coarse_figure.py   # about a minute on 2 cores
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from make_simulation_figures import frequency_grid, radial_profile

from nanoseg.simulate import optics
from nanoseg.simulate import scene as scene_module
from nanoseg.simulate.scene import SceneSettings, plan_scene, render_scene

HERE = Path(__file__).resolve().parent


def radial_psd(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ring-averaged periodogram (rings 1 Fourier px wide), frequencies in cycles per px."""
    power = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2
    n = image.shape[0]
    return radial_profile(power, frequency_grid(power.shape), np.arange(n // 2 + 1) / n)


def render(settings: SceneSettings, coarse: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """The scene's noise-free image intensity (the camera is left out: its shot noise would
    differ between the two renders and hide the physics), label and render time."""
    saved = optics.COARSE_SAMPLING
    optics.COARSE_SAMPLING = saved if coarse else ()
    scene_module.expose = lambda detector, camera, pixel_size, rng: detector
    try:
        scene = plan_scene(settings, 3, 7)
        start = time.perf_counter()
        image, label, _ = render_scene(scene)[0]
        return image.astype(float), label, time.perf_counter() - start
    finally:
        optics.COARSE_SAMPLING = saved


def main() -> None:
    optics.configure_abtem()
    settings = SceneSettings(("au",), 384, (0.2, 0.2), (4.0, 6.0), variants=1)
    reference, label, t_ref = render(settings, coarse=False)
    coarse, _, t_coarse = render(settings, coarse=True)
    film = np.median(reference[~label])
    error = np.abs(coarse - reference).mean() / np.abs(reference - film).mean()
    contrast = {
        name: float(1 - np.median(img[label]) / np.median(img[~label]))
        for name, img in (("reference", reference), ("coarse", coarse))
    }
    fig, axes = plt.subplots(1, 5, figsize=(20, 4))
    lo, hi = np.percentile(reference, [1, 99])
    for ax, img, title in (
        (axes[0], reference, f"particles at 0.07 A ({t_ref:.0f} s)"),
        (axes[1], coarse, f"particles at 0.14 A ({t_coarse:.0f} s)"),
    ):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.axis("off")
    span = hi - lo
    axes[2].imshow(coarse - reference, cmap="RdBu", vmin=-span / 4, vmax=span / 4)
    axes[2].set_title(f"difference (mean |d| = {100 * error:.1f} % of contrast)")
    axes[2].axis("off")
    for img, name in ((reference, "0.07 A"), (coarse, "0.14 A")):
        k, psd = radial_psd(img)
        axes[3].semilogy(k[2:] / 0.2, psd[2:], label=name, lw=1)
    axes[3].set_xlabel("spatial frequency (1/nm)")
    axes[3].set_title("radially averaged power spectrum")
    axes[3].legend()
    row = int(np.argmax(label.sum(axis=1)))
    axes[4].plot(reference[row], label="0.07 A", lw=1)
    axes[4].plot(coarse[row], label="0.14 A", lw=1)
    axes[4].fill_between(np.arange(label.shape[1]), lo, hi, where=label[row], alpha=0.15,
                         color="k", label="label")  # fmt: skip
    axes[4].set_title("line profile through particles")
    axes[4].legend()
    fig.tight_layout()
    fig.savefig(HERE / "coarse_vs_reference.png", dpi=90)
    result = {"relative_error": round(float(error), 4), "particle_contrast": contrast,
              "seconds": {"reference": round(t_ref, 1), "coarse": round(t_coarse, 1)}}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
