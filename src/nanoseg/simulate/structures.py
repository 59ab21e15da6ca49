"""Atomic structures for simulated micrographs: nanoparticles of real crystals and amorphous carbon.

Particles are built with ASE from their crystal structures (fcc metals as spheres, cuboctahedra,
truncated octahedra, Marks-type decahedra and icosahedra; CdSe as wurtzite or zinc blende cut to a
sphere) and rotated either onto a low-index zone axis (strong lattice fringes) or to a random
orientation (weak or no fringes). Coordinates are in Angstrom, as in ASE and abTEM; the beam runs
along +z.

The label of a particle is its projected footprint on the detector (see :func:`footprint`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.cluster import Decahedron, Icosahedron, Octahedron
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

__all__ = [
    "MATERIALS",
    "Material",
    "Particle",
    "amorphous_carbon",
    "build_particle",
    "footprint",
]

AVOGADRO = 6.02214076e23


@dataclass(frozen=True)
class Material:
    """A particle material.

    Attributes
    ----------
    name : str
        Key used on the command line (``au``, ``cdse``, ...).
    formula : str
        Chemical formula given to ASE.
    structure : str
        ``fcc``, ``wurtzite`` or ``zincblende``.
    a, c : float
        Lattice constants in Angstrom (``c`` for wurtzite only).
    radius : float
        Atomic radius in Angstrom used for the label footprint (metallic radius for metals,
        mean covalent radius of the two elements for CdSe).
    shapes : tuple of str
        Particle shapes this material is simulated in.
    zone_axes : tuple of tuple of int
        Low-index directions ``[u, v, w]`` (lattice coordinates of the conventional cell for fcc
        and zinc blende, of the hexagonal cell for wurtzite) put along the beam when a particle is
        oriented on a zone axis.
    """

    name: str
    formula: str
    structure: str
    a: float
    radius: float
    shapes: tuple[str, ...]
    zone_axes: tuple[tuple[int, int, int], ...]
    c: float = 0.0


_FCC_SHAPES = ("sphere", "cuboctahedron", "truncated_octahedron", "decahedron", "icosahedron")
_CUBIC_AXES = ((0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2))
# Hexagonal zone axes in 3-index form: [0001] = [001], [11-20] = [110], [10-10] = [210].
_HEX_AXES = ((0, 0, 1), (1, 1, 0), (2, 1, 0))

#: Materials nanoseg simulates, by command-line name.
MATERIALS: dict[str, Material] = {
    "au": Material("au", "Au", "fcc", 4.078, 1.44, _FCC_SHAPES, _CUBIC_AXES),
    "pd": Material("pd", "Pd", "fcc", 3.891, 1.37, _FCC_SHAPES, _CUBIC_AXES),
    "pt": Material("pt", "Pt", "fcc", 3.924, 1.39, _FCC_SHAPES, _CUBIC_AXES),
    "ag": Material("ag", "Ag", "fcc", 4.086, 1.44, _FCC_SHAPES, _CUBIC_AXES),
    "cdse": Material("cdse", "CdSe", "wurtzite", 4.299, 1.35, ("sphere",), _HEX_AXES, c=7.010),
    "cdse-zb": Material("cdse-zb", "CdSe", "zincblende", 6.077, 1.35, ("sphere",), _CUBIC_AXES),
}


@dataclass
class Particle:
    """A particle placed in a micrograph.

    Attributes
    ----------
    atoms : ase.Atoms
        Atom positions in Angstrom, centred on the origin, already rotated (beam along +z).
    material : str
    shape : str
    diameter : float
        Volume-equivalent sphere diameter in nm (from the number of atoms).
    zone_axis : tuple of int or None
        Zone axis on the beam, or None for a random orientation.
    rotation : numpy.ndarray
        The 3x3 rotation applied to the crystal.
    """

    atoms: Atoms
    material: str
    shape: str
    diameter: float
    zone_axis: tuple[int, int, int] | None
    rotation: np.ndarray

    @property
    def projected_radius(self) -> float:
        """Largest distance of an atom from the beam axis through the centre, in Angstrom."""
        xy = self.atoms.positions[:, :2]
        return float(np.sqrt((xy**2).sum(axis=1)).max())

    @property
    def height(self) -> float:
        """Extent along the beam in Angstrom."""
        z = self.atoms.positions[:, 2]
        return float(z.max() - z.min())


def _atom_volume(material: Material) -> float:
    """Volume per atom in A^3 (fcc: a^3/4; zinc blende: a^3/8; wurtzite: cell volume / 4)."""
    if material.structure == "fcc":
        return material.a**3 / 4
    if material.structure == "zincblende":
        return material.a**3 / 8
    return (math.sqrt(3) / 2 * material.a**2 * material.c) / 4


def _volume_diameter(material: Material, n_atoms: int) -> float:
    """Diameter in nm of a sphere holding `n_atoms` at the bulk density."""
    return float((6 * n_atoms * _atom_volume(material) / math.pi) ** (1 / 3) / 10)


@functools.lru_cache(maxsize=8)
def _bulk_cell(material: Material) -> Atoms:
    if material.structure == "fcc":
        return bulk(material.formula, "fcc", a=material.a, cubic=True)
    if material.structure == "zincblende":
        return bulk(material.formula, "zincblende", a=material.a, cubic=True)
    return bulk(material.formula, "wurtzite", a=material.a, c=material.c)


def _sphere(material: Material, diameter_nm: float) -> Atoms:
    cell = _bulk_cell(material)
    radius = diameter_nm * 5.0  # nm diameter -> A radius
    lengths = cell.cell.lengths()
    reps = [math.ceil(2 * radius / length) + 2 for length in lengths]
    block = cell.repeat(reps)
    block.positions -= block.cell.array.sum(axis=0) / 2
    keep = np.linalg.norm(block.positions, axis=1) <= radius
    return Atoms(numbers=block.numbers[keep], positions=block.positions[keep])


def _make_cluster(material: Material, shape: str, size: int) -> Atoms:
    symbol, a = material.formula, material.a
    if shape == "cuboctahedron":
        return Octahedron(symbol, length=2 * size + 1, cutoff=size, latticeconstant=a)
    if shape == "truncated_octahedron":
        return Octahedron(symbol, length=3 * size + 1, cutoff=size, latticeconstant=a)
    if shape == "icosahedron":
        return Icosahedron(symbol, noshells=size, latticeconstant=a)
    if shape == "decahedron":
        # Marks decahedron: p atoms along the (100) facets, q along the twin axis, r re-entrance.
        return Decahedron(
            symbol, p=size, q=max(1, size // 2), r=min(2, size // 3), latticeconstant=a
        )
    raise ValueError(f"unknown particle shape {shape!r}")


@functools.lru_cache(maxsize=1024)
def _cluster_diameter(material: Material, shape: str, size: int) -> float:
    """Volume-equivalent diameter in nm of the magic cluster with size parameter `size`."""
    return _volume_diameter(material, len(_make_cluster(material, shape, size)))


def _cluster(material: Material, shape: str, diameter_nm: float) -> Atoms:
    """The magic-number cluster of `shape` whose volume-equivalent diameter is nearest."""
    sizes = []
    for size in range(2, 80):
        sizes.append((abs(_cluster_diameter(material, shape, size) - diameter_nm), size))
        if _cluster_diameter(material, shape, size) > diameter_nm:
            break
    best = _make_cluster(material, shape, min(sizes)[1])
    # ASE clusters are Cluster objects; abTEM copies atoms, which sliced Clusters do not survive.
    return Atoms(numbers=best.numbers, positions=best.get_positions())


def _lattice(material: Material) -> np.ndarray:
    return np.asarray(_bulk_cell(material).cell.array)


def build_particle(
    material: Material,
    shape: str,
    diameter_nm: float,
    rng: np.random.Generator,
    *,
    zone_axis_probability: float = 0.5,
) -> Particle:
    """Build one particle, oriented on a zone axis or randomly.

    Parameters
    ----------
    material : Material
    shape : str
        One of ``material.shapes``.
    diameter_nm : float
        Target volume-equivalent diameter in nm (clusters snap to the nearest magic size).
    rng : numpy.random.Generator
    zone_axis_probability : float
        Chance that a low-index zone axis is put on the beam (then within 1 degree, with a
        random rotation about the beam); otherwise the orientation is uniformly random.

    Returns
    -------
    Particle
    """
    atoms = (
        _sphere(material, diameter_nm)
        if shape == "sphere"
        else _cluster(material, shape, diameter_nm)
    )
    atoms.positions -= atoms.positions.mean(axis=0)
    zone = None
    if rng.random() < zone_axis_probability:
        axes = material.zone_axes
        zone = axes[int(rng.integers(len(axes)))]
        if shape in ("decahedron", "icosahedron"):
            # Multiply twinned particles: ASE builds the five-fold axis along z.
            zone = (0, 0, 1)
            direction = np.array([0.0, 0.0, 1.0])
        else:
            direction = np.asarray(zone, float) @ _lattice(material)
        align, _ = Rotation.align_vectors([[0.0, 0.0, 1.0]], [direction])
        tilt = Rotation.from_rotvec(
            np.deg2rad(rng.uniform(0, 1.0)) * _unit(np.r_[rng.normal(size=2), 0.0])
        )
        spin = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True)
        rotation = (spin * tilt * align).as_matrix()
    else:
        rotation = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    atoms.positions = atoms.positions @ rotation.T
    return Particle(
        atoms=atoms,
        material=material.name,
        shape=shape,
        diameter=_volume_diameter(material, len(atoms)),
        zone_axis=zone,
        rotation=rotation,
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else np.array([1.0, 0.0, 0.0])


def amorphous_carbon(
    lx: float,
    ly: float,
    lz: float,
    rng: np.random.Generator,
    *,
    density: float = 2.0,
    min_distance: float = 1.4,
) -> Atoms:
    """Amorphous carbon: random positions with a minimum C-C distance, periodic in x and y.

    Random sequential addition in batches: candidates closer than `min_distance` to an
    accepted atom or to each other are dropped until the density is reached.

    Parameters
    ----------
    lx, ly, lz : float
        Box size in Angstrom.
    rng : numpy.random.Generator
    density : float
        Mass density in g/cm^3 (evaporated carbon films: about 1.9-2.2).
    min_distance : float
        Minimum C-C distance in Angstrom.

    Returns
    -------
    ase.Atoms
        Carbon atoms in a cell of ``(lx, ly, lz)``, periodic in x and y.
    """
    target = round(density / 12.011 * AVOGADRO * 1e-24 * lx * ly * lz)
    box = (lx, ly, lz + min_distance)  # no periodic contact across the film's two surfaces
    accepted = np.empty((0, 3))
    for _ in range(1000):
        need = target - len(accepted)
        if need <= 0:
            break
        candidates = rng.random((int(need * 1.2) + 16, 3)) * (lx, ly, lz)
        if len(accepted):
            dist, _ = cKDTree(accepted, boxsize=box).query(
                candidates, k=1, distance_upper_bound=min_distance
            )
            candidates = candidates[~np.isfinite(dist)]
        if len(candidates) > 1:
            pairs = cKDTree(candidates, boxsize=box).query_pairs(
                min_distance, output_type="ndarray"
            )
            if len(pairs):
                clash = np.zeros(len(candidates), bool)
                clash[pairs.max(axis=1)] = True
                candidates = candidates[~clash]
        accepted = np.vstack([accepted, candidates[:need]])
    return Atoms(
        numbers=np.full(len(accepted), 6),
        positions=accepted,
        cell=(lx, ly, lz),
        pbc=(True, True, False),
    )


def footprint(
    xy: np.ndarray,
    radius: float,
    shape: tuple[int, int],
    pixel_size: float,
    origin: tuple[float, float],
) -> np.ndarray:
    """Rasterise a particle's projected footprint on the detector grid.

    The rule: a detector pixel belongs to the particle when its centre lies within `radius` of
    the projected position of one of the particle's atoms; holes enclosed by such pixels are
    filled. Pixel ``(row, col)`` covers ``[origin + (col, row) * pixel_size, ... + pixel_size)``
    and its centre is at ``origin + (col + 0.5, row + 0.5) * pixel_size``.

    Parameters
    ----------
    xy : numpy.ndarray
        Projected atom positions ``(n, 2)`` as (x, y) in Angstrom.
    radius : float
        Atomic radius in Angstrom.
    shape : (int, int)
        Detector ``(rows, cols)``.
    pixel_size : float
        Detector pixel size in Angstrom.
    origin : (float, float)
        Physical (x, y) of the detector's top-left corner, in Angstrom.

    Returns
    -------
    numpy.ndarray
        Boolean mask of `shape`.
    """
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    lo = np.floor((xy.min(axis=0) - radius - np.asarray(origin)) / pixel_size).astype(int) - 1
    hi = np.ceil((xy.max(axis=0) + radius - np.asarray(origin)) / pixel_size).astype(int) + 1
    c0, r0 = max(lo[0], 0), max(lo[1], 0)
    c1, r1 = min(hi[0], cols), min(hi[1], rows)
    if c0 >= c1 or r0 >= r1:
        return mask
    cc, rr = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
    centres = np.stack(
        [origin[0] + (cc.ravel() + 0.5) * pixel_size, origin[1] + (rr.ravel() + 0.5) * pixel_size],
        axis=1,
    )
    dist, _ = cKDTree(xy).query(centres, k=1, distance_upper_bound=radius)
    inside = np.isfinite(dist).reshape(cc.shape)
    mask[r0:r1, c0:c1] = ndimage.binary_fill_holes(inside)
    return mask
