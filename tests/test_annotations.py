"""Scale bars and text burned into exported micrographs are found, filled and left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from typer.testing import CliRunner

from nanoseg.annotations import fill_annotations, find_annotations, remove_annotations
from nanoseg.cli import app
from nanoseg.io import read_micrograph
from nanoseg.io.read import coloured_pixels
from nanoseg.segment import Segmenter, SegmentResult

SHAPE = (240, 320)
#: Where the export's scale bar and its label are drawn: bottom left, as DM and Velox do.
BAR = (slice(222, 231), slice(16, 136))
#: Centres (row, column) of the dark particles `_export` draws.
PARTICLES = [(50, 60), (60, 160), (120, 250), (110, 90), (170, 200)]


def _export(seed: int = 0, text: bool = True, bar_value: int = 0, more: tuple = ()) -> np.ndarray:
    """An 8-bit export: dark particles (~30 px) on noisy carbon, a scale bar and its label."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(SHAPE)
    image = 150 + ndimage.gaussian_filter(rng.normal(0, 25, SHAPE), 1.0)
    for r, c in [*PARTICLES, *more]:
        distance = np.hypot(rows - r, cols - c)
        image -= 70 / (1 + np.exp((distance - 15) / 1.5))  # blurred edge, as real ones
    image = np.clip(np.round(image), 1, 254).astype(np.uint8)
    image[BAR] = bar_value
    if text:
        picture = Image.fromarray(image)
        font = ImageFont.load_default(size=40)
        ImageDraw.Draw(picture).text((20, 168), "50 nm", fill=bar_value, font=font)
        image = np.asarray(picture).copy()
    return image


def _particle_at(result: SegmentResult, centre: tuple[int, int]) -> pd.Series:
    """The row of `result`'s table for the one particle whose centroid is within 3 px of
    `centre` (row, column)."""
    table = result.particles
    near = np.hypot(table["centroid_y_px"] - centre[0], table["centroid_x_px"] - centre[1]) < 3
    assert near.sum() == 1, f"no single particle found at {centre}"
    return table[near].iloc[0]


def _drawn_particles(result: SegmentResult, centres: list[tuple[int, int]]) -> pd.DataFrame:
    """The rows of `result`'s table for the particles drawn at `centres`, one each.

    Only the drawn particles are checked: in this cartoon's filtered white noise (unlike real
    carbon) next to a filled label, the bundled model may also mark a speck or two
    (BENCHMARKS.md, "Specks in white noise").
    """
    return pd.DataFrame([_particle_at(result, centre) for centre in centres])


def test_scale_bar_and_label_are_found_and_nothing_else() -> None:
    image = _export()
    found = find_annotations(image)
    drawn = _export(text=True) != _export(text=False)  # the label's pixels
    drawn[BAR] = True
    assert found[BAR].all()
    # Nearly all of the label (some anti-aliased specks are too thin to be told from noise).
    assert found[drawn].mean() > 0.9
    # Nothing above the label: the particles and the carbon are left alone.
    assert not found[:170].any()


def test_white_annotations_are_found_too() -> None:
    assert find_annotations(_export(bar_value=255))[BAR].all()


def test_particles_clipped_to_black_are_not_annotations() -> None:
    """A contrast stretch that clips a particle's core: flat and black, but its edge is
    blurred (still dark just outside), so it is a particle, even at the border."""
    rng = np.random.default_rng(1)
    rows, cols = np.indices(SHAPE)
    image = 150 + rng.normal(0, 15, SHAPE)
    for r, c in [(220, 40), (120, 160)]:
        image -= 260 / (1 + np.exp((np.hypot(rows - r, cols - c) - 14) / 3))
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    assert (image == 0).sum() > 500
    assert not find_annotations(image).any()


def test_opaque_particle_in_the_field_is_not_an_annotation() -> None:
    """A black disc with a sharp edge looks drawn, but not in the middle of the field."""
    image = _export(text=False)
    image[BAR] = 150
    rows, cols = np.indices(SHAPE)
    image[np.hypot(rows - 120, cols - 160) < 12] = 0
    assert not find_annotations(image).any()


def test_low_dose_counts_and_hot_pixels_are_not_annotations() -> None:
    rng = np.random.default_rng(2)
    counts = rng.poisson(2.0, SHAPE).astype(np.uint16)  # about 14 % zeros, in specks
    counts[SHAPE[0] - 30 :, :60] = rng.poisson(0.3, (30, 60))  # a dark corner: mostly zeros
    counts[5, 5] = 60000  # a hot pixel
    assert not find_annotations(counts).any()
    raw = rng.normal(500, 20, SHAPE).astype(np.float32)
    raw[100, 100] = 20000
    assert not find_annotations(raw).any()
    assert not find_annotations(np.full(SHAPE, 7.0)).any()


def test_fill_uses_the_grey_around_and_leaves_clean_images_alone() -> None:
    image = _export(text=False)
    found = find_annotations(image)
    filled = fill_annotations(image, found)
    assert filled.dtype == np.float32
    around = ndimage.binary_dilation(found, iterations=4) & ~found
    assert np.unique(filled[found]).size == 1
    assert filled[found][0] == pytest.approx(np.median(image[around]))
    assert np.array_equal(filled[~found], image[~found])
    clean = image.copy()
    clean[BAR] = 150
    data, where = remove_annotations(clean)
    assert where is None and np.array_equal(data, clean)


def test_segmenter_reports_no_particle_on_the_annotation() -> None:
    image = _export()
    segmenter = Segmenter.load()
    result = segmenter(image, pixel_size=0.3)
    found = find_annotations(image)
    assert result.annotation_px == int(found.sum())
    assert not (result.mask & found).any()
    assert np.array_equal(result.image, image.astype(np.float32))  # overlays show the label
    # The five particles, all found (none is next to the label).
    assert not _drawn_particles(result, PARTICLES)["touches_border"].any()
    kept = Segmenter.load(mask_annotations=False)(image, pixel_size=0.3)
    assert kept.annotation_px == 0
    # Segmented as they are, the black bar and digits are taken for particles.
    assert kept.mask[BAR].mean() > 0.5


def test_particle_next_to_a_label_is_marked_as_cut() -> None:
    image = _export(more=[(222, 150)])  # a sixth particle, partly under the scale bar's end
    result = Segmenter.load()(image, pixel_size=0.3)
    assert not _drawn_particles(result, PARTICLES)["touches_border"].any()
    # The sixth: cut by the label, so measured as one cut by the image border.
    table = result.particles
    beside = table[((table["centroid_x_px"] - 150).abs() < 8) & (table["centroid_y_px"] > 195)]
    assert len(beside) == 1 and beside["touches_border"].iloc[0]


def test_cli_flag_and_summary_column(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(_export()).save(source / "export.png")
    runner = CliRunner()
    for flag, out in (("--mask-annotations", "masked"), ("--keep-annotations", "kept")):
        result = runner.invoke(
            app, ["segment", str(source), "--out", str(tmp_path / out), "--pixel-size", "0.3", flag]
        )
        assert result.exit_code == 0, result.output
    masked = pd.read_csv(tmp_path / "masked" / "summary.csv")
    kept = pd.read_csv(tmp_path / "kept" / "summary.csv")
    assert masked["annotation_px"].iloc[0] > 1000
    assert kept["annotation_px"].iloc[0] == 0
    # Kept, the black bar is taken for a particle; left out, it is not.
    assert (np.asarray(Image.open(tmp_path / "kept" / "export_mask.png"))[BAR] > 0).mean() > 0.5
    assert not np.asarray(Image.open(tmp_path / "masked" / "export_mask.png"))[BAR].any()
    log = (tmp_path / "masked" / "log" / "segment.log").read_text()
    assert "burned-in scale bar or text left out" in log


def _grey_export() -> np.ndarray:
    """`_export` without its black scale bar and label."""
    image = _export(text=False)
    image[BAR] = 150
    return image


def test_colour_drawn_on_a_grey_micrograph_is_an_annotation(tmp_path: Path) -> None:
    """A colour export: a red arrow in the middle of the field, a yellow label in a corner."""
    grey = _grey_export()
    picture = Image.fromarray(grey).convert("RGB")
    draw = ImageDraw.Draw(picture)
    draw.line([(120, 150), (150, 125)], fill=(255, 0, 0), width=4)  # an arrow, mid-field
    draw.text((200, 200), "Au", fill=(255, 220, 0), font=ImageFont.load_default(size=30))
    picture.save(tmp_path / "colour.png")
    mic = read_micrograph(tmp_path / "colour.png")
    drawn = np.asarray(picture).std(axis=-1) > 10
    assert mic.coloured is not None
    assert mic.coloured[drawn].mean() > 0.9 and not mic.coloured[~drawn].any()
    found = find_annotations(mic.data, mic.coloured)
    assert found[drawn].all()
    result = Segmenter.load()(mic, pixel_size=0.3)
    assert result.annotation_px == int(found.sum())
    assert not (result.mask & found).any()
    _drawn_particles(result, PARTICLES)


def test_grey_and_false_colour_files_have_no_coloured_pixels(tmp_path: Path) -> None:
    grey = _grey_export()
    Image.fromarray(grey).convert("RGB").save(tmp_path / "grey.png")
    assert read_micrograph(tmp_path / "grey.png").coloured is None
    # A false-colour rendering (a "fire"-like map): colour everywhere, not annotations.
    fire = np.stack([grey, np.clip(2 * grey.astype(int) - 255, 0, 255), grey // 4], axis=-1)
    Image.fromarray(fire.astype(np.uint8)).save(tmp_path / "fire.png")
    assert read_micrograph(tmp_path / "fire.png").coloured is None
    assert coloured_pixels(fire.astype(np.uint8)) is None
