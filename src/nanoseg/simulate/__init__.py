"""Physics-based synthetic (HR)TEM micrographs of nanoparticles on carbon, with exact labels.

Real crystal structures (ASE), multislice electron scattering and the lens's contrast transfer
(abTEM), dose noise and a camera model. See :func:`simulate` and ``docs/simulation.md``.
"""

from nanoseg.simulate.runner import SimulationError, parse_range, simulate, validate
from nanoseg.simulate.structures import MATERIALS

__all__ = ["MATERIALS", "SimulationError", "parse_range", "simulate", "validate"]
