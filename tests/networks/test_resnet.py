"""networks.resnet: arch dicts, the built network, and the analytic parameter count."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
import torch

from networks.resnet import (
    ResNet,
    build_model,
    model_bytes,
    param_count,
    resnet_arch,
    validate_arch,
)


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet18_width64_matches_paper_size() -> None:
    # Paper Table I: ResNet-18 teacher of about 11.2M parameters (43.7 MB float32).
    arch = resnet_arch(18, in_channels=3, num_classes=10, width=64)
    model = build_model(arch)
    assert param_count(arch) == _numel(model)
    assert 11_100_000 <= param_count(arch) <= 11_300_000
    assert model_bytes(arch) == 4 * param_count(arch)
    assert 43.0e6 <= model_bytes(arch) <= 45.5e6


def test_resnet18_forward_shapes_and_features() -> None:
    torch.manual_seed(0)
    model = build_model(resnet_arch(18, in_channels=3, width=16, input_size=(32, 32))).eval()
    logits, feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    # CIFAR-style: no max-pool, stage strides 1, 2, 2, 2, widths w, 2w, 4w, 8w.
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4)]
    assert torch.equal(model(torch.zeros(1, 3, 32, 32)), model.forward_features(torch.zeros(1, 3, 32, 32))[0])


def test_resnet34_builds_with_16_blocks() -> None:
    arch = resnet_arch(34, in_channels=1, width=8, input_size=(28, 28))
    model = build_model(arch).eval()
    assert [len(s) for s in model.stages] == [3, 4, 6, 3]
    assert param_count(arch) == _numel(model)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    # ResNet-34 at width 64 is about 21.3M parameters (He et al.); analytic only, to stay fast.
    assert 21_000_000 <= param_count(resnet_arch(34, width=64)) <= 21_500_000


def test_only_projection_shortcuts_where_shape_changes() -> None:
    model = build_model(resnet_arch(18, width=8))
    kinds = [[type(b.shortcut).__name__ for b in stage] for stage in model.stages]
    assert kinds == [["Identity", "Identity"]] + [["Sequential", "Identity"]] * 3


def _random_arch(rng: random.Random) -> dict[str, Any]:
    n_stages = rng.randint(1, 4)
    stages = []
    for s in range(n_stages):
        blocks = [{"mid": rng.randint(1, 12), "kernel1": rng.choice([1, 3, 5]), "kernel2": rng.choice([1, 3])}
                  for _ in range(rng.randint(1, 3))]
        stride = rng.choice([1, 2]) if s else 1
        stages.append({"width": rng.randint(1, 12), "stride": stride, "blocks": blocks})
    return {"depth": 18, "in_channels": rng.randint(1, 3), "num_classes": rng.randint(2, 7),
            "input_size": [rng.randint(4, 10), rng.randint(4, 10)],
            "stem": {"out": rng.randint(1, 12), "kernel": rng.choice([1, 3, 5])}, "stages": stages}


def test_param_count_equals_built_model_for_random_archs() -> None:
    rng = random.Random(1234)
    torch.manual_seed(0)
    for _ in range(25):
        arch = _random_arch(rng)
        model = build_model(arch).eval()
        assert param_count(arch) == _numel(model), arch
        h, w = arch["input_size"]
        logits, feats = model.forward_features(torch.randn(2, arch["in_channels"], h, w))
        assert logits.shape == (2, arch["num_classes"])
        assert [f.shape[1] for f in feats] == [s["width"] for s in arch["stages"]]


def test_arch_is_json_and_rebuilds_identically() -> None:
    arch = resnet_arch(18, in_channels=1, width=4, input_size=(28, 28))
    restored = json.loads(json.dumps(arch))
    assert restored == arch
    torch.manual_seed(0)
    first = build_model(arch).eval()
    second = build_model(restored).eval()
    second.load_state_dict(first.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(first(x), second(x))


def test_model_keeps_its_own_copy_of_arch() -> None:
    arch = resnet_arch(18, width=4)
    model = ResNet(arch)
    arch["stages"][0]["width"] = 999
    assert model.arch["stages"][0]["width"] == 4


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.pop("stem"), "stem"),
        (lambda a: a["stem"].update(kernel=2), "kernel"),
        (lambda a: a["stages"][1].update(width=0), "width"),
        (lambda a: a["stages"][2].update(blocks=[]), "blocks"),
        (lambda a: a["stages"][0]["blocks"][1].update(mid=True), "mid"),
        (lambda a: a.update(input_size=[28]), "input_size"),
    ],
)
def test_malformed_arch_is_rejected_by_name(mutate: Any, message: str) -> None:
    arch = copy.deepcopy(resnet_arch(18, width=4))
    mutate(arch)
    with pytest.raises(ValueError, match=message):
        validate_arch(arch)
    with pytest.raises(ValueError, match=message):
        build_model(arch)
    with pytest.raises(ValueError, match=message):
        param_count(arch)


def test_unknown_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="50"):
        resnet_arch(50)
