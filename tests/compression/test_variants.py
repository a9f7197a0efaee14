from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compression.variants import VariantConfig, onnx_predictions, pareto_front, pick_spread, quantize_int8
from shared.bundle import load_manifest
from shared.preprocess import normalize


def rows(*points: tuple[int, float]) -> list[dict]:
    return [{"student_bytes": b, "accuracy": a, "actions": []} for b, a in points]


def test_pareto_front_keeps_only_undominated_students_smallest_first() -> None:
    front = pareto_front(rows((100, 0.80), (200, 0.78), (200, 0.90), (300, 0.85), (400, 0.95), (50, 0.60)))
    assert [(r["student_bytes"], r["accuracy"]) for r in front] == [(50, 0.60), (100, 0.80), (200, 0.90),
                                                                    (400, 0.95)]


def test_pick_spread_spans_tiny_to_mid_size_without_repeats() -> None:
    front = pareto_front(rows(*[(2 ** k, 0.5 + k / 40) for k in range(4, 16)]))
    picked = pick_spread(front, 3, max_bytes=2 ** 14)
    sizes = [r["student_bytes"] for r in picked]
    assert sizes[0] == 2 ** 4 and sizes[-1] == 2 ** 14 and len(set(sizes)) == 3
    assert pick_spread(front[:2], 3, max_bytes=10 ** 9) == front[:2]  # fewer points than asked: all of them


def test_int8_copy_is_smaller_and_agrees_with_the_float_model(tiny_bundle: Path, tmp_path: Path,
                                                             tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    manifest = load_manifest(tiny_bundle)
    x = normalize(tiny_test_split[0], manifest.input.mean, manifest.input.std)
    int8 = tmp_path / "teacher-int8.onnx"
    quantize_int8(tiny_bundle / "teacher.onnx", int8, x[:64])
    assert int8.stat().st_size < (tiny_bundle / "teacher.onnx").stat().st_size
    agree = (onnx_predictions(int8, x) == onnx_predictions(tiny_bundle / "teacher.onnx", x)).mean()
    assert agree > 0.95


def test_config_refuses_bad_values() -> None:
    from compression.variants import VariantConfig

    with pytest.raises(ValueError, match="count"):
        VariantConfig(count=-1)
    with pytest.raises(ValueError, match="max_fraction"):
        VariantConfig(max_fraction=1.5)


def test_imports_are_parsed_and_refused_by_name() -> None:
    from compression.variants import parse_import

    spec = parse_import("alexnet=artifacts/c10-alexnet:teacher")
    assert (spec.name, str(spec.bundle), spec.model) == ("alexnet", "artifacts/c10-alexnet", "teacher")
    for bad in ("alexnet", "=b:m", "a=b", "a b=c:d"):
        with pytest.raises(ValueError, match="expected NAME=BUNDLE:MODEL"):
            VariantConfig(imports=(bad,))
