"""The simulator: reproducible, resumable, labels aligned with the physics, clear errors.

Micrographs here are tiny (96 px, small CdSe or Au particles) so the whole file runs in seconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nanoseg.cli import app
from nanoseg.io import read_label_map, read_micrograph
from nanoseg.simulate import SimulationError, optics, simulate, validate
from nanoseg.simulate.scene import _transform_array, _transform_xy
from nanoseg.simulate.structures import MATERIALS, build_particle, footprint

SMALL = {
    "materials": ["cdse", "au"],
    "size": 96,
    "pixel_size": (0.04, 0.06),
    "particle_size": (1.5, 2.5),
    "variants": 2,
}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    optics.configure_abtem()
    return simulate(tmp_path_factory.mktemp("sim") / "ref", 4, seed=7, **SMALL)


def test_layout_and_metadata(reference: Path):
    images = sorted((reference / "images").glob("*.mrc"))
    labels = sorted((reference / "labels").glob("*.png"))
    assert (
        [p.stem for p in images] == [p.stem for p in labels] == [f"sim_{i:05d}" for i in range(4)]
    )
    with open(reference / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row, image, label in zip(rows, images, labels, strict=True):
        mic = read_micrograph(image)
        assert mic.dtype == "uint16" and mic.shape == (96, 96)
        assert mic.pixel_size == pytest.approx(float(row["pixel_size_nm"]), rel=1e-5)
        assert 0.04 <= mic.pixel_size <= 0.06
        mask = read_label_map(label, shape=mic.shape)
        assert mask.mean() == pytest.approx(float(row["particle_fraction"]))
        particles = json.loads(row["particles"])
        assert len(particles) == int(row["n_particles"]) >= 1
        assert sum(p["visible_px"] for p in particles) >= mask.sum()  # touching outlines may merge
        for key in (
            "voltage_kv",
            "cs_mm",
            "defocus_nm",
            "focal_spread_nm",
            "dose_e_per_a2",
            "carbon_thickness_nm",
            "camera_gain",
            "scene",
            "seed",
        ):
            assert row[key] != ""
    # The two micrographs of a scene share particles but not lens or dose.
    # Scene numbers count the scenes (2 micrographs each here): data sets split by them.
    assert [int(r["scene"]) for r in rows] == [i // 2 for i in range(len(rows))]
    assert rows[0]["particles"] == rows[1]["particles"]
    assert rows[0]["dose_e_per_a2"] != rows[1]["dose_e_per_a2"]


def test_same_seed_same_bytes_other_seed_other_bytes(reference: Path, tmp_path: Path):
    again = simulate(tmp_path / "again", 4, seed=7, **SMALL)
    assert _files(again) == _files(reference)
    other = simulate(tmp_path / "other", 2, seed=8, **SMALL)
    assert (other / "images/sim_00000.mrc").read_bytes() != (
        reference / "images/sim_00000.mrc"
    ).read_bytes()


def test_film_roughness_changes_only_the_carbon(reference: Path, tmp_path: Path):
    rough = simulate(tmp_path / "rough", 4, seed=7, film_roughness=True, **SMALL)
    for i in range(4):
        stem = f"sim_{i:05d}"
        plain = json.loads((reference / "metadata" / f"{stem}.json").read_text())
        meta = json.loads((rough / "metadata" / f"{stem}.json").read_text())
        assert plain["carbon_roughness_nm"] == 0.0
        assert 0.1 <= meta["carbon_roughness_nm"] <= min(2.5, meta["carbon_thickness_nm"] / 3)
        assert 0.3 <= meta["carbon_roughness_length_nm"] <= 2.0
        # Same particles, optics and labels: the roughness has a random stream of its own.
        for key in ("particles", "defocus_nm", "dose_e_per_a2", "carbon_thickness_nm"):
            assert meta[key] == plain[key]
        assert (rough / "labels" / f"{stem}.png").read_bytes() == (
            reference / "labels" / f"{stem}.png"
        ).read_bytes()
        assert not np.array_equal(
            read_micrograph(rough / "images" / f"{stem}.mrc").data,
            read_micrograph(reference / "images" / f"{stem}.mrc").data,
        )


def test_interrupted_run_continues_to_the_same_result(reference: Path, tmp_path: Path):
    out = tmp_path / "resumed"
    simulate(out, 4, seed=7, **SMALL)
    # What a kill leaves: the last micrograph's image written, its label and JSON not yet,
    # and a temporary file from the interrupted write.
    (out / "metadata/sim_00003.json").unlink()
    (out / "labels/sim_00003.png").unlink()
    (out / "labels/.sim_00003.png.abc.tmp.png").write_bytes(b"half")
    kept = (out / "images/sim_00000.mrc").stat().st_mtime_ns
    simulate(out, 4, seed=7, **SMALL)
    (out / "labels/.sim_00003.png.abc.tmp.png").unlink()
    assert _files(out) == _files(reference)
    assert (out / "images/sim_00000.mrc").stat().st_mtime_ns == kept  # complete ones untouched


def test_two_workers_give_the_same_bytes(reference: Path, tmp_path: Path):
    out = simulate(tmp_path / "parallel", 4, seed=7, workers=2, **SMALL)
    assert _files(out) == _files(reference)


def test_exit_wave_sits_on_the_atoms():
    """Box pixel c is centred at c * sampling: the particle's phase centroid must be there."""
    optics.configure_abtem()
    particle = build_particle(MATERIALS["au"], "cuboctahedron", 1.7, np.random.default_rng(1))
    sampling, box = 0.25, 128
    positions = particle.atoms.positions.copy()
    positions[:, 0] += 3.3  # off-centre, differently in x and y, so a transposed wave is caught
    positions[:, 1] -= 5.1
    positions[:, :2] += (box - 1) / 2 * sampling
    wave = optics.particle_exit_wave(positions, particle.atoms.numbers, box, sampling, 300e3)
    assert wave.shape == (box, box)
    assert abs(wave[0, 0] - 1) < 0.05  # vacuum
    phase = np.abs(np.angle(wave))
    rows, cols = np.indices(wave.shape)
    centroid_x = (phase * cols).sum() / phase.sum() * sampling
    centroid_y = (phase * rows).sum() / phase.sum() * sampling
    expected = positions[:, :2].mean(axis=0)
    assert centroid_x == pytest.approx(expected[0], abs=0.15 * sampling + 0.1)
    assert centroid_y == pytest.approx(expected[1], abs=0.15 * sampling + 0.1)


@pytest.mark.parametrize("transform", range(8))
def test_mirrored_copies_keep_wave_and_label_together(transform: int):
    box = 21
    xy = np.array([[3.0, -2.0], [-4.0, 1.0], [5.0, 6.0]])  # pixels, relative to the box centre
    wave = np.zeros((box, box))
    for x, y in xy:
        wave[int(y + (box - 1) / 2), int(x + (box - 1) / 2)] = 1
    moved = _transform_array(wave, transform)
    expected = np.zeros((box, box))
    for x, y in _transform_xy(xy, transform):
        expected[int(y + (box - 1) / 2), int(x + (box - 1) / 2)] = 1
    np.testing.assert_array_equal(moved, expected)


def test_footprint_rule():
    """A pixel is particle when its centre is within the atomic radius of a projected atom."""
    xy = np.array([[10.0, 5.0], [13.0, 5.0], [4.2, 9.7]])
    mask = footprint(xy, 1.44, (12, 20), 1.0, (0.0, 0.0))
    rows, cols = np.indices((12, 20))
    centres = np.stack([cols + 0.5, rows + 0.5], axis=-1)
    distance = np.min(np.linalg.norm(centres[:, :, None, :] - xy[None, None], axis=-1), axis=-1)
    np.testing.assert_array_equal(mask, distance <= 1.44)
    assert mask[4, 9] and mask[5, 10] and not mask[4, 8]  # centre (8.5, 4.5) is 1.58 A away
    # The same atoms seen by a detector whose corner is shifted by one pixel move by one pixel.
    shifted = footprint(xy, 1.44, (12, 20), 1.0, (-1.0, 0.0))
    np.testing.assert_array_equal(shifted[:, 1:], mask[:, :-1])


def test_carbon_screen_has_the_atomistic_spectrum():
    optics.configure_abtem()
    k_axis, psd = optics.carbon_psd()
    sampling, thickness, energy = 0.2, 40.0, 300e3
    rng = np.random.default_rng(0)
    phases = [optics.carbon_screen((256, 256), sampling, thickness, energy, rng) for _ in range(8)]
    power = np.mean([np.abs(np.fft.fft2(p)) ** 2 for p in phases], axis=0) * sampling**2 / 256**2
    k = np.sqrt(optics._frequencies((256, 256), sampling))
    band = (k > 0.3) & (k < 1.2)
    target = np.interp(k[band], k_axis, psd) * thickness * optics.sigma(energy) ** 2
    assert power[band].mean() / target.mean() == pytest.approx(1.0, rel=0.05)


def test_roughness_screen_has_the_requested_thickness_and_correlation():
    sampling, rms, length, energy = 0.5, 8.0, 10.0, 300e3
    phase = optics.roughness_screen(
        (512, 512), sampling, rms, length, energy, np.random.default_rng(1)
    )
    thickness = phase / (optics.sigma(energy) * optics.CARBON_INNER_POTENTIAL)
    assert thickness.std() == pytest.approx(rms, rel=1e-3)
    # Gaussian correlation: exp(-1) of the variance at a lag of `length`.
    lag = round(length / sampling)
    correlation = np.mean(thickness * np.roll(thickness, lag, axis=1)) / thickness.var()
    assert correlation == pytest.approx(np.exp(-1), abs=0.05)
    # Its own stream: the same generator state gives the same film.
    again = optics.roughness_screen(
        (512, 512), sampling, rms, length, energy, np.random.default_rng(1)
    )
    np.testing.assert_array_equal(phase, again)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--materials", "au,unobtainium"], "unknown material 'unobtainium'"),
        (["--size", "10"], "--size must be between 64 and 8192 px, not 10"),
        (["--pixel-size", "0.5", "--particle-size", "1.5:3"], "too coarse for 1.5 nm particles"),
        (["--pixel-size", "0.05:0.02"], "minimum above its maximum"),
        (["--n", "0"], "--n must be at least 1"),
        (["--size", "64", "--pixel-size", "0.02", "--particle-size", "2"], "do not fit"),
    ],
)
def test_bad_requests_fail_before_any_work(tmp_path: Path, args: list[str], message: str):
    out = tmp_path / "never"
    result = CliRunner().invoke(app, ["simulate", str(out), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_unwritable_output_folder(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["simulate", str(blocker / "out"), "--n", "1"])
    assert result.exit_code == 2
    assert "cannot write to the output folder" in result.stderr


def test_validate_returns_settings():
    settings = validate(10, ["AU", " pd"], 512, (0.02, 0.05), (1.5, 10), 4, 2)
    assert settings.materials == ("au", "pd")
    with pytest.raises(SimulationError):
        validate(10, [], 512, (0.02, 0.05), (1.5, 10), 4, 2)


def test_dense_monolayer_at_survey_magnification():
    """Coarse pixels: a monolayer of many particles, darker than the film where labelled."""
    from nanoseg.simulate.scene import SceneSettings, plan_scene, render_scene

    optics.configure_abtem()
    settings = SceneSettings(("au",), 128, (0.5, 0.5), (4.0, 5.0), variants=1)
    scene = next(
        s for s in (plan_scene(settings, k, 0) for k in range(20)) if len(s.placements) > 60
    )
    image, label, meta = render_scene(scene)[0]
    assert meta["n_particles"] == len(scene.placements) > 60
    assert label.mean() > 0.15
    assert all(row["visible_px"] > 0 for row in meta["particles"])
    # Mass-thickness contrast: the typical labelled pixel is darker than most of the film.
    film = image[~label].astype(float)
    assert np.median(image[label]) < np.median(film) - 1.0 * film.std()
    assert optics.particle_sampling(scene.pixel_size * 10) == 0.14
