"""Train the U-Net on a data set built by :mod:`nanoseg.dataset`, resumably and reproducibly.

Two presets:

``paper``
    The released recipe: random rotations by any angle and mirroring, epochs of 1000 samples,
    batch 20, Adam at 1e-4, categorical cross-entropy, early stopping when the validation loss
    has not improved by more than 0.001 for 2 epochs, at most 10 epochs, full 512 px tiles.
``default``
    Our recipe for a 2-core CPU (see ``docs/training.md`` for the measurements behind it): random
    256 px crops of the tiles (a fully convolutional network learns the same from a quarter of
    the pixels per step), rotations and mirroring, scale, contrast/gamma, blur and noise
    augmentation, cross-entropy plus Dice loss, Adam at 2e-3 with a cosine schedule.

Rotations never wrap lattice around the tile edge: the tile is mirrored outward (reflection
padding) before rotating and the centre is kept, so every pixel comes from the tile itself.

A run folder holds ``config.json``, ``log.csv``, ``loss.png``, the ``best`` and ``last``
models (safetensors + JSON card) and ``state.pt`` (optimizer and counters, tensors only,
loaded with ``weights_only=True``). Every epoch draws its random numbers from ``(seed,
epoch)``, so a run killed and started again with ``--resume`` ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from nanoseg.dataset import DatasetError, load_split, split_indices
from nanoseg.errors import NanosegError
from nanoseg.io import atomic_path, sha256_file, write_csv, write_json
from nanoseg.model import UNet, UNetConfig, load_model, save_model
from nanoseg.runtime import resolve_device

__all__ = ["PRESETS", "TrainConfig", "TrainError", "train"]


class TrainError(NanosegError):
    """Training cannot start or continue (bad options, a run folder in the way, ...)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the run's ``config.json``)."""

    preset: str = "default"
    epochs: int = 30
    samples_per_epoch: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    patience: int = 6
    min_delta: float = 1e-3
    seed: int = 0
    crop: int | None = 256  # train on random crops of this size; None = whole tiles
    loss: str = "ce+dice"  # or "ce"
    schedule: str = "cosine"  # or "constant"
    rotate: bool = True  # any angle, reflection-padded
    mirror: bool = True
    scale: tuple[float, float] | None = (0.8, 1.25)
    intensity: bool = True  # contrast, gamma, blur and noise
    blur: tuple[float, float] = (1.5, 0.3)  # largest Gaussian blur sigma (px), share blurred
    export: bool = False  # also strong gamma and 8-bit-like quantisation, as in PNG/TIFF exports
    widths: tuple[int, ...] = (4, 8, 16, 32)
    norm: str = "batch"
    dropout: float = 0.2
    threshold_metric: str = "pixel_accuracy"  # or "dice"
    threshold_split: str = "validation"  # the paper used "train"
    init: str | None = None  # a model folder to start from (fine-tuning)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        for key in ("scale", "widths", "blur"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


#: The presets; command-line options override single fields.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "preset": "paper",
        "epochs": 10,
        "samples_per_epoch": 1000,
        "batch_size": 20,
        "lr": 1e-4,
        "patience": 2,
        "min_delta": 1e-3,
        "crop": None,
        "loss": "ce",
        "schedule": "constant",
        "rotate": True,
        "mirror": True,
        "scale": None,
        "intensity": False,
    },
    "default": {"preset": "default"},
    # The bundled model: every magnification, so a wider zoom, and exported 8-bit files; one
    # U-Net level more than the paper's (a 316 px field of view instead of 156 px), trained on
    # crops wider than that field (on 256 px crops it scored lower on every simulated figure).
    # Four times the channels did not help; this did (docs/training.md). More blur, sigma up
    # to 3 px on half the samples, did not help on real-dev either.
    "builtin": {
        "preset": "builtin",
        "scale": (0.6, 1.6),
        "export": True,
        "epochs": 20,
        "widths": (4, 8, 16, 32, 64),
        "crop": 384,
    },
}


def make_config(preset: str, **overrides: Any) -> TrainConfig:
    """A preset with some fields replaced (None values are ignored).

    Raises
    ------
    TrainError
        Unknown preset or field, or a value out of range.
    """
    if preset not in PRESETS:
        raise TrainError(f"unknown preset '{preset}'; choose from {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    try:
        config = TrainConfig(**values)
    except TypeError as err:
        raise TrainError(str(err)) from None
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.samples_per_epoch >= 1, "--samples-per-epoch must be at least 1"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.lr > 0, "--lr must be positive"),
        (config.patience >= 1, "--patience must be at least 1"),
        (config.min_delta >= 0, "--min-delta must not be negative"),
        (config.loss in ("ce", "ce+dice"), "loss must be 'ce' or 'ce+dice'"),
        (config.schedule in ("constant", "cosine"), "schedule must be 'constant' or 'cosine'"),
        (config.threshold_metric in ("pixel_accuracy", "dice"), "threshold metric must be "
         "'pixel_accuracy' or 'dice'"),
        (config.threshold_split in ("validation", "train"), "threshold split must be "
         "'validation' or 'train'"),
        (len(config.widths) >= 2 and min(config.widths) >= 1, "--widths needs at least two "
         "levels of at least one channel each"),
        (overrides.get("widths") is None or config.init is None, "--widths cannot be used "
         "with --init: fine-tuning keeps the starting model's architecture"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise TrainError(message)
    return config


# --------------------------------------------------------------------------------------------
# data and augmentation
# --------------------------------------------------------------------------------------------


class _TrainTiles:
    """Random access to the training tiles (read from the file per batch: memory stays flat)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index = split_indices(path, "train")
        if not len(self.index):
            raise DatasetError("the data set has no training tile", path)
        self._h5 = h5py.File(path, "r")
        self.images = self._h5["images"]
        self.labels = self._h5["labels"]
        self.tile = int(self.images.shape[1])

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(rows)  # h5py reads sorted indices; keep the drawn order afterwards
        picked = self.index[rows[order]]
        images = np.empty((len(rows), self.tile, self.tile), np.float32)
        labels = np.empty((len(rows), self.tile, self.tile), np.uint8)
        for slot, position in zip(order, picked, strict=True):
            images[slot] = self.images[position]
            labels[slot] = self.labels[position]
        return images, labels

    def close(self) -> None:
        self._h5.close()


def augment(
    images: np.ndarray, labels: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random geometric and intensity changes of a batch, the same for image and label.

    Parameters
    ----------
    images : numpy.ndarray
        float32 ``(n, tile, tile)``.
    labels : numpy.ndarray
        uint8 ``(n, tile, tile)``.
    config : TrainConfig
    rng : numpy.random.Generator

    Returns
    -------
    images : torch.Tensor
        float32 ``(n, 1, size, size)``, size = ``config.crop`` or the tile.
    labels : torch.Tensor
        int64 ``(n, size, size)``.
    """
    n, tile, _ = images.shape
    size = min(config.crop or tile, tile)
    x = torch.from_numpy(images)[:, None]
    y = torch.from_numpy(labels.astype(np.float32))[:, None]
    angle = rng.uniform(0, 2 * math.pi, n) if config.rotate else np.zeros(n)
    zoom = np.exp(rng.uniform(*np.log(config.scale), n)) if config.scale else np.ones(n)
    flip = rng.random(n) < 0.5 if config.mirror else np.zeros(n, bool)
    # Crop centre, in normalised coordinates, such that the crop stays inside the tile.
    reach = size / tile
    centre = rng.uniform(-(1 - reach), 1 - reach, (n, 2)) if size < tile else np.zeros((n, 2))
    theta = np.zeros((n, 2, 3))
    cos, sin = np.cos(angle) * reach / zoom, np.sin(angle) * reach / zoom
    mirror = np.where(flip, -1.0, 1.0)
    theta[:, 0, 0], theta[:, 0, 1] = cos * mirror, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * mirror, cos
    theta[:, :, 2] = centre
    grid = F.affine_grid(torch.from_numpy(theta).float(), [n, 1, size, size], align_corners=False)
    # Reflection padding: a rotated tile never wraps lattice around from the opposite edge.
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    y = F.grid_sample(y, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    if config.intensity:
        x = _intensity(x, rng, config.blur)
    if config.export:
        x = _export(x, rng)
    return x.contiguous(), y[:, 0].round().long()


def _stretch(x: torch.Tensor, tail: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample: the `tail` percentile, the span to the 1 - `tail` one, and x scaled to [0, 1]."""
    n = x.shape[0]
    # Percentiles of every 4th pixel along each axis: the same to a fraction of a percent, and
    # a full-resolution torch.quantile would cost more than the rest of the augmentation.
    flat = x[..., ::4, ::4].reshape(n, -1)
    low = flat.quantile(tail, dim=1).view(n, 1, 1, 1)
    span = (flat.quantile(1 - tail, dim=1).view(n, 1, 1, 1) - low).clamp_min(1e-6)
    return low, span, ((x - low) / span).clamp(0, 1)


def _intensity(
    x: torch.Tensor, rng: np.random.Generator, blur: tuple[float, float] = (1.5, 0.3)
) -> torch.Tensor:
    """Contrast and gamma, blur, and noise, each drawn per sample."""
    n = x.shape[0]
    low, span, unit = _stretch(x, 0.005)
    gamma = torch.from_numpy(np.exp(rng.uniform(-0.4, 0.4, n))).float().view(n, 1, 1, 1)
    contrast = torch.from_numpy(rng.uniform(0.7, 1.3, n)).float().view(n, 1, 1, 1)
    x = low + span * contrast * (unit**gamma - 0.5) + span * 0.5
    sigma = rng.uniform(0, blur[0], n) * (rng.random(n) < blur[1])
    if sigma.any():
        x = torch.stack([_blur(x[i], float(s)) if s > 0.2 else x[i] for i, s in enumerate(sigma)])
    noise = torch.from_numpy(rng.uniform(0, 0.15, n)).float().view(n, 1, 1, 1)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    return x + noise * span * torch.randn(x.shape, generator=generator)


def _export(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """What saving to an 8-bit PNG or TIFF does: clipping, a strong gamma and few grey levels.

    Half the samples are quantised to 12-256 levels between two percentiles (some exports
    use only a few dozen), after a gamma of 0.5-2.
    """
    n = x.shape[0]
    chosen = rng.random(n) < 0.5
    if not chosen.any():
        return x
    low, span, unit = _stretch(x, 0.002)
    gamma = torch.from_numpy(np.exp(rng.uniform(-0.7, 0.7, n))).float().view(n, 1, 1, 1)
    levels = torch.from_numpy(np.exp(rng.uniform(np.log(12), np.log(256), n))).float()
    levels = levels.round().view(n, 1, 1, 1)
    quantised = torch.round(unit**gamma * (levels - 1)) / (levels - 1)
    exported = low + span * quantised
    mask = torch.from_numpy(chosen).view(n, 1, 1, 1)
    return torch.where(mask, exported, x)


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))[0]


# --------------------------------------------------------------------------------------------
# loss and evaluation
# --------------------------------------------------------------------------------------------


def loss_function(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Categorical cross-entropy over the two maps, plus soft Dice of the particle map."""
    # CUDA's cross-entropy kernel for images is not deterministic; the CPU keeps
    # F.cross_entropy, which the bundled model was trained with.
    loss = _cross_entropy(logits, target) if logits.is_cuda else F.cross_entropy(logits, target)
    if kind == "ce+dice":
        particle = torch.softmax(logits, dim=1)[:, 1]
        truth = target.float()
        overlap = (particle * truth).sum()
        loss = loss + 1 - (2 * overlap + 1) / (particle.sum() + truth.sum() + 1)
    return loss


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(logits, target)`` from elementwise steps and sums, which every
    device computes deterministically. `logits` ``(N, C, H, W)``, `target` int64 ``(N, H, W)``."""
    chosen = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    return -(F.log_softmax(logits, dim=1) * chosen).sum(dim=1).mean()


def _validation_loss(model: UNet, images: np.ndarray, labels: np.ndarray, kind: str) -> float:
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(images), 4):
            x = torch.from_numpy(images[start : start + 4])[:, None].to(device)
            y = torch.from_numpy(labels[start : start + 4].astype(np.int64)).to(device)
            total += float(loss_function(model(x), y, kind)) * len(x)
            count += len(x)
    return total / count


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def _epoch_seed(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch]))


def _build_model(config: TrainConfig) -> tuple[UNet, str]:
    torch.manual_seed(config.seed)
    if config.init is None:
        arch = UNetConfig(widths=config.widths, norm=config.norm, dropout=config.dropout)
        return UNet(arch), "scratch"
    if config.init == "builtin":
        from nanoseg.segment import builtin_model_path

        model, card = load_model(builtin_model_path())
    else:
        model, card = load_model(config.init)
    return model, f"{config.init} (weights sha256 {card.get('weights_sha256')})"


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    stop_after: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train a network and choose its threshold; return the best model's card.

    Augmentation runs on the CPU with the run's own random numbers, so a GPU sees the same
    batches as the CPU would; the same seed gives the same model on the same kind of device
    (GPU and CPU round differently, so their models differ slightly).

    Parameters
    ----------
    data : path-like
        Data set file from ``nanoseg dataset build`` (needs train and validation tiles).
    out : path-like
        Run folder. It must not exist unless `resume`.
    config : TrainConfig, optional
        Defaults to the ``default`` preset. Ignored when resuming (the run's own is used).
    resume : bool
        Continue the run in `out` from its last completed epoch.
    progress : callable, optional
        Called with each epoch's log row.
    stop_after : int, optional
        Stop (as if killed) after this many epochs of this call; for tests of resuming.
    device : str
        Where the network trains (:func:`nanoseg.runtime.resolve_device`); recorded in the
        model card.

    Returns
    -------
    dict
        The card of the best model (``out/best``).
    """
    data, out = Path(data), Path(out)
    target = resolve_device(device)
    if resume:
        if not (out / "config.json").exists():
            raise TrainError("nothing to resume: no config.json in the run folder", out)
        stored = json.loads((out / "config.json").read_text())
        config = TrainConfig.from_dict(stored["config"])
        data = Path(stored["data"]) if not data.exists() else data
    else:
        config = config or make_config("default")
        if out.exists() and any(out.iterdir()):
            raise TrainError(
                "run folder exists and is not empty (use --resume to continue it)", out
            )
    validation = load_split(data, "validation")
    tiles = _TrainTiles(data)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _run(data, out, config, tiles, validation, resume, progress, stop_after, target)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        tiles.close()


def _run(
    data: Path,
    out: Path,
    config: TrainConfig,
    tiles: _TrainTiles,
    validation: Any,
    resume: bool,
    progress: Callable[[dict[str, Any]], None] | None,
    stop_after: int | None,
    device: torch.device,
) -> dict[str, Any]:
    model, origin = _build_model(config)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = max(1, config.samples_per_epoch // config.batch_size)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps)
        if config.schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    )
    history: list[dict[str, Any]] = []
    state = {"epoch": 0, "best_loss": math.inf, "best_epoch": 0, "bad_epochs": 0}
    out.mkdir(parents=True, exist_ok=True)
    data_hash = sha256_file(data)
    if resume and (out / "state.pt").exists():
        saved = torch.load(out / "state.pt", weights_only=True, map_location=device)
        last, _ = load_model(out / "last")
        model.load_state_dict(last.state_dict())
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = {k: saved[k] for k in state}
        history = json.loads((out / "history.json").read_text())
    else:
        write_json(out / "config.json", {"config": config.to_dict(), "data": str(data)})
    card_base = _card_base(config, data, data_hash, tiles, origin)
    card_base["training"]["device"] = _describe(device)
    epochs_this_call = 0
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        epoch = state["epoch"] + 1
        rng = _epoch_seed(config.seed, epoch)
        torch.manual_seed(int(rng.integers(2**31)))
        model.train()
        start, total = time.perf_counter(), 0.0
        for _ in range(steps):
            rows = rng.integers(0, len(tiles.index), config.batch_size)
            x, y = augment(*tiles.batch(rows), config, rng)
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_function(model(x), y, config.loss)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        train_seconds = time.perf_counter() - start
        val_loss = _validation_loss(model, validation.images, validation.labels, config.loss)
        improved = val_loss < state["best_loss"] - config.min_delta
        row = {
            "epoch": epoch,
            "train_loss": total / steps,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - start, 2),  # including validation
            "samples_per_second": round(steps * config.batch_size / train_seconds, 2),
            "improved": improved,
        }
        history.append(row)
        state["epoch"] = epoch
        if improved:
            state.update(best_loss=val_loss, best_epoch=epoch, bad_epochs=0)
            save_model(out / "best", model, {**card_base, "epoch": epoch, "val_loss": val_loss})
        else:
            state["bad_epochs"] += 1
        _checkpoint(out, model, optimizer, scheduler, state, history, card_base)
        if progress:
            progress(row)
        epochs_this_call += 1
        if (
            stop_after is not None
            and epochs_this_call >= stop_after
            and state["epoch"] < config.epochs
        ):
            raise KeyboardInterrupt(f"stopped after {epochs_this_call} epochs (stop_after)")
    return _finish(out, config, data, card_base, state, validation, device)


def _describe(device: torch.device) -> str:
    """``cpu``, or ``cuda`` with the GPU's name, for the model card."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def _card_base(
    config: TrainConfig, data: Path, data_hash: str, tiles: _TrainTiles, origin: str
) -> dict[str, Any]:
    with h5py.File(data, "r") as h5:
        attrs = dict(h5.attrs)
        sizes = h5["tiles"]["pixel_size_nm"][()][tiles.index]
        diameters = tile_particle_sizes(h5["labels"], np.sort(tiles.index))
    finite = sizes[np.isfinite(sizes)]
    zoom = config.scale or (1.0, 1.0)
    return {
        "training": {
            "preset": config.preset,
            "config": config.to_dict(),
            "data": data.name,
            "data_sha256": data_hash,
            "train_tiles": len(tiles.index),
            "init": origin,
        },
        "pixel_size_nm": float(np.median(finite)) if len(finite) else None,
        "pixel_size_range_nm": [float(finite.min()), float(finite.max())] if len(finite) else None,
        # Without a pixel size, images are resampled to bring their particles into this range.
        "particle_px_range": particle_px_range(diameters, zoom),
        "preprocessing": {
            "median": int(attrs.get("median", 3)),
            "normalize": str(attrs.get("normalize", "dataset-max")),
            "dataset_max": float(attrs.get("dataset_max", float("nan"))),
            "tile": int(attrs.get("tile", tiles.tile)),
        },
    }


def tile_particle_sizes(labels: h5py.Dataset, index: np.ndarray) -> np.ndarray:
    """Per tile, the median equivalent diameter (px) of its labelled particles clear of the
    tile border; tiles without such particles are left out.

    Per tile rather than per particle, so that a dense monolayer's thousands of particles do not
    outweigh an HRTEM tile's few.
    """
    from nanoseg.measure import interior_diameters

    out = []
    for start in range(0, len(index), 64):
        for tile in labels[index[start : start + 64]]:
            sizes = interior_diameters(tile > 0)
            if len(sizes):
                out.append(float(np.median(sizes)))
    return np.asarray(out, dtype=float)


def particle_px_range(sizes: np.ndarray, zoom: tuple[float, float]) -> list[float] | None:
    """The particle diameters (px) a model is trusted on without a pixel size.

    From the lower quartile of the training tiles' median particle diameters (fewer tiles show
    smaller particles; bringing those up to the bulk makes results agree across zooms) to
    their 95th percentile times the largest zoom augmentation.
    """
    if not len(sizes):
        return None
    return [
        round(float(np.percentile(sizes, 25)), 2),
        round(float(np.percentile(sizes, 95) * zoom[1]), 2),
    ]


def _checkpoint(out, model, optimizer, scheduler, state, history, card_base) -> None:
    save_model(out / "last", model, {**card_base, "epoch": state["epoch"]})
    write_json(out / "history.json", history)
    with atomic_path(out / "state.pt") as tmp:
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state}, tmp
        )
    write_csv(out / "log.csv", history)
    _plot_losses(out / "loss.png", history)


def _plot_losses(path: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="training")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _finish(
    out: Path,
    config: TrainConfig,
    data: Path,
    card_base: dict[str, Any],
    state: dict[str, Any],
    validation: Any,
    device: torch.device,
) -> dict[str, Any]:
    """Choose the threshold with the best model and write it into the best model's card."""
    from nanoseg.metrics import best_threshold, binarize, confusion, scores, threshold_curve
    from nanoseg.predict import predict_tiles

    if not (out / "best").exists():
        raise TrainError("no epoch improved the validation loss; nothing to keep", out)
    model, card = load_model(out / "best")
    model.to(device)
    split = validation if config.threshold_split == "validation" else load_split(data, "train")
    if config.threshold_split == "train" and len(split) > 200:
        keep = np.random.default_rng(config.seed).choice(len(split), 200, replace=False)
        split.images, split.labels = split.images[np.sort(keep)], split.labels[np.sort(keep)]
    prob = predict_tiles(model, split.images)
    curve = threshold_curve(prob, split.labels)
    threshold = best_threshold(curve, config.threshold_metric)
    val_prob = (
        prob if config.threshold_split == "validation" else predict_tiles(model, validation.images)
    )
    metrics = scores(confusion(binarize(val_prob, threshold), validation.labels))
    card.update(
        {
            **card_base,
            "epoch": state["best_epoch"],
            "val_loss": state["best_loss"],
            "threshold": threshold,
            "threshold_metric": config.threshold_metric,
            "threshold_split": config.threshold_split,
            "threshold_curve": {k: np.asarray(v).round(5).tolist() for k, v in curve.items()},
            "metrics": {"validation": metrics},
            "epochs_run": state["epoch"],
        }
    )
    for key in ("format_version", "nanoseg_version", "architecture", "weights_sha256"):
        card.pop(key, None)
    save_model(out / "best", model, card)
    return load_model(out / "best")[1]
