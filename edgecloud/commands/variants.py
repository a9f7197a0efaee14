"""`edgecloud variants`: a family of model variants (role `variant`) added to an existing bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgecloud.commands._offline import DEFAULT_OUT, setup_logging


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "variants",
        help="add a family of model variants (Pareto-front students, int8 copies) to a built bundle",
        description=(
            "Reads the bundle's search log (reports/episodes.jsonl), keeps its size/accuracy Pareto front, "
            "distills COUNT students spread over it (tiny to mid-size), exports each to ONNX with a parity "
            "check, adds int8-quantized copies of them and of the teacher (onnxruntime static QDQ), and "
            "measures every variant's test accuracy and per-tier latency profile into the manifest. "
            "Example: edgecloud variants --bundle artifacts/bundle --count 3"),
    )
    parser.add_argument("--bundle", type=Path, default=DEFAULT_OUT, help="bundle directory from `edgecloud build`")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--count", type=int, default=3,
                        help="distilled variants to pick from the Pareto front (0: none; the teacher, the student, "
                             "their int8 copies and --add only)")
    parser.add_argument("--max-fraction", type=float, default=0.5,
                        help="largest variant as a fraction of the teacher's bytes")
    parser.add_argument("--epochs", type=int, default=None,
                        help="distillation epochs per variant (default: the build's distill.epochs)")
    parser.add_argument("--no-quantize", action="store_true", help="skip the int8 copies")
    parser.add_argument("--no-student", action="store_true",
                        help="leave the bundle's own student out of the family (it is in by default, as `student`)")
    parser.add_argument("--add", action="append", default=[], metavar="NAME=BUNDLE:MODEL",
                        help="a classifier of another bundle of the same dataset to add (with its int8 copy), e.g. "
                             "alexnet=artifacts/c10-alexnet:teacher; repeatable")
    parser.add_argument("--profile-only", action="store_true",
                        help="only measure the existing variants' latency again (torch-free; on the host they "
                             "will be profiled for)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    if args.profile_only:
        from orchestration.profiles import ProfileError, reprofile
        from shared.bundle import BundleError

        try:
            manifest = reprofile(args.bundle)
        except (BundleError, ProfileError, ValueError) as err:
            print(f"edgecloud variants: {err}", file=sys.stderr)
            return 2
        return _table(args.bundle, manifest)
    from compression.variants import VariantConfig, build_variants
    from edgecloud.pipeline import StageError, load_config, load_data
    from shared.bundle import BundleError
    from shared.datasets import DatasetError

    try:
        build = load_config(args.bundle)
        cfg = VariantConfig(count=args.count, max_fraction=args.max_fraction, quantize=not args.no_quantize,
                            device=build.device, seed=build.seed, student=not args.no_student,
                            imports=tuple(args.add))
        dataset = load_data(build, args.data_dir)
        manifest = build_variants(args.bundle, dataset, cfg, progress=not args.no_progress,
                                  distill_epochs=args.epochs or build.distill.epochs)
    except (StageError, DatasetError, BundleError, FileNotFoundError, ValueError) as err:
        print(f"edgecloud variants: {err}", file=sys.stderr)
        return 2
    return _table(args.bundle, manifest)


def _table(bundle: Path, manifest: Any) -> int:
    from orchestration.profiles import profiles_from_manifest

    profiles = profiles_from_manifest(bundle, manifest)
    print("| variant | accuracy | ONNX bytes | end (ms) | edge (ms) | cloud (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in profiles.names:
        v = profiles.variants[name]
        lat = [f"{v.latency_ms[t]:.2f}" for t in sorted(v.latency_ms, key=list(v.latency_ms).index)]
        print(f"| {name} | {100 * v.accuracy:.2f}% | {v.bytes:,} | {' | '.join(lat)} |")
    return 0
