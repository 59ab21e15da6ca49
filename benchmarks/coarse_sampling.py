"""How coarse may the particle multislice be at coarse detector pixels? (the cheaper image model)

A 7 nm Au truncated octahedron is simulated with the multislice grid at 0.07 A (the reference
used for HRTEM) and coarser, then imaged through the same lens (Cs 1 mm, defocus that leaves a
speckle 4 px across, as medium-magnification images are focused) and binned to the detector.
Prints, per detector pixel size, the mean absolute difference from the 0.07 A image relative to
the reference's mean contrast, the particle's darkest contrast, and the multislice time.

    python benchmarks/coarse_sampling.py
"""

from __future__ import annotations

import math
import time

import numpy as np

from nanoseg.simulate import optics, structures
from nanoseg.simulate.camera import bin_pixels

ENERGY = 200e3


def main() -> None:
    optics.configure_abtem()
    rng = np.random.default_rng(1)
    particle = structures.build_particle(
        structures.MATERIALS["au"], "truncated_octahedron", 7.0, rng
    )
    print("| detector px (A) | sampling (A) | error vs 0.07 A | particle contrast | time (s) |")
    print("|---|---|---|---|---|")
    for detector in (0.6, 1.0, 1.5, 3.0, 6.0):
        sampling = detector / 2
        box = math.ceil(2 * (particle.projected_radius + optics.BOX_MARGIN) / sampling)
        positions = particle.atoms.positions.copy()
        positions[:, :2] += (box - 1) / 2 * sampling
        defocus = (4 * detector) ** 2 / optics.wavelength(ENERGY)
        reference = None
        for fine in (0.07, 0.1, 0.14, 0.2, 0.28):
            start = time.perf_counter()
            wave = optics.particle_exit_wave(
                positions, particle.atoms.numbers, box, sampling, ENERGY, fine
            )
            seconds = time.perf_counter() - start
            n = 2 * ((box + 40) // 2)
            psi = np.ones((n, n), np.complex64)
            psi[20 : 20 + box, 20 : 20 + box] = wave
            intensity = optics.image(
                psi,
                sampling,
                ENERGY,
                cs=1e7,
                defocus=defocus,
                focal_spread=40,
                angular_spread=0.05,
                aperture=None,
            )
            image = bin_pixels(intensity, 2)
            if reference is None:
                reference = image
            error = np.abs(image - reference).mean() / np.abs(reference - 1).mean()
            print(
                f"| {detector:g} | {fine:g} | {100 * error:.1f} % | {1 - image.min():.3f} "
                f"| {seconds:.2f} |"
            )


if __name__ == "__main__":
    main()
