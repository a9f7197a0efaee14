"""Student initialisation: inherited teacher filters (largest L1) against a fresh random init.

For --students random action sequences (seeded), the same student architecture is built twice from
the bundle's teacher, once with `inherit=True` and once with `inherit=False`, and both get the RL
search's short per-episode distillation (the budget that measures A in eq. 7). Prints the mean
validation accuracy of each and their difference; the better one is the `inherit` default.

    .venv/bin/python bench/student_init.py --bundle artifacts/demo/bundle
    .venv/bin/python bench/student_init.py --bundle artifacts/mnist --data-dir ../shared/data/mnist --students 6
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from compression.distill import DistillConfig, distill
from compression.surgery import ACTIONS, prunable_layers, shrink
from edgecloud.pipeline import load_config, load_data
from networks.checkpoint import load_checkpoint
from shared.bundle import TEACHER_PT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle (or train-teacher output) directory")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--students", type=int, default=8, help="random action sequences to compare on")
    parser.add_argument("--steps", type=int, default=50, help="short-distillation steps per student")
    parser.add_argument("--seed", type=int, default=0, help="seeds the action sequences")
    args = parser.parse_args()

    cfg = load_config(args.bundle)
    dataset = load_data(cfg, args.data_dir)
    teacher = load_checkpoint(args.bundle / TEACHER_PT).eval()
    short = DistillConfig(epochs=1, max_steps=args.steps, batch_size=64, lr=0.02, train_subset=2048,
                          seed=cfg.seed, device="cpu")
    rng = np.random.default_rng(args.seed)
    n_layers = len(prunable_layers(teacher.arch))
    # Actions ≥ 0.2 everywhere but a few removals: students a search would plausibly sample.
    sequences = [[float(a) for a in rng.choice(ACTIONS, size=n_layers)] for _ in range(args.students)]
    accuracy: dict[bool, list[float]] = {True: [], False: []}
    for actions in tqdm(sequences, desc="students"):
        for inherit in (True, False):
            torch.manual_seed(cfg.seed)
            student = shrink(teacher, actions, inherit=inherit)
            history = distill(student, teacher, dataset, short, progress=False)
            accuracy[inherit].append(float(history[-1]["val_accuracy"]))
    inherited, fresh = statistics.fmean(accuracy[True]), statistics.fmean(accuracy[False])
    wins = sum(a > b for a, b in zip(accuracy[True], accuracy[False], strict=True))
    print(f"dataset {cfg.dataset}, {args.students} random students, {args.steps} SP-KD steps each")
    print(f"inherit=True : mean val accuracy {inherited:.4f}  ({', '.join(f'{a:.3f}' for a in accuracy[True])})")
    print(f"inherit=False: mean val accuracy {fresh:.4f}  ({', '.join(f'{a:.3f}' for a in accuracy[False])})")
    print(f"difference (inherit - random): {inherited - fresh:+.4f}; inherit better on {wins}/{args.students}")


if __name__ == "__main__":
    main()
