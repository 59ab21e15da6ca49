"""The U-Net, its Keras 2 weight import (checked against a Keras 3 reference), and model files."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, median_filter

import nanoseg.model as model_module
from nanoseg.errors import CorruptFileError, InvalidDataError, NanosegError
from nanoseg.model import (
    UNet,
    UNetConfig,
    count_parameters,
    import_keras,
    load_keras_weights,
    load_model,
    paper_unet,
    save_model,
)

sys.path.insert(0, str(Path(__file__).parent))
import keras_reference as ref

PAPER_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/reference/pynanofind-weights"
PAPER_FILES = (
    "unet32_AuCdSeDots_09_final.h5",
    "unet481632_AuDots_07b_final.h5",
    "unet481632_CdSeDots_08b_final.h5",
)
TOLERANCE = 1e-4

# Keras 3.x on numpy 2 warns about its own np.array(torch tensor) calls.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _micrograph(size: int, seed: int = 0) -> np.ndarray:
    """A synthetic HRTEM-like tile (size, size) float32: carbon noise, latticed discs, the
    paper's preprocessing (3x3 median, divided by the maximum)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    image = 0.6 + 0.4 * gaussian_filter(rng.normal(size=(size, size)), 2)
    for _ in range(4):
        cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
        radius = rng.uniform(0.06 * size, 0.15 * size)
        theta, period = rng.uniform(0, np.pi), rng.uniform(6, 12)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        lattice = 0.25 * np.cos(2 * np.pi * u / period) * np.cos(2 * np.pi * v / period)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        image = np.where(disc, image - 0.15 + lattice, image)
    image = median_filter(image + rng.normal(0, 0.03, (size, size)), 3)
    return (image / image.max()).astype(np.float32)


def _write_random_keras_file(
    path: Path, widths: tuple[int, ...] = (4, 8, 16, 32), seed: int = 0
) -> Path:
    """A Keras 2 weights file with random weights whose BatchNorm statistics fit the data.

    Plain random moving statistics make the random network either flat or explosive (logits
    in the hundreds, where float32 rounding alone reaches 1e-4 in the probabilities). So the
    moving mean and variance are measured on random input (one pass in training mode) and then
    perturbed: activations stay O(1) and the particle map varies over the image.
    """
    names = [name for name, _ in ref.paper_keras_layers(widths)]
    weights = ref.random_paper_weights(widths, seed=seed)
    ref.write_keras2_h5(path, weights, names)
    net = UNet(UNetConfig(widths=widths, dropout=0.0, bn_momentum=1.0))
    mapping = load_keras_weights(net, path)["layers"]
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        net.train()(torch.from_numpy(rng.random((4, 1, 64, 64), dtype=np.float32)))
    modules = dict(net.named_modules())
    for keras_name, module_name in mapping.items():
        if keras_name.startswith("batch_normalization"):
            norm = modules[module_name]
            std = norm.running_var.sqrt().numpy()
            mean = norm.running_mean.numpy() + rng.normal(0, 0.1, std.shape) * std
            var = norm.running_var.numpy() * rng.uniform(0.7, 1.4, std.shape)
            weights[keras_name] = [
                *weights[keras_name][:2],  # gamma, beta
                ("moving_mean", mean.astype(np.float32)),
                ("moving_variance", var.astype(np.float32)),
            ]
    return ref.write_keras2_h5(path, weights, names)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_random_keras_file(tmp_path_factory.mktemp("keras") / "random.h5")


def _need_keras() -> None:
    """Skip without Keras 3; it must run on the torch backend (chosen before the import)."""
    os.environ["KERAS_BACKEND"] = "torch"
    pytest.importorskip("keras")


def _one_line_naming(err: pytest.ExceptionInfo[NanosegError], path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# ------------------------------------------------------------------------------ network


def test_paper_network_has_65002_parameters() -> None:
    assert count_parameters(paper_unet()) == 65_002
    assert count_parameters(UNet(UNetConfig(pool_before_relu=False))) == 65_002


def test_forward_returns_logits_and_probabilities() -> None:
    torch.manual_seed(0)
    net = paper_unet().eval()
    x = torch.rand(2, 1, 64, 48)
    logits = net(x)
    assert logits.shape == (2, 2, 64, 48) and logits.dtype == torch.float32
    probs = torch.softmax(logits, dim=1)
    assert torch.allclose(probs.sum(dim=1), torch.ones(2, 64, 48), atol=1e-6)
    particle = net.predict_proba(x)
    assert particle.shape == (2, 64, 48)
    assert torch.allclose(particle, probs[:, 1])
    as_numpy = net.predict_proba(x.numpy())
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 1, 40, 64))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("widths", [(4,), (4, 4), (4, 4, 4), (4, 8, 16, 32)])
def test_tile_margin_is_exact_and_tight(widths: tuple[int, ...]) -> None:
    """Outputs `tile_margin` px or more inside a grid-aligned crop equal the whole image's;
    one pixel nearer the crop's edge, some differ (the zero padding reaches them)."""
    torch.manual_seed(0)
    config = UNetConfig(widths=widths, dropout=0.0)
    net = UNet(config).double().eval()
    margin, period = config.tile_margin, 2**config.depth
    assert margin <= config.receptive_radius
    offset = -(-margin // period) * period + period  # on the grid, more than a margin in
    side = -(-2 * margin // period) * period + 2 * period  # on the grid too
    x = torch.rand(1, 1, side + 2 * offset, side + 2 * offset, dtype=torch.float64)
    with torch.no_grad():
        whole = net(x)[0, 1, offset : offset + side, offset : offset + side]
        crop = net(x[..., offset : offset + side, offset : offset + side])[0, 1]
    diff = (crop - whole).abs()
    inner = (slice(margin, side - margin),) * 2
    assert diff[inner].max() < 1e-9
    assert diff[margin - 1].max() > 1e-6 and diff[:, side - margin].max() > 1e-6


def test_predict_proba_restores_training_mode() -> None:
    net = paper_unet().train()
    net.predict_proba(torch.rand(1, 1, 32, 32))
    assert net.training


@pytest.mark.parametrize("norm", ["batch", "instance", "group"])
def test_config_roundtrip_and_norm_variants(norm: str) -> None:
    config = UNetConfig(widths=(2, 4, 8), norm=norm, pool_before_relu=False, dropout=0.1)
    data = json.loads(json.dumps(config.to_dict()))
    assert UNetConfig.from_dict(data) == config
    net = UNet(config).eval()
    assert net(torch.rand(1, 1, 16, 16)).shape == (1, 2, 16, 16)


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown architecture keys"):
        UNetConfig.from_dict({"widths": [4, 8], "activation": "gelu"})
    with pytest.raises(ValueError, match="unknown network"):
        UNetConfig.from_dict({"name": "resnet"})
    for bad in ({"widths": []}, {"widths": [4, "8"]}, {"norm": "layer"}, {"n_classes": 1}):
        with pytest.raises(ValueError):
            UNetConfig.from_dict(bad)


def test_activation_layers_can_be_hooked() -> None:
    net = paper_unet()
    names = dict(net.named_modules())
    layers = net.activation_layers()
    assert all(name in names for name in layers)
    assert {"encoder.0.conv", "decoder.0.concat", "final"} <= set(layers)
    assert net.EARLY_CONV == "encoder.0.conv" and net.FIRST_CONCAT == "decoder.0.concat"
    keras = net.keras_layer_names()
    assert all(module in names for module in keras.values())
    assert keras["conv2d_1"] == "encoder.0.conv" and keras["conv2d_14"] == "decoder.3.conv2"
    assert keras["concatenate_1"] == "decoder.0.concat"
    out = net.activations(torch.rand(1, 1, 64, 64), [net.EARLY_CONV, "concatenate_1", "final"])
    assert out["encoder.0.conv"].shape == (1, 4, 64, 64)
    assert out["concatenate_1"].shape == (1, 64, 8, 8)  # [skip 32, upsampled 32] at 1/8
    assert out["final"].shape == (1, 2, 64, 64)
    assert not any(module._forward_hooks for module in net.modules())
    with pytest.raises(KeyError):
        net.activations(torch.rand(1, 1, 16, 16), ["nope"])


# ------------------------------------------------------------------------ Keras import


def test_import_reads_keras2_layout(keras_file: Path) -> None:
    net, info = import_keras(keras_file)
    assert not net.training
    assert net.config == UNetConfig()
    assert info["keras_version"] == "2.2.2" and len(info["sha256"]) == 64
    assert info["layers"]["conv2d_7"] == "decoder.0.conv1"
    with h5py.File(keras_file, "r") as handle:
        kernel = handle["conv2d_7/conv2d_7/kernel:0"][()]
        variance = handle["batch_normalization_9/batch_normalization_9/moving_variance:0"][()]
    assert np.array_equal(
        net.decoder[0].conv1.weight.detach().numpy(), kernel.transpose(3, 2, 0, 1)
    )
    assert np.array_equal(net.decoder[1].norm1.running_var.numpy(), variance)


def test_import_infers_widths(tmp_path: Path) -> None:
    path = _write_random_keras_file(tmp_path / "small.h5", widths=(2, 4, 8))
    net, info = import_keras(path)
    assert net.config.widths == (2, 4, 8) and info["config"]["widths"] == [2, 4, 8]


@pytest.mark.parametrize("widths", [(4, 8, 16, 32), (2, 4, 8)])
def test_import_matches_keras3_reference(tmp_path: Path, widths: tuple[int, ...]) -> None:
    _need_keras()
    path = _write_random_keras_file(tmp_path / "random.h5", widths=widths)
    images = np.random.default_rng(1).random((2, 64, 64), dtype=np.float32)
    expected = ref.keras_predict(path, images)
    net, _ = import_keras(path)
    got = net.predict_proba(images[:, None])
    assert expected.std() > 0.05  # the random network's output is not flat: a real check
    assert np.abs(got - expected).max() < TOLERANCE


def test_reference_comparison_would_catch_a_wrong_port(
    keras_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need_keras()
    images = np.random.default_rng(2).random((1, 64, 64), dtype=np.float32)
    expected = ref.keras_predict(keras_file, images)
    textbook = UNet(UNetConfig(pool_before_relu=False))
    load_keras_weights(textbook, keras_file)
    assert np.abs(textbook.predict_proba(images[:, None]) - expected).max() > 1e-2
    monkeypatch.setattr(
        model_module.unet.Concat, "forward", lambda self, s, u: torch.cat([u, s], 1)
    )
    swapped, _ = import_keras(keras_file)
    assert np.abs(swapped.predict_proba(images[:, None]) - expected).max() > 1e-2


@pytest.mark.skipif(not PAPER_WEIGHTS.is_dir(), reason="the paper's weight files are not here")
@pytest.mark.parametrize("name", PAPER_FILES)
def test_paper_files_match_keras3_reference(name: str) -> None:
    _need_keras()
    path = PAPER_WEIGHTS / name
    image = _micrograph(512)[None]
    net, info = import_keras(path)
    assert info["config"]["widths"] == [4, 8, 16, 32] and count_parameters(net) == 65_002
    got = net.predict_proba(image[:, None])
    expected = ref.keras_predict(path, image)
    assert 0.02 < (got > 0.5).mean() < 0.98  # the tile gives a map, not a constant
    assert np.abs(got - expected).max() < TOLERANCE


def _edit_keras_file(src: Path, dst: Path, edit: str) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as handle:
        if edit == "drop_layer":
            del handle["conv2d_9"], handle["batch_normalization_9"]
        elif edit == "drop_last":
            del handle["conv2d_14"], handle["batch_normalization_14"]
        elif edit == "drop_final":
            del handle["final_layer"]
        elif edit == "drop_bn":
            del handle["batch_normalization_3"]
        elif edit == "wrong_shape":
            del handle["conv2d_7/conv2d_7/kernel:0"]
            handle["conv2d_7"].create_dataset("conv2d_7/kernel:0", data=np.zeros((3, 3, 60, 32)))
        elif edit == "no_weights":
            for name in list(handle):
                del handle[name]
    return dst


@pytest.mark.parametrize(
    ("edit", "error", "phrase"),
    [
        ("drop_layer", InvalidDataError, "missing layers: conv2d_9"),
        ("drop_last", InvalidDataError, "layers are missing"),
        ("drop_final", InvalidDataError, "missing layer final_layer"),
        ("drop_bn", InvalidDataError, "missing: batch_normalization_3"),
        ("wrong_shape", InvalidDataError, "conv2d_7: kernel has shape (3, 3, 60, 32)"),
        ("no_weights", InvalidDataError, "no layer weights"),
    ],
)
def test_import_refuses_damaged_keras_files(
    keras_file: Path, tmp_path: Path, edit: str, error: type[NanosegError], phrase: str
) -> None:
    path = _edit_keras_file(keras_file, tmp_path / f"{edit}.h5", edit)
    with pytest.raises(error) as err:
        import_keras(path)
    assert phrase in _one_line_naming(err, path)


def test_import_refuses_non_hdf5_truncated_and_missing_files(
    keras_file: Path, tmp_path: Path
) -> None:
    text = tmp_path / "weights.h5"
    text.write_text("not HDF5 at all")
    with pytest.raises(CorruptFileError) as err:
        import_keras(text)
    assert "not an HDF5 file" in _one_line_naming(err, text)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(keras_file.read_bytes()[:20_000])
    with pytest.raises(CorruptFileError) as err:
        import_keras(truncated)
    _one_line_naming(err, truncated)
    missing = tmp_path / "missing.h5"
    with pytest.raises(CorruptFileError) as err:
        import_keras(missing)
    _one_line_naming(err, missing)


def test_load_keras_weights_refuses_another_architecture(keras_file: Path) -> None:
    with pytest.raises(InvalidDataError) as err:
        load_keras_weights(UNet(UNetConfig(widths=(4, 8, 16, 64))), keras_file)
    assert "conv2d_4: kernel has shape" in _one_line_naming(err, keras_file)


# --------------------------------------------------------------------------- model files


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, UNet]:
    torch.manual_seed(1)
    net = paper_unet()
    net.train()
    net(torch.rand(2, 1, 32, 32))  # move the running statistics away from their defaults
    net.eval()
    card = {
        "pixel_size_nm": 0.025,
        "normalisation": {"median_filter": 3, "divide_by": "maximum"},
        "threshold": np.float32(0.5),
        "training_data_sha256": "ab" * 32,
        "metrics": {"dice": 0.81, "loss": float("nan")},
    }
    return save_model(tmp_path / "MODEL", net, card), net


def test_save_load_roundtrip(saved: tuple[Path, UNet]) -> None:
    folder, net = saved
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    x = torch.rand(1, 1, 64, 64)
    for path in (folder, folder / "model.safetensors", folder / "model.json"):
        loaded, card = load_model(path)
        assert not loaded.training and loaded.config == net.config
        assert torch.equal(loaded(x), net(x))
    assert card["format_version"] == 1 and card["nanoseg_version"]
    assert card["architecture"] == net.config.to_dict()
    assert card["pixel_size_nm"] == 0.025 and card["threshold"] == 0.5
    assert card["metrics"] == {"dice": 0.81, "loss": None}
    assert card["normalisation"]["median_filter"] == 3


def test_save_refuses_unstorable_card_before_writing(saved: tuple[Path, UNet]) -> None:
    folder, _ = saved
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        save_model(folder, UNet(UNetConfig(widths=(2, 4))), {"bad": object()})
    assert (folder / "model.safetensors").read_bytes() == before
    load_model(folder)


def test_load_refuses_missing_files(saved: tuple[Path, UNet], tmp_path: Path) -> None:
    folder, _ = saved
    with pytest.raises(CorruptFileError) as err:
        load_model(tmp_path / "nowhere")
    _one_line_naming(err, tmp_path / "nowhere")
    (folder / "model.json").unlink()
    with pytest.raises(CorruptFileError) as err:
        load_model(folder)
    assert "model file missing" in _one_line_naming(err, folder / "model.json")


def test_load_refuses_corrupted_safetensors(saved: tuple[Path, UNet]) -> None:
    folder, _ = saved
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as err:
        load_model(folder)
    assert "not a readable safetensors file" in _one_line_naming(err, weights)
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF  # tensor data: the header still parses
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CorruptFileError) as err:
        load_model(folder)
    assert "SHA-256 mismatch" in _one_line_naming(err, weights)


def test_load_refuses_weights_of_another_architecture(
    saved: tuple[Path, UNet], tmp_path: Path
) -> None:
    folder, _ = saved
    other = save_model(tmp_path / "OTHER", UNet(UNetConfig(widths=(4, 8, 16, 64))), {})
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(InvalidDataError) as err:
        load_model(folder)
    message = _one_line_naming(err, folder / "model.safetensors")
    assert "another architecture" in message and "expected [32, 16, 3, 3]" in message


@pytest.mark.parametrize(
    ("change", "error", "phrase"),
    [
        ({"format_version": 99}, InvalidDataError, "unknown model card format_version 99"),
        ({"format_version": "1"}, InvalidDataError, "unknown model card format_version '1'"),
        ({"architecture": {"name": "unet", "widths": [4, 8], "act": "x"}}, InvalidDataError, "act"),
        ({"architecture": None}, InvalidDataError, "invalid architecture"),
    ],
)
def test_load_refuses_bad_cards(
    saved: tuple[Path, UNet], change: dict, error: type[NanosegError], phrase: str
) -> None:
    folder, _ = saved
    card_path = folder / "model.json"
    card = json.loads(card_path.read_text())
    card.update(change)
    card_path.write_text(json.dumps(card))
    with pytest.raises(error) as err:
        load_model(folder)
    assert phrase in _one_line_naming(err, card_path)


def test_load_refuses_a_card_that_is_not_json(saved: tuple[Path, UNet]) -> None:
    folder, _ = saved
    card_path = folder / "model.json"
    card_path.write_text("{'format_version': 1, 'architecture': __import__('os')}")
    with pytest.raises(CorruptFileError) as err:
        load_model(folder)
    assert "not valid JSON" in _one_line_naming(err, card_path)
    card_path.write_text("[" * 100_000)
    with pytest.raises(CorruptFileError):
        load_model(folder)


class _Payload:
    """Unpickling this creates a marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_loading_never_executes_code(
    saved: tuple[Path, UNet], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = saved

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_model must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_model(folder)  # the whole load goes without pickle

    marker = tmp_path / "code-ran"
    weights = folder / "model.safetensors"
    weights.write_bytes(pickle.dumps({"final.weight": _Payload(marker)}))  # a torch.save-style file
    with pytest.raises(CorruptFileError):
        load_model(folder)
    card_path = folder / "model.json"
    card = json.loads(card_path.read_text())
    card["architecture"] = {"name": "unet", "__reduce__": [str(Path.touch), str(marker)]}
    card_path.write_text(json.dumps(card))
    with pytest.raises(InvalidDataError):
        load_model(folder)
    assert not marker.exists()


def test_import_keras_command_writes_a_loadable_model(keras_file: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nanoseg.cli import app

    out = tmp_path / "imported"
    result = CliRunner().invoke(app, ["import-keras", str(keras_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, card = load_model(out)
    reference, _ = import_keras(keras_file)
    x = torch.from_numpy(_micrograph(64)[None, None])
    np.testing.assert_array_equal(model.predict_proba(x), reference.predict_proba(x))
    assert card["source"]["keras_weights"] == keras_file.name
    assert card["preprocessing"] == {"median": 3, "normalize": "image-max"}
    bad = CliRunner().invoke(app, ["import-keras", str(tmp_path / "none.h5"), "--out", str(out)])
    assert bad.exit_code == 2
    assert bad.stderr.startswith(f"error: {tmp_path / 'none.h5'}:")


def test_fused_network_gives_the_same_maps():
    from nanoseg.model import fuse_for_inference

    model = _trained_like(UNetConfig())
    x = torch.randn(2, 1, 64, 64)
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(fused.predict_proba(x), model.predict_proba(x), atol=1e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # left alone


# ------------------------------------------------------------------------ inference network


def _trained_like(config: UNetConfig, seed: int = 3) -> UNet:
    """A network whose BatchNorm layers hold non-trivial statistics, as after training."""
    torch.manual_seed(seed)
    model = UNet(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


def test_transposed_kernel_equals_upsampling_then_convolution():
    from nanoseg.model import transposed_upsample_kernel

    torch.manual_seed(0)
    x, weight = torch.randn(2, 5, 7, 9, dtype=torch.float64), torch.randn(3, 5, 3, 3).double()
    upsampled = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    expected = torch.nn.functional.conv2d(upsampled, weight, padding=1)
    kernel = transposed_upsample_kernel(weight)
    assert kernel.shape == (5, 3, 4, 4)
    got = torch.nn.functional.conv_transpose2d(x, kernel, stride=2, padding=1)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize(
    "config",
    [UNetConfig(), UNetConfig(widths=(3, 5, 7), pool_before_relu=False), UNetConfig(n_classes=3)],
    ids=["paper", "relu-then-pool", "three-classes"],
)
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "plain"])
def test_inference_network_gives_the_same_maps(config: UNetConfig, onednn: bool):
    from nanoseg.model import InferenceUNet, inference_network

    model = _trained_like(config)
    fast = inference_network(model)
    assert isinstance(fast, InferenceUNet) and fast.config == config
    fast._onednn = onednn and fast._onednn
    x = torch.randn(2, 1, 64, 96)
    assert torch.allclose(fast.predict_proba(x), model.predict_proba(x), atol=1e-5)
    # Transposed (non-contiguous) input, as test-time augmentation passes it, and numpy.
    xt = x.transpose(-1, -2)
    assert torch.allclose(fast.predict_proba(xt), model.predict_proba(xt), atol=1e-5)
    out = fast.predict_proba(x.numpy())
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, 64, 96)
    assert model.training  # the trained network is left as it was


def test_inference_network_in_bfloat16_stays_close():
    from nanoseg.model import inference_network

    model = _trained_like(UNetConfig())
    x = torch.randn(1, 1, 128, 128)
    half = inference_network(model, torch.bfloat16).predict_proba(x)
    assert half.dtype == torch.float32
    assert (half - model.predict_proba(x)).abs().max() < 0.05


def test_inference_network_keeps_other_normalisations_as_they_are():
    from nanoseg.model import InferenceUNet, inference_network

    model = _trained_like(UNetConfig(norm="group"))
    fast = inference_network(model)
    assert not isinstance(fast, InferenceUNet)
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(fast.predict_proba(x), model.predict_proba(x), atol=1e-5)
    with pytest.raises(ValueError, match="only BatchNorm"):
        InferenceUNet(model)
