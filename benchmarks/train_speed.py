"""Training throughput (samples per second) of both presets on this machine.

Usage::

    python benchmarks/train_speed.py --steps 5 [--presets paper,default,builtin]
        [--device auto|cpu|cuda]

Times whole training steps (augmentation on the CPU, forward, loss, backward, Adam on the
device) on random 512 px tiles held in memory, after one warm-up step, and prints a Markdown
row per preset. On a GPU the step ends when the GPU has finished it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nanoseg.model import UNet, UNetConfig
from nanoseg.runtime import resolve_device
from nanoseg.train import augment, loss_function, make_config


def measure(preset: str, steps: int, tile: int = 512, device: str = "cpu") -> dict[str, float]:
    config = make_config(preset)
    target = resolve_device(device)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=config.widths, norm=config.norm, dropout=config.dropout))
    model.to(target)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = rng.random((config.batch_size, tile, tile), dtype=np.float32)
    labels = (rng.random((config.batch_size, tile, tile)) < 0.3).astype(np.uint8)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        x, y = augment(images, labels, config, rng)
        x, y = x.to(target), y.to(target)
        optimizer.zero_grad()
        loss = loss_function(model(x), y, config.loss)
        loss.backward()
        optimizer.step()
        if target.type == "cuda":
            torch.cuda.synchronize(target)
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
        "device": str(target),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--presets", default="paper,default")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()
    for preset in args.presets.split(","):
        result = measure(preset, args.steps, device=args.device)
        print(json.dumps(result))
        print(
            f"| train, preset {preset} (batch {result['batch_size']}, "
            f"{result['input_px']} px inputs) | {result['samples_per_second']} samples/s | "
            f"{result['seconds_per_step']} s/step | {result['device']}, "
            f"{result['threads']} threads |"
        )


if __name__ == "__main__":
    main()
