"""networks.mobilenet and networks.mobilenet_edits: the mobile family's arch, network, seam and edits."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from compression.export import check_parity, export_onnx
from networks import family
from networks.edits import ACTIONS
from networks.family import FamilyError
from networks.mobilenet import FAMILY, MobileNet, make_divisible, mobilenet_arch, param_count, stage_shapes
from networks.mobilenet_edits import LayerRef, channel_spaces, derive_arch, prunable_layers, shrink

# The small teacher every edit test uses: width 0.25, depth 0.34 gives 11 blocks,
# stem 8 | 8, 8 | 8, 8 (residual) | 16, 16 (residual), 24, 24 (residual) | 40, 40 (residual), 80.
SMALL = {"width": 0.25, "depth": 0.34}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _arch(**options: Any) -> dict[str, Any]:
    return family.default_arch("mobilenet", in_channels=3, num_classes=10, input_size=(32, 32), **options)


def _teacher(seed: int = 0, **options: Any) -> MobileNet:
    """A seeded teacher in eval mode whose BN and classifier are far from their init, so that a wrong
    channel selection shows in the logits."""
    torch.manual_seed(seed)
    model = MobileNet(_arch(**(options or SMALL)))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        nn.init.normal_(model.fc.weight, 0.0, 0.3)
    return model.eval()


def _numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _ones(arch: dict[str, Any]) -> list[float]:
    return [1.0] * len(prunable_layers(arch))


def _set(actions: list[float], arch: dict[str, Any], ref: LayerRef, phi: float) -> None:
    actions[prunable_layers(arch).index(ref)] = phi


def _outs(arch: dict[str, Any]) -> list[list[int]]:
    return [[b["out"] for b in stage["blocks"]] for stage in arch["stages"]]


# ---- the arch ------------------------------------------------------------------------------------


def test_full_arch_follows_sandler_table_2_with_cifar_strides() -> None:
    arch = _arch()
    assert mobilenet_arch() == arch  # the module's own constructor and the seam agree
    assert arch["stem"] == {"out": 32, "stride": 1} and arch["head"] == 1280
    assert _outs(arch) == [[16, 24, 24], [32, 32, 32], [64] * 4 + [96] * 3, [160] * 3 + [320]]
    strides = [[b["stride"] for b in stage["blocks"]] for stage in arch["stages"]]
    assert strides == [[1, 1, 1], [2, 1, 1], [2, 1, 1, 1, 1, 1, 1], [2, 1, 1, 1]]
    first, second = arch["stages"][0]["blocks"][:2]
    assert first == {"expand": 1, "mid": 32, "out": 16, "stride": 1, "residual": False}
    assert second == {"expand": 6, "mid": 96, "out": 24, "stride": 1, "residual": False}
    # Only the blocks after a sequence's first add their input: 17 blocks - 7 sequences.
    assert sum(b["residual"] for stage in arch["stages"] for b in stage["blocks"]) == 10
    # torchvision's mobilenet_v2(num_classes=10) has exactly as many weights; the strides change none.
    assert param_count(arch) == 2_236_682


def test_width_and_depth_multipliers() -> None:
    half = _arch(width=0.5)
    assert half["stem"]["out"] == 16 and half["head"] == 1280  # the head never shrinks below 1280
    assert [stage[-1] for stage in _outs(half)] == [16, 16, 48, 160]  # 24 * 0.5 = 12 rounds up to 16
    assert _arch(width=1.4)["head"] == 1792
    shallow = _arch(depth=0.5)  # ceil(n / 2) per sequence: 1, 1, 2, 2, 2, 2, 1
    assert [len(stage["blocks"]) for stage in shallow["stages"]] == [2, 2, 4, 3]
    assert [len(stage["blocks"]) for stage in _arch(**SMALL)["stages"]] == [2, 2, 4, 3]


def test_make_divisible_is_sandler_rounding() -> None:
    assert [make_divisible(v) for v in (4, 8, 12, 20, 44.8, 1280)] == [8, 8, 16, 24, 48, 1280]
    assert make_divisible(11) == 16  # 8 would lose more than 10% of 11


def test_unknown_and_bad_options_are_named() -> None:
    with pytest.raises(FamilyError, match=r"no option\(s\) depht, widht; its options: depth, stem_stride, width"):
        _arch(widht=0.5, depht=1.0)
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        _arch(stem_stride=3)
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="width"):
            _arch(width=bad)
    with pytest.raises(ValueError, match="depth"):
        _arch(depth=0.0)


def _break(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    arch = copy.deepcopy(_arch(**SMALL))
    target = arch
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return arch


@pytest.mark.parametrize(("path", "value", "named"), [
    (("head",), KeyError, "'head'"),
    (("family",), "resnet", r"\['family'\]"),
    (("stem", "out"), 0, r"\['stem'\]\['out'\]"),
    (("stages", 1, "blocks"), [], r"\['stages'\]\[1\]\['blocks'\]"),
    (("stages", 2, "blocks", 1, "mid"), 2.5, r"\['stages'\]\[2\]\['blocks'\]\[1\]\['mid'\]"),
    (("stages", 2, "blocks", 1, "residual"), 1, r"\['stages'\]\[2\]\['blocks'\]\[1\]\['residual'\]"),
    # A residual needs stride 1 and in == out.
    (("stages", 1, "blocks", 0, "residual"), True, r"\['stages'\]\[1\]\['blocks'\]\[0\]\['residual'\]"),
    # No expansion conv: the depthwise conv reads the input channel for channel.
    (("stages", 0, "blocks", 0, "mid"), 16, r"\['stages'\]\[0\]\['blocks'\]\[0\]\['mid'\]"),
])
def test_validate_names_the_malformed_field(path: tuple[Any, ...], value: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        FAMILY.validate(_break(path, value))


# ---- the network ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (30, 30), (9, 12)])
def test_stage_outputs_are_the_cut_points(size: tuple[int, int]) -> None:
    arch = family.default_arch("mobilenet", in_channels=1, num_classes=7, input_size=size, **SMALL)
    model = MobileNet(arch).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        logits, feats = model.forward_features(x)
        assert torch.equal(model(x), logits)
    assert logits.shape == (2, 7)
    assert [tuple(f.shape[1:]) for f in feats] == FAMILY.cut_points(arch)
    if size == (32, 32):
        assert FAMILY.cut_points(arch) == [(8, 32, 32), (8, 16, 16), (24, 8, 8), (80, 4, 4)]
    if size == (30, 30):
        assert [hw for _, *hw in FAMILY.cut_points(arch)] == [[30, 30], [15, 15], [8, 8], [4, 4]]


def test_blocks_are_inverted_residuals() -> None:
    model = MobileNet(_arch(**SMALL))
    first, second = model.stages[0][0], model.stages[0][1]
    assert first.expand is None and first.dw[0].in_channels == 8  # t = 1: depthwise on the stem's output
    assert second.expand[0].kernel_size == (1, 1) and second.expand[0].out_channels == 48
    assert second.dw[0].groups == 48 and second.dw[0].kernel_size == (3, 3)
    assert len(second.project) == 2  # linear bottleneck: no ReLU6 after the projection
    assert [block.residual for block in model.stages[2]] == [False, True, False, True]
    # A residual block's output is its input plus its branch.
    block, x = model.stages[2][1].eval(), torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.project(block.dw(block.expand(x))))


@pytest.mark.parametrize("options", [{"width": 0.5}, {"depth": 0.5}, SMALL, {"width": 0.75, "depth": 0.34}])
def test_param_count_matches_the_built_model(options: dict[str, float]) -> None:
    arch = _arch(**options)
    assert param_count(arch) == _numel(MobileNet(arch))


def test_describe_has_one_row_per_stem_stage_and_head() -> None:
    rows = FAMILY.describe(_arch(**SMALL))
    assert [r["stage"] for r in rows] == ["stem", "1", "2", "3", "4", "head"]
    assert [r["layers"] for r in rows] == [1, 2, 2, 4, 3, 1]
    assert [r["width"] for r in rows] == [8, 8, 8, 24, 80, 1280]
    assert "48->8" in rows[1]["detail"]


# ---- layers and derive_arch ----------------------------------------------------------------------


def test_prunable_layers_and_their_eq2_states() -> None:
    arch = _arch(**SMALL)
    model = MobileNet(arch)
    layers = prunable_layers(arch)
    assert len(layers) == 2 + 2 * 11
    assert layers[:3] == [LayerRef("stem"), LayerRef("mid", 0, 0), LayerRef("out", 0, 0)]
    assert layers[-1] == LayerRef("head")
    assert all(isinstance(model.get_submodule(ref.name), nn.Conv2d) for ref in layers)
    states = family.layer_states(arch)
    assert states.shape == (24, 5) and states.min() >= 0.0 and states.max() <= 1.0
    infos = family.prunable_layers(arch)
    # d: a mid row is its depthwise conv, so it shows where the block strides.
    strided = [info.name for info in infos if info.stride == 2]
    assert strided == ["stages.1.0.dw.0", "stages.2.0.dw.0", "stages.3.0.dw.0"]
    assert [(i.kernel, i.padding) for i in infos[:3]] == [(3, 1), (3, 1), (1, 0)]
    assert [i.kind for i in infos[:3]] + [infos[-1].kind] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


def test_all_ones_reproduce_the_teacher_arch_and_derive_is_pure() -> None:
    arch = _arch(**SMALL)
    before = copy.deepcopy(arch)
    assert derive_arch(arch, _ones(arch)) == arch
    derive_arch(arch, [0.0] * 24)
    assert arch == before


def test_zero_removes_residual_blocks_only() -> None:
    student = derive_arch(_arch(**SMALL), [0.0] * 24)
    # Every sequence keeps its first block, at the smallest widths.
    assert _outs(student) == [[2, 2], [2], [4, 5], [8, 16]]
    assert not any(b["residual"] for stage in student["stages"] for b in stage["blocks"])
    assert student["stem"] == {"out": 2, "stride": 1} and student["head"] == 256
    assert student["stages"][0]["blocks"][0]["mid"] == 2  # no expansion conv: the stem's width


def test_one_block_removed_and_smallest_width_elsewhere() -> None:
    arch = _arch(**SMALL)
    actions = _ones(arch)
    _set(actions, arch, LayerRef("mid", 2, 1), 0.0)  # residual: removed
    _set(actions, arch, LayerRef("out", 2, 1), 0.2)  # ignored: its block is gone
    _set(actions, arch, LayerRef("mid", 2, 2), 0.0)  # a sequence's first: the smallest mid instead
    student = derive_arch(arch, actions)
    assert _outs(student) == [[8, 8], [8, 8], [16, 24, 24], [40, 40, 80]]
    assert student["stages"][2]["blocks"][1]["mid"] == 20  # ceil(0.2 * 96)


def test_coupled_width_honours_the_largest_out_action() -> None:
    arch = _arch(**SMALL)
    assert channel_spaces(arch)[4:8] == [(3, 4), (4, 4), (4, 5), (5, 5)]  # stage 3: two chains
    actions = _ones(arch)
    _set(actions, arch, LayerRef("out", 2, 0), 0.2)
    _set(actions, arch, LayerRef("out", 2, 1), 0.6)
    student = derive_arch(arch, actions)
    assert _outs(student)[2] == [10, 10, 24, 24]  # ceil(0.6 * 16) for both writers of the chain
    assert student["stages"][2]["blocks"][2]["mid"] == 96  # a mid is not coupled: still 6 · 16
    # A removed block's action leaves the group.
    _set(actions, arch, LayerRef("mid", 2, 1), 0.0)
    assert _outs(derive_arch(arch, actions))[2] == [4, 24, 24]


def test_a_block_without_expansion_follows_its_input_width() -> None:
    arch = _arch(**SMALL)
    actions = _ones(arch)
    actions[0] = 0.4  # stem: ceil(0.4 * 8) = 4
    _set(actions, arch, LayerRef("mid", 0, 0), 0.2)  # ignored: tied to the stem
    first = derive_arch(arch, actions)["stages"][0]["blocks"][0]
    assert first == {"expand": 1, "mid": 4, "out": 8, "stride": 1, "residual": False}


def test_bad_actions_are_rejected_by_name() -> None:
    arch = _arch(**SMALL)
    with pytest.raises(ValueError, match="expected 24 actions"):
        derive_arch(arch, [1.0] * 23)
    with pytest.raises(ValueError, match=r"action 3 is 0\.5"):
        derive_arch(arch, [1.0] * 3 + [0.5] + [1.0] * 20)
    assert derive_arch(arch, np.full(24, 0.2, dtype=np.float32)) == derive_arch(arch, [0.2] * 24)


# ---- shrink --------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [SMALL, {"width": 0.5, "depth": 0.5}])
def test_all_ones_with_inherit_reproduce_the_teacher(options: dict[str, float]) -> None:
    teacher = _teacher(**options)
    student = shrink(teacher, _ones(teacher.arch), inherit=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = teacher(x)
        assert expected.abs().max() > 0.1  # a wrong channel would show
        assert torch.allclose(student(x), expected, atol=1e-5)


@pytest.mark.parametrize("inherit", [True, False])
def test_random_actions_give_valid_students(inherit: bool) -> None:
    teacher = _teacher()
    rng = np.random.default_rng(int(inherit))
    x = torch.randn(2, 3, 32, 32)
    for _ in range(6):
        actions = rng.choice(ACTIONS, size=24).tolist()
        student = shrink(teacher, actions, inherit=inherit)
        assert isinstance(student, MobileNet) and student.arch == derive_arch(teacher.arch, actions)
        assert _numel(student) == param_count(student.arch) < param_count(teacher.arch)
        with torch.no_grad():
            logits, feats = student.forward_features(x)
        assert logits.shape == (2, 10) and torch.isfinite(logits).all()
        assert [tuple(f.shape[1:]) for f in feats] == stage_shapes(student.arch)


def test_smaller_actions_give_fewer_parameters() -> None:
    arch = _arch(**SMALL)
    counts = [param_count(derive_arch(arch, [phi] * 24)) for phi in ACTIONS[1:]]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert counts[-1] == param_count(arch)


def test_shrink_leaves_the_teacher_untouched_and_keeps_its_mode() -> None:
    teacher = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = shrink(teacher, [0.4] * 24, inherit=True)
    assert not student.training and next(student.parameters()).device == next(teacher.parameters()).device
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    teacher.train()
    assert shrink(teacher, [0.4] * 24, inherit=False).training


def test_kept_weights_are_the_selected_teacher_slices() -> None:
    teacher = _teacher()
    src = teacher.stages[0][1]  # 8 -> 48 -> 8, reads the first block's output (space 1)
    scores = torch.randperm(48, generator=torch.Generator().manual_seed(1)).float() + 1
    with torch.no_grad():
        # Expansion filter c has L1 norm 8 · scores[c]: the 10 largest scores must be kept.
        src.expand[0].weight.copy_(scores.view(48, 1, 1, 1).expand(48, 8, 1, 1))
    arch = teacher.arch
    actions = _ones(arch)
    _set(actions, arch, LayerRef("mid", 0, 1), 0.2)  # ceil(0.2 * 48) = 10 mid channels
    _set(actions, arch, LayerRef("out", 0, 0), 0.6)  # space 1: ceil(0.6 * 8) = 5 channels
    student = shrink(teacher, actions, inherit=True)
    dst = student.stages[0][1]
    mid = torch.nonzero(scores > 38).flatten()
    in_idx = torch.topk(teacher.stages[0][0].project[0].weight.abs().sum(dim=(1, 2, 3)), 5).indices.sort().values
    assert torch.equal(dst.expand[0].weight, src.expand[0].weight[mid][:, in_idx])
    assert torch.equal(dst.expand[1].running_var, src.expand[1].running_var[mid])
    assert torch.equal(dst.dw[0].weight, src.dw[0].weight[mid])  # depthwise: one filter per kept channel
    assert torch.equal(dst.dw[1].weight, src.dw[1].weight[mid])
    assert torch.equal(dst.project[0].weight, src.project[0].weight[:, mid])
    assert torch.equal(student.stages[0][0].project[0].weight, teacher.stages[0][0].project[0].weight[in_idx])


def test_a_chain_ranks_channels_by_summed_l1() -> None:
    teacher = _teacher()
    writers = [teacher.stages[2][0].project[0], teacher.stages[2][1].project[0]]  # both write space 4 (16 ch)
    with torch.no_grad():
        for conv in writers:
            conv.weight.fill_(0.01)
            conv.weight[[1, 3, 5, 7]] = 0.5
        writers[0].weight[6] = 1.0  # the largest in one writer only: loses on the sum
    arch = teacher.arch
    actions = _ones(arch)
    for b in (0, 1):
        _set(actions, arch, LayerRef("out", 2, b), 0.2)  # ceil(0.2 * 16) = 4
    student = shrink(teacher, actions, inherit=True)
    kept = torch.tensor([1, 3, 5, 7])
    for b in (0, 1):
        assert torch.equal(student.stages[2][b].project[0].weight, writers[b].weight[kept])
        assert torch.equal(student.stages[2][b].project[1].running_mean,
                           teacher.stages[2][b].project[1].running_mean[kept])
    # Both readers of the chain see the same channels.
    assert torch.equal(student.stages[2][1].expand[0].weight, teacher.stages[2][1].expand[0].weight[:, kept])
    assert torch.equal(student.stages[2][2].expand[0].weight, teacher.stages[2][2].expand[0].weight[:, kept])


def test_the_head_and_classifier_follow_the_head_action() -> None:
    teacher = _teacher()
    actions = _ones(teacher.arch)
    actions[-1] = 0.2  # ceil(0.2 * 1280) = 256
    student = shrink(teacher, actions, inherit=True)
    head = torch.topk(teacher.head[0].weight.abs().sum(dim=(1, 2, 3)), 256).indices.sort().values
    assert torch.equal(student.head[0].weight, teacher.head[0].weight[head])
    assert torch.equal(student.fc.weight, teacher.fc.weight[:, head])
    assert torch.equal(student.fc.bias, teacher.fc.bias)


# ---- ONNX and the seam ---------------------------------------------------------------------------


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    teacher = _teacher()
    student = shrink(teacher, [0.4] * 24, inherit=True)
    path = export_onnx(student, tmp_path / "mobilenet.onnx", input_shape=(3, 32, 32))
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert check_parity(student, path, x) <= 1e-4


def test_the_seam_dispatches_to_the_mobile_family() -> None:
    arch = _arch(**SMALL)
    assert family.family_of(arch) is FAMILY and "mobilenet" in family.families()
    model = family.build_model(arch)
    assert isinstance(model, family.StagedNet) and isinstance(model, MobileNet)
    assert family.model_bytes(arch) == 4 * _numel(model)
    assert family.cut_points(arch) == stage_shapes(arch)
    assert family.input_shape(arch) == (3, 32, 32)
    actions = [0.6] * 24
    assert family.derive_arch(arch, actions) == derive_arch(arch, actions)
    student = family.shrink(model.eval(), actions)
    assert isinstance(student, MobileNet) and student.arch == derive_arch(arch, actions)
    assert family.describe(arch) == FAMILY.describe(arch)
    family.validate(student.arch)
