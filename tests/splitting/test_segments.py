"""The split build: segments compose to the network, the manifest lists them, accuracy is measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from networks.multibranch import MultiBranchNet, feature_shape, multibranch_arch, validate_multibranch
from networks.resnet import resnet_arch
from shared.bundle import load_manifest
from shared.names import ModelRole
from splitting.actions import ActionSpace, Placement
from splitting.export import check_composition, export_head, export_tail
from splitting.segments import SegmentRunner, SplitPlan


def _net() -> MultiBranchNet:
    torch.manual_seed(0)
    net = MultiBranchNet(multibranch_arch(resnet_arch(18, in_channels=1, width=4, input_size=(28, 28))))
    return net.eval()


def test_bottlenecks_make_the_feature_smaller_than_the_raw_input() -> None:
    arch = multibranch_arch(resnet_arch(18, in_channels=1, width=32, input_size=(28, 28)))
    for p in (1, 2, 3):
        c, h, w = feature_shape(arch, p)
        assert c * h * w <= 784 // 4  # at 8 bits, >= 4x fewer bytes than the raw image
    plain = multibranch_arch(resnet_arch(18, in_channels=1, width=32, input_size=(28, 28)), bottleneck_channels=None)
    assert all(np.prod(feature_shape(plain, p)) > 784 for p in (1, 2, 3))


def test_arch_errors_name_the_field() -> None:
    arch = multibranch_arch(resnet_arch(18, in_channels=1, width=4, input_size=(8, 8)))
    arch["bottlenecks"][0]["stride"] = 3
    with pytest.raises(ValueError, match="stride must be 1, 2 or 4"):
        validate_multibranch(arch)


def test_last_exit_is_the_backbone_itself() -> None:
    net = _net()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x)[-1], net.backbone(x))


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_head_and_tail_compose_to_the_split_network(tmp_path: Path, p: int) -> None:
    net = _net()
    head = export_head(net, p, tmp_path / "head.onnx")
    tail = export_tail(net, p, tmp_path / "tail.onnx") if p < 4 else None
    x = np.random.default_rng(p).normal(size=(5, 1, 28, 28)).astype(np.float32)
    assert check_composition(net, p, head, tail, x) <= 1e-4


def test_manifest_lists_every_segment_with_its_parameters(split_bundle: Path) -> None:
    manifest = load_manifest(split_bundle)
    heads = manifest.models_with_role(ModelRole.SPLIT_HEAD)
    tails = manifest.models_with_role(ModelRole.SPLIT_TAIL)
    assert sorted(heads) == ["head_1", "head_2", "head_3", "head_4"]
    assert sorted(tails) == ["tail_1", "tail_2", "tail_3"]
    tail = manifest.models["tail_2"]
    assert tail.takes == "tensor" and tail.parameters["partition"] == 2 and tail.parameters["exits"] == [3, 4]
    assert tail.parameters["feature_bytes"]["2"] * 4 >= tail.parameters["feature_bytes"]["8"]
    assert manifest.models["teacher"].role is ModelRole.TEACHER  # the source bundle's models stay
    plan = SplitPlan.from_manifest(manifest)
    assert plan.n_stages == 4 and plan.payload_bytes(0, 8) == 64 and plan.payload_bytes(4, 8) == 0


def test_accuracy_report_covers_every_valid_action(split_bundle: Path) -> None:
    manifest = load_manifest(split_bundle)
    report = json.loads((split_bundle / manifest.artifacts["split_accuracy"]).read_text())
    space = ActionSpace(4)
    assert [r["index"] for r in report["actions"]] == list(space.valid_indices())
    assert max(report["composition_max_abs_diff"].values()) <= 1e-4
    rows = {r["action"]: r for r in report["actions"]}
    # device-only at the last exit and server-only are the same network (the teacher)
    assert rows["device:exit4"]["test_accuracy"] == rows["server"]["test_accuracy"]
    assert rows["device:exit4"]["test_accuracy"] > 0.3  # a trained teacher, not chance


def test_runner_gives_the_exits_before_and_after_the_split(split_bundle: Path) -> None:
    runner = SegmentRunner(split_bundle, heads=[2], tails=[2])
    x = np.zeros((3, 1, 8, 8), np.float32)
    exits, feature = runner.head(2, x)
    assert sorted(exits) == [1, 2] and feature is not None
    assert sorted(runner.tail(2, feature)) == [3, 4]


def test_action_space_masks_what_makes_no_sense() -> None:
    space = ActionSpace(4)
    assert len(space) == 4 * 5 * 3 and space.n_valid == 23
    for index in space.valid_indices():
        a = space.actions[index]
        if a.placement(4) is Placement.SPLIT:
            assert a.exit > a.partition
    offline = space.mask(server_available=False)
    assert offline.sum() == 4 and all(space.actions[i].partition == 4 for i in np.flatnonzero(offline))
