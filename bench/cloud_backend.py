"""Throughput of the cloud's two compute backends on a bundle's teacher, in process, batched.

    .venv/bin/python bench/cloud_backend.py --bundle artifacts/mnist
    .venv/bin/python bench/cloud_backend.py --bundle artifacts/mnist --batch-size 64 --seconds 5 --threads 2

Prints samples/s for onnxruntime (teacher.onnx) and torch (teacher.pt) at the same batch size and
thread count; CloudSettings.backend defaults to the faster one. The input shape comes from the
manifest, or from --shape C,H,W for a directory that only holds the teacher files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from serving.backends import OnnxBackend, TorchBackend, measure_throughput
from serving.settings import default_threads
from shared.bundle import TEACHER_ONNX, TEACHER_PT, load_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=64, help="as the server's max_batch_size")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per backend")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default as the server)")
    parser.add_argument("--shape", default=None, help="C,H,W when the directory has no manifest")
    args = parser.parse_args(argv)

    if args.shape:
        shape = tuple(int(v) for v in args.shape.split(","))
    else:
        shape = tuple(load_manifest(args.bundle, verify=True).input.shape)
    threads = args.threads or default_threads()
    x = np.random.default_rng(0).standard_normal((args.batch_size, *shape)).astype(np.float32)  # (B, C, H, W)
    results: dict[str, float] = {}
    for name, cls, filename in (("onnx", OnnxBackend, TEACHER_ONNX), ("torch", TorchBackend, TEACHER_PT)):
        path = args.bundle / filename
        if not path.is_file():
            print(f"{name:>5}: skipped, {path} is missing")
            continue
        results[name] = measure_throughput(cls(path, threads=threads), x, seconds=args.seconds)
        print(f"{name:>5}: {results[name]:10.0f} samples/s  (batch {args.batch_size}, {threads} threads)")
    if not results:
        print("no backend could be measured", file=sys.stderr)
        return 1
    print(f"faster: {max(results, key=results.__getitem__)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
