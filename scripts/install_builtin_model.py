"""Install a trained model as the package's built-in model, with its test scores in the card.

Usage::

    python scripts/install_builtin_model.py RUN/best EVAL/metrics.json [--name NAME]

Called by ``make builtin-model`` after training and evaluation; writes
``src/nanoseg/models/builtin/`` (model.safetensors + model.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nanoseg.model import load_model, save_model

TARGET = Path(__file__).resolve().parents[1] / "src" / "nanoseg" / "models" / "builtin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--name", default="nanoseg-builtin")
    parser.add_argument("--recipe", default="make builtin-model")
    args = parser.parse_args()
    model, card = load_model(args.model)
    metrics = json.loads(args.metrics.read_text())
    card["name"] = args.name
    card["recipe"] = args.recipe
    card["test_metrics"] = {
        "split": metrics["split"],
        "threshold": metrics["threshold"],
        "overall": {k: metrics["overall"][k] for k in ("pixel_accuracy", "dice", "iou")},
        "per_material": {
            name: {k: m[k] for k in ("pixel_accuracy", "dice", "iou")}
            for name, m in metrics["per_material"].items()
        },
    }
    folder = save_model(TARGET, model, card)
    print(f"installed {args.model} as {folder}")


if __name__ == "__main__":
    main()
