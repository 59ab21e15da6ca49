"""Training throughput (samples per second) of both presets on this machine.

Usage::

    python benchmarks/train_speed.py --steps 5

Times whole training steps (augmentation, forward, loss, backward, Adam) on random 512 px
tiles held in memory, after one warm-up step, and prints a Markdown row per preset.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nanoseg.model import UNet, UNetConfig
from nanoseg.train import augment, loss_function, make_config


def measure(preset: str, steps: int, tile: int = 512) -> dict[str, float]:
    config = make_config(preset)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=config.widths, norm=config.norm, dropout=config.dropout))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = rng.random((config.batch_size, tile, tile), dtype=np.float32)
    labels = (rng.random((config.batch_size, tile, tile)) < 0.3).astype(np.uint8)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        x, y = augment(images, labels, config, rng)
        optimizer.zero_grad()
        loss = loss_function(model(x), y, config.loss)
        loss.backward()
        optimizer.step()
        if step:  # the first step pays for allocation and kernel selection
            times.append(time.perf_counter() - start)
    per_step = float(np.median(times))
    return {
        "preset": preset,
        "batch_size": config.batch_size,
        "input_px": config.crop or tile,
        "seconds_per_step": round(per_step, 3),
        "samples_per_second": round(config.batch_size / per_step, 2),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    for preset in ("paper", "default"):
        result = measure(preset, args.steps)
        print(json.dumps(result))
        print(
            f"| train, preset {preset} (batch {result['batch_size']}, "
            f"{result['input_px']} px inputs) | {result['samples_per_second']} samples/s | "
            f"{result['seconds_per_step']} s/step |"
        )


if __name__ == "__main__":
    main()
