"""Model files without pickle: ``MODEL/model.safetensors`` plus the ``MODEL/model.json`` card."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nanoseg.errors import CorruptFileError, InvalidDataError
from nanoseg.model.unet import UNet, UNetConfig, _is_int

#: Version of the model card layout written by :func:`save_model`; :func:`load_model` refuses
#: cards of any other version.
CARD_FORMAT_VERSION = 1
#: File names inside a model folder.
MODEL_WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "model.json"

#: Card keys that :func:`save_model` sets itself (a caller's values for them are replaced).
_RESERVED_CARD_KEYS = ("format_version", "nanoseg_version", "architecture", "weights_sha256")


# --------------------------------------------------------------------------------------------
# model files: safetensors + JSON card
# --------------------------------------------------------------------------------------------


def save_model(
    path: str | os.PathLike[str], model: UNet, card: Mapping[str, Any] | None = None
) -> Path:
    """Write `model` as a folder with ``model.safetensors`` and ``model.json``, atomically.

    Each file is written under a temporary name and renamed into place (weights first, then
    the card). The card records the weights' SHA-256, so a folder left with a new weights file
    and an old card (a run killed between the two renames) is refused by :func:`load_model`.

    Parameters
    ----------
    path : str or os.PathLike
        The model folder; created if needed (existing model files in it are replaced).
    model : UNet
        The network; its state dict is stored as float32 (BatchNorm's counter as int64).
    card : mapping, optional
        Everything else the model needs or documents, stored as given (JSON; numpy values
        become plain numbers and NaN/inf become null): e.g. ``pixel_size_nm``,
        ``preprocessing`` / normalisation constants, ``threshold``, ``training_data_sha256``,
        ``metrics``. ``format_version``, ``nanoseg_version``, ``architecture`` (the model's
        config) and ``weights_sha256`` are set here and replace any given values.

    Returns
    -------
    pathlib.Path
        The model folder.

    Raises
    ------
    OutputError
        The folder cannot be created or written.
    TypeError
        A card value that cannot be stored as JSON.
    """
    import safetensors.torch

    from nanoseg import __version__
    from nanoseg.io import atomic_path, check_output_dir, json_ready

    folder = check_output_dir(path)
    user = {k: v for k, v in dict(card or {}).items() if k not in _RESERVED_CARD_KEYS}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    weights = safetensors.torch.save(tensors, metadata={"format": "pt"})
    full = {
        "format_version": CARD_FORMAT_VERSION,
        "nanoseg_version": __version__,
        "architecture": model.config.to_dict(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        **json_ready(user),
    }
    text = json.dumps(full, indent=2, allow_nan=False) + "\n"  # fails before anything is written
    with atomic_path(folder / MODEL_WEIGHTS_NAME) as tmp:
        tmp.write_bytes(weights)
    with atomic_path(folder / MODEL_CARD_NAME) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return folder


def _model_files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        weights, card = path / MODEL_WEIGHTS_NAME, path / MODEL_CARD_NAME
    elif path.suffix in (".safetensors", ".json"):
        weights, card = path.with_suffix(".safetensors"), path.with_suffix(".json")
    elif not path.exists():
        raise CorruptFileError(
            f"no such model (a folder with {MODEL_WEIGHTS_NAME} and {MODEL_CARD_NAME})", path
        )
    else:
        raise CorruptFileError(
            f"not a model: give the model folder, its {MODEL_WEIGHTS_NAME} or {MODEL_CARD_NAME}",
            path,
        )
    for item in (weights, card):
        if not item.is_file():
            raise CorruptFileError("model file missing", item)
    return weights, card


def load_model(path: str | os.PathLike[str]) -> tuple[UNet, dict[str, Any]]:
    """Load a model written by :func:`save_model`, executing nothing from the files.

    Only JSON (the card) and safetensors (raw tensors) are parsed; no pickle, no
    ``torch.load``. The card's architecture is built and must have exactly the state-dict keys
    and shapes of the weights file.

    Parameters
    ----------
    path : str or os.PathLike
        The model folder, or its ``model.safetensors`` or ``model.json`` (a pair
        ``NAME.safetensors`` + ``NAME.json`` in one folder works too).

    Returns
    -------
    model : UNet
        The network, in eval mode.
    card : dict
        The model card as stored.

    Raises
    ------
    CorruptFileError
        A file is missing, the card is not JSON, the weights are not a readable safetensors
        file, or the weights are not those the card was written with (SHA-256 differs).
    InvalidDataError
        A card of an unknown ``format_version`` or with an invalid architecture, or weights of
        another architecture than the card describes.
    """
    import safetensors.torch

    weights_path, card_path = _model_files(Path(path))
    card = _read_card(card_path)
    try:
        config = UNetConfig.from_dict(card["architecture"])
    except KeyError:
        raise InvalidDataError("model card has no architecture", card_path) from None
    except (ValueError, TypeError) as err:
        raise InvalidDataError(
            f"invalid architecture in the model card: {err}", card_path
        ) from None
    data = weights_path.read_bytes()
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # the library raises several types for damaged files
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptFileError(
            f"not a readable safetensors file ({message})", weights_path
        ) from err
    model = UNet(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        raise InvalidDataError(
            f"weights of another architecture than {card_path.name} describes "
            f"({_describe_difference(expected, found)})",
            weights_path,
        )
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InvalidDataError(f"tensor {key} holds NaN or infinite values", weights_path)
    digest = card.get("weights_sha256")
    if digest is not None and digest != hashlib.sha256(data).hexdigest():
        raise CorruptFileError(
            f"weights differ from those {card_path.name} was written with (SHA-256 mismatch): "
            "damaged, or the two files come from different saves",
            weights_path,
        )
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, card


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CorruptFileError("model card is not UTF-8 text", path) from err
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"model card is not valid JSON (line {err.lineno})", path) from err
    except RecursionError as err:
        raise CorruptFileError("model card is nested too deeply", path) from err
    if not isinstance(card, dict):
        raise InvalidDataError("model card must be a JSON object", path)
    version = card.get("format_version")
    if not _is_int(version) or version != CARD_FORMAT_VERSION:
        raise InvalidDataError(
            f"unknown model card format_version {version!r} "
            f"(this nanoseg reads {CARD_FORMAT_VERSION}); a newer nanoseg may read it",
            path,
        )
    return card


def _describe_difference(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> str:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        return f"missing {missing[0]}" + (
            f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        )
    if extra:
        return f"unexpected {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
    key = next(k for k in expected if expected[k] != found[k])
    return f"{key} has shape {list(found[key])}, expected {list(expected[key])}"
