"""Particle outlines moved to the half-contrast edge (nanoseg.refine) and the Segmenter option."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nanoseg import Segmenter
from nanoseg.errors import NanosegError
from nanoseg.refine import refine_outlines


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _image(discs: list[np.ndarray], contrast: float = 1.0, seed: int = 0) -> np.ndarray:
    """Dark flat discs on a bright background, blurred like a lens, with noise."""
    image = 10.0 - contrast * np.sum(discs, axis=0).astype(float)
    image = ndimage.gaussian_filter(image, 2.0)
    return image + np.random.default_rng(seed).normal(0, 0.1, image.shape)


def _radius(mask: np.ndarray) -> float:
    return float(np.sqrt(mask.sum() / np.pi))


@pytest.mark.parametrize("drawn", [26.0, 15.0])
def test_outline_moves_to_the_true_edge(drawn: float) -> None:
    """A mask drawn too wide (a halo) or too tight ends at the disc's edge."""
    truth = _disc((128, 128), (64, 64), 20)
    image = _image([truth])
    refined = refine_outlines(image, _disc((128, 128), (64, 64), drawn))
    assert abs(_radius(refined) - 20) < 1.0
    assert (refined & truth).sum() / (refined | truth).sum() > 0.9


def test_level_moves_the_outline_outwards() -> None:
    truth = _disc((128, 128), (64, 64), 20)
    image = _image([truth])
    mask = _disc((128, 128), (64, 64), 24)
    tight = refine_outlines(image, mask, level=0.7)
    wide = refine_outlines(image, mask, level=0.3)
    assert _radius(tight) < _radius(refine_outlines(image, mask)) < _radius(wide)


def test_neighbours_stay_apart() -> None:
    """Two discs 4 px apart, found as two particles, are still two particles."""
    a, b = _disc((96, 160), (48, 50), 20), _disc((96, 160), (48, 114), 20)
    image = _image([a, b])
    found = _disc((96, 160), (48, 50), 22) | _disc((96, 160), (48, 114), 22)
    refined = refine_outlines(image, found)
    _, n = ndimage.label(refined, structure=np.ones((3, 3)))
    assert n == 2


def test_merged_particles_come_apart() -> None:
    """One blob over two discs with a clear gap between them becomes two particles."""
    a, b = _disc((96, 160), (48, 50), 20), _disc((96, 160), (48, 110), 20)
    image = _image([a, b])
    blob = ndimage.binary_closing(a | b, structure=np.ones((15, 15))) | _disc(
        (96, 160), (48, 80), 12
    )
    _, n = ndimage.label(blob, structure=np.ones((3, 3)))
    assert n == 1
    refined = refine_outlines(image, blob)
    _, n = ndimage.label(refined, structure=np.ones((3, 3)))
    assert n == 2


def test_particles_split_from_a_merged_monolayer_are_kept() -> None:
    """A dense monolayer that the network merged into one blob comes apart into a large group of
    touching particles and single particles beside it. The singles are far below a fifth of
    the group, but they are the size of the micrograph's typical particle, so they stay."""
    shape = (160, 220)
    group = [_disc(shape, (40 + 12 * r, 30 + 12 * c), 7) for r in range(2) for c in range(5)]
    beside = [_disc(shape, (40 + 12 * r, 30 + 12 * 4 + 18), 7) for r in range(2)]
    singles = [_disc(shape, (125, 20 + 25 * k), 7) for k in range(8)]
    image = _image(group + beside + singles)
    blob = ndimage.binary_dilation(np.any(group + beside, axis=0), iterations=3)
    found = blob | ndimage.binary_dilation(np.any(singles, axis=0))
    assert ndimage.label(blob, structure=np.ones((3, 3)))[1] == 1
    refined = refine_outlines(image, found)
    for disc in beside + singles:
        assert (refined & disc).sum() > 0.8 * disc.sum()
    assert (refined & np.any(group, axis=0)).sum() > 0.8 * np.any(group, axis=0).sum()


def test_particle_without_contrast_keeps_its_outline() -> None:
    """Where the mask covers nothing darker than its surroundings, it is left as it was."""
    image = _image([np.zeros((128, 128), bool)])
    mask = _disc((128, 128), (64, 64), 20)
    np.testing.assert_array_equal(refine_outlines(image, mask), mask)


def test_empty_mask_and_bad_level() -> None:
    image = np.ones((32, 32))
    empty = np.zeros((32, 32), bool)
    np.testing.assert_array_equal(refine_outlines(image, empty), empty)
    with pytest.raises(ValueError, match="level"):
        refine_outlines(image, empty, level=1.5)


def test_refinement_is_deterministic() -> None:
    truth = _disc((128, 128), (64, 64), 20)
    image = _image([truth])
    mask = _disc((128, 128), (60, 66), 25)
    np.testing.assert_array_equal(refine_outlines(image, mask), refine_outlines(image, mask))


def test_segmenter_edge_option() -> None:
    """``edge="network"`` keeps the thresholded map; the default refines; bad values fail."""
    truth = _disc((256, 256), (128, 128), 40)
    image = _image([truth]).astype(np.float32)
    network = Segmenter.load(edge="network")
    contrast = Segmenter.load()
    assert contrast.settings["edge"] == "contrast"
    assert contrast.settings["edge_level"] == 0.5
    assert network.settings["edge_level"] is None
    plain = network(image, pixel_size=0.1)
    np.testing.assert_array_equal(
        plain.mask > 0, (plain.probability > network.threshold) & (plain.mask > 0)
    )
    refined = contrast(image, pixel_size=0.1).mask > 0
    # The refined particle is the disc within a pixel of radius, whatever the network drew.
    assert abs(_radius(refined) - 40) < 1.5
    with pytest.raises(NanosegError, match="--edge"):
        Segmenter.load(edge="sharp")
    with pytest.raises(NanosegError, match="--edge-level"):
        Segmenter.load(edge_level=0)


def test_smoothing_box_by_box_equals_whole_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sparse particles are smoothed box by box, dense ones all at once: same outlines."""
    from nanoseg import refine

    shape = (160, 200)
    truths = [_disc(shape, c, r) for c, r in [((40, 50), 16), ((110, 140), 20), ((150, 20), 14)]]
    # A slope in the background and coarse noise: any difference in smoothing shows.
    image = _image(truths, seed=3) + np.linspace(0, 3, shape[1])
    image += ndimage.gaussian_filter(np.random.default_rng(4).normal(0, 2, shape), 1.5)
    mask = np.any([_disc(shape, c, r + 3) for c, r in [((40, 50), 16), ((110, 140), 20)]], axis=0)
    mask |= _disc(shape, (150, 20), 12)  # cut by the image's edge
    monkeypatch.setattr(refine, "BOX_SMOOTHING_LIMIT", 0.0)
    whole = refine_outlines(image, mask)
    monkeypatch.setattr(refine, "BOX_SMOOTHING_LIMIT", 1e9)
    boxes = refine_outlines(image, mask)
    np.testing.assert_array_equal(whole, boxes)
    assert not np.array_equal(whole, mask)  # the outlines did move


def test_fill_holes_matches_scipy() -> None:
    from nanoseg.refine import _fill_holes

    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.7):
        mask = ndimage.binary_opening(rng.random((60, 70)) < density)
        np.testing.assert_array_equal(_fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_threads_do_not_change_the_outlines() -> None:
    shape = (200, 240)
    centres = [((40, 50), 16), ((110, 140), 20), ((160, 60), 14), ((60, 190), 18)]
    image = _image([_disc(shape, c, r) for c, r in centres], seed=5)
    mask = np.any([_disc(shape, c, r + 3) for c, r in centres], axis=0)
    one = refine_outlines(image, mask, threads=1)
    np.testing.assert_array_equal(refine_outlines(image, mask, threads=2), one)
    assert not np.array_equal(one, mask)


def test_grow_matches_scipy_maximum_filter() -> None:
    from nanoseg.refine import _grow

    rng = np.random.default_rng(2)
    for _ in range(50):
        height, width = rng.integers(1, 40, size=2)
        reach = int(rng.integers(0, 15))
        mask = rng.random((height, width)) < 0.05
        expected = ndimage.maximum_filter(mask.view(np.uint8), size=2 * reach + 1)
        np.testing.assert_array_equal(_grow(mask, reach), expected.view(bool))


def test_stacked_windows_equal_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small particles are refined as stacks of windows: the same outlines as one by one,
    at the image's edges too, for dark and faint particles, touching and merged ones."""
    from nanoseg import refine

    rng = np.random.default_rng(7)
    shape = (400, 440)
    centres = [(tuple(rng.uniform(0, s) for s in shape), rng.uniform(6, 12)) for _ in range(70)]
    contrasts = rng.uniform(0.1, 1.5, len(centres))  # some too faint to refine
    image = 10.0 - sum(c * _disc(shape, p, r) for (p, r), c in zip(centres, contrasts, strict=True))
    image = ndimage.gaussian_filter(image, 1.5) + rng.normal(0, 0.15, shape)
    mask = np.any([_disc(shape, p, r + rng.uniform(-2, 3)) for p, r in centres], axis=0)
    stacked_jobs = []
    stack = refine._refine_stack

    def counted(jobs, *args, **kwargs):  # type: ignore[no-untyped-def]
        stacked_jobs.extend(jobs)
        return stack(jobs, *args, **kwargs)

    monkeypatch.setattr(refine, "_refine_stack", counted)
    stacked = refine_outlines(image, mask, min_area_px=10)
    assert len(stacked_jobs) > 40  # the stacks did most of the work
    monkeypatch.setattr(refine, "STACK_SIDES", ())
    np.testing.assert_array_equal(stacked, refine_outlines(image, mask, min_area_px=10))
    assert not np.array_equal(stacked, mask)
