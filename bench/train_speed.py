"""Training speed of one CIFAR-10 epoch per model family, arithmetic and memory layout, side by side.

Times optimiser steps (forward, backward, SGD step) on random 32x32 batches, the way the training
loops run them (compression/teacher.py: bf16 autocast from compression/precision.py, channels-last),
and prints minutes per 45,000-sample epoch (CIFAR-10's train split less validation). Every
configuration is timed in each of `--rounds` interleaved rounds; the table shows each one's median
and range, and its ratio to float32 NCHW of the same model from the same rounds.

    .venv/bin/python bench/train_speed.py                        # the fast presets' teachers
    .venv/bin/python bench/train_speed.py --models resnet:depth=18,width=16 alexnet:width=0.5 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from compression.precision import autocast
from networks.family import build_model, default_arch, param_count

TRAIN_SAMPLES = 45_000
LAYOUTS: tuple[tuple[str, str], ...] = (("fp32", "nchw"), ("fp32", "channels_last"), ("bf16", "nchw"),
                                        ("bf16", "channels_last"))
DEFAULT_MODELS = ("resnet:depth=18,width=16", "resnet:depth=18,width=32", "alexnet:width=0.5",
                  "mobilenet:width=0.5,stem_stride=2")


def parse_model(text: str) -> tuple[str, dict[str, Any]]:
    """"family:k=v,k=v" -> (family, options) with numbers parsed."""
    family, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = float(value) if "." in value else int(value)
    return family, options


def step_seconds(model: torch.nn.Module, *, precision: str, layout: str, batch: int, steps: int) -> float:
    """Median seconds of one optimiser step over `steps` (after two warm-up steps)."""
    device = torch.device("cpu")
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(steps + 2):
        started = time.perf_counter()
        with autocast(device, precision):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="family:knob=value,... (%(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (%(default)s)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round (%(default)s)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (%(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (%(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [parse_model(m) for m in args.models]
    results: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.rounds):
        for text, (family, options) in zip(args.models, models, strict=True):
            for precision, layout in LAYOUTS:
                torch.manual_seed(0)
                model = build_model(default_arch(family, in_channels=3, num_classes=10, input_size=(32, 32),
                                                 **options))
                seconds = step_seconds(model, precision=precision, layout=layout, batch=args.batch, steps=args.steps)
                results.setdefault((text, precision, layout), []).append(seconds / args.batch * TRAIN_SAMPLES / 60)
    print(f"| model | params | arithmetic | layout | min / epoch (median, range over {args.rounds} rounds) | "
          "vs fp32 NCHW |")
    print("|---|---:|---|---|---:|---:|")
    for text, (family, options) in zip(args.models, models, strict=True):
        params = param_count(default_arch(family, in_channels=3, num_classes=10, input_size=(32, 32), **options))
        base = statistics.median(results[(text, "fp32", "nchw")])
        for precision, layout in LAYOUTS:
            runs = results[(text, precision, layout)]
            median = statistics.median(runs)
            print(f"| {text} | {params:,} | {precision} | {layout} | {median:.2f} ({min(runs):.2f}-{max(runs):.2f}) "
                  f"| {median / base:.2f}x |")
    print(f"\ntorch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"{TRAIN_SAMPLES:,} samples an epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
