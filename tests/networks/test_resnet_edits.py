"""networks.resnet_edits: prunable layers, eq. (2) states, derive_arch (eq. 4) and weight inheritance."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from networks.edits import ACTIONS, SurgeryError, scaled_kernel, scaled_width
from networks.edits import cut_conv as _cut_conv
from networks.family import layer_states
from networks.resnet import param_count
from networks.resnet_edits import LayerRef, derive_arch, prunable_layers, shrink


def _numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _ones(arch: dict) -> list[float]:
    return [1.0] * len(prunable_layers(arch))


# ---- layers and states ---------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "n_layers"), [(18, 17), (34, 33)])
def test_prunable_layers_in_policy_order(depth: int, n_layers: int, tiny_model) -> None:
    model = tiny_model(depth)
    layers = prunable_layers(model.arch)
    assert len(layers) == n_layers
    assert layers[:3] == [LayerRef("stem"), LayerRef("conv1", 0, 0), LayerRef("conv2", 0, 0)]
    # Every ref names a real conv of the built network.
    assert all(isinstance(model.get_submodule(ref.name), nn.Conv2d) for ref in layers)


def test_layer_states_follow_eq2(tiny_arch) -> None:
    arch = tiny_arch(18, width=8)
    states = layer_states(arch)
    assert states.shape == (17, 5) and states.dtype == np.float32
    assert states.min() >= 0.0 and states.max() <= 1.0
    layers = prunable_layers(arch)
    # l: layer type code.
    assert [states[i, 0] for i in range(3)] == [0.0, 0.5, 1.0]
    # d: only the first conv1 of stages 2-4 strides (2 = the column max).
    strided = [ref for ref, s in zip(layers, states, strict=True) if s[2] == 1.0]
    assert strided == [LayerRef("conv1", s, 0) for s in (1, 2, 3)]
    # k and p: all 3x3 with padding 1 in the teacher.
    assert np.all(states[:, 1] == 1.0) and np.all(states[:, 3] == 1.0)
    # o: output channels over the max (64 at width 8): stem 8 -> 0.125, last conv2 64 -> 1.
    assert states[0, 4] == pytest.approx(0.125) and states[-1, 4] == pytest.approx(1.0)


def test_layer_states_of_a_student_see_its_smaller_kernels(tiny_arch) -> None:
    arch = tiny_arch(18)
    student = derive_arch(arch, [0.2] + [1.0] * 16)
    states = layer_states(student)
    assert states[0, 1] == pytest.approx(1 / 3)  # 1x1 stem among 3x3 convs
    assert states[0, 3] == 0.0  # its padding


# ---- derive_arch ---------------------------------------------------------------------------------


def test_scaling_rules_of_eq4() -> None:
    assert [scaled_width(phi, 64) for phi in ACTIONS] == [13, 13, 26, 39, 52, 64]
    assert [scaled_kernel(phi, 3) for phi in ACTIONS] == [1, 1, 3, 3, 3, 3]
    assert [scaled_kernel(phi, 7) for phi in ACTIONS] == [3, 3, 3, 5, 7, 7]
    assert scaled_width(0.2, 3) == 1  # never 0 channels, and no float-noise extra channel


def test_all_ones_reproduce_the_teacher_arch(tiny_arch) -> None:
    for depth in (18, 34):
        arch = tiny_arch(depth)
        assert derive_arch(arch, _ones(arch)) == arch


def test_derive_arch_is_pure(tiny_arch) -> None:
    arch = tiny_arch(18)
    before = copy.deepcopy(arch)
    derive_arch(arch, [0.0] * 17)
    assert arch == before


def test_zero_removes_removable_blocks_only(tiny_arch) -> None:
    arch = tiny_arch(34)
    student = derive_arch(arch, [0.0] * 33)
    # Each stage keeps exactly its first block, shrunk to the smallest width.
    assert [len(s["blocks"]) for s in student["stages"]] == [1, 1, 1, 1]
    assert [s["stride"] for s in student["stages"]] == [1, 2, 2, 2]
    assert [s["width"] for s in student["stages"]] == [2, 4, 7, 13]
    assert student["stem"] == {"out": 2, "kernel": 1}


def test_zero_on_one_conv1_removes_that_block(tiny_arch) -> None:
    arch = tiny_arch(34)
    layers = prunable_layers(arch)
    actions = _ones(arch)
    actions[layers.index(LayerRef("conv1", 2, 3))] = 0.0
    actions[layers.index(LayerRef("conv2", 2, 3))] = 0.2  # ignored: its block is gone
    actions[layers.index(LayerRef("conv1", 1, 0))] = 0.0  # first of its stage: smallest width instead
    student = derive_arch(arch, actions)
    assert [len(s["blocks"]) for s in student["stages"]] == [3, 4, 5, 3]
    assert student["stages"][1]["blocks"][0] == {"mid": 4, "kernel1": 1, "kernel2": 3}
    assert student["stages"][2]["width"] == 32


def test_stage_width_honours_the_largest_conv2_action(tiny_arch) -> None:
    arch = tiny_arch(18)
    layers = prunable_layers(arch)
    actions = _ones(arch)
    actions[layers.index(LayerRef("conv2", 3, 0))] = 0.2
    actions[layers.index(LayerRef("conv2", 3, 1))] = 0.6
    student = derive_arch(arch, actions)
    assert student["stages"][3]["width"] == 39  # ceil(0.6 * 64): cut together, never below 0.6
    assert [b["kernel2"] for b in student["stages"][3]["blocks"]] == [1, 3]


def test_bad_actions_are_rejected_by_name(tiny_arch) -> None:
    arch = tiny_arch(18)
    with pytest.raises(ValueError, match="expected 17 actions"):
        derive_arch(arch, [1.0] * 16)
    with pytest.raises(ValueError, match=r"action 3 is 0\.5"):
        derive_arch(arch, [1.0] * 3 + [0.5] + [1.0] * 13)
    with pytest.raises(ValueError, match="nan"):
        derive_arch(arch, [float("nan")] + [1.0] * 16)


def test_policy_float32_actions_are_accepted(tiny_arch) -> None:
    arch = tiny_arch(18)
    actions = np.full(17, 0.2, dtype=np.float32)
    assert derive_arch(arch, actions) == derive_arch(arch, [0.2] * 17)


# ---- shrink --------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("inherit", [True, False])
def test_random_actions_always_give_a_valid_student(depth: int, inherit: bool, tiny_model) -> None:
    teacher = tiny_model(depth)
    n_layers = len(prunable_layers(teacher.arch))
    rng = np.random.default_rng(depth * 2 + inherit)
    x = torch.randn(3, 1, 8, 8)
    for _ in range(30):
        actions = rng.choice(ACTIONS, size=n_layers).tolist()
        student = shrink(teacher, actions, inherit=inherit)
        assert student.arch == derive_arch(teacher.arch, actions)
        assert _numel(student) == param_count(student.arch)
        with torch.no_grad():
            logits = student(x)
        assert logits.shape == (3, 10) and torch.isfinite(logits).all()


def test_all_ones_with_inherit_reproduce_the_teacher_exactly(tiny_model) -> None:
    for depth in (18, 34):
        teacher = tiny_model(depth)
        student = shrink(teacher, _ones(teacher.arch))
        x = torch.randn(5, 1, 8, 8)
        with torch.no_grad():
            assert torch.equal(student(x), teacher(x))


def test_shrink_leaves_the_teacher_untouched_and_keeps_its_mode(tiny_model) -> None:
    teacher = tiny_model(18)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = shrink(teacher, [0.4] * 17)
    assert not student.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    teacher.train()
    assert shrink(teacher, [0.4] * 17).training


def test_inherit_false_is_a_fresh_init_of_the_same_arch(tiny_model) -> None:
    teacher = tiny_model(18)
    fresh = shrink(teacher, _ones(teacher.arch), inherit=False)
    assert fresh.arch == teacher.arch
    assert not torch.equal(fresh.stem[0].weight, teacher.stem[0].weight)
    assert torch.equal(fresh.stem[1].running_var, torch.ones(8))  # untouched BN init


def _l1(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.detach().abs().sum(dim=(1, 2, 3))


def test_inheritance_keeps_the_largest_l1_filters(tiny_model) -> None:
    teacher = tiny_model(18, width=10)
    with torch.no_grad():
        # Hand-made stem: filter c has L1 norm proportional to a known score, largest at 7, 2, 9, 4.
        scores = torch.tensor([1.0, 2.0, 9.0, 3.0, 6.0, 0.5, 0.1, 10.0, 1.5, 8.0])
        teacher.stem[0].weight.copy_(scores.view(10, 1, 1, 1).expand(10, 1, 3, 3) / 9)
    layers = prunable_layers(teacher.arch)
    actions = _ones(teacher.arch)
    actions[0] = 0.4  # stem keeps ceil(0.4 * 10) = 4 filters, 3x3 kernel
    actions[layers.index(LayerRef("conv1", 0, 0))] = 0.2  # 1x1 kernel, 2 of 10 mid channels
    student = shrink(teacher, actions)
    kept = torch.tensor([2, 4, 7, 9])
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight[kept])
    assert torch.equal(student.stem[1].running_mean, teacher.stem[1].running_mean[kept])
    assert torch.equal(student.stem[1].weight, teacher.stem[1].weight[kept])
    # conv1 of the first block: its own largest-L1 filters, input channels = what the stem kept,
    # kernel cropped to the centre tap.
    mid = torch.topk(_l1(teacher.stages[0][0].conv1), 2).indices.sort().values
    expected = teacher.stages[0][0].conv1.weight[mid][:, kept][:, :, 1:2, 1:2]
    assert torch.equal(student.stages[0][0].conv1.weight, expected)
    assert torch.equal(student.stages[0][0].conv2.weight, teacher.stages[0][0].conv2.weight[:, mid])


def test_coupled_stage_ranks_channels_by_summed_l1(tiny_model) -> None:
    teacher = tiny_model(18, width=4)  # stage 2 (index 1) has width 8
    stage = teacher.stages[1]
    with torch.no_grad():
        for conv in (stage[0].conv2, stage[1].conv2, stage[0].shortcut[0]):
            conv.weight.fill_(0.01)
        # Channel 6 is the largest in one conv only, 1 and 3 are moderately large in all three:
        # summed over the group, 1 and 3 win.
        stage[0].conv2.weight[6] = 1.0
        for conv in (stage[0].conv2, stage[1].conv2, stage[0].shortcut[0]):
            conv.weight[1] = 0.5
            conv.weight[3] = 0.6
    layers = prunable_layers(teacher.arch)
    actions = _ones(teacher.arch)
    for b in (0, 1):
        actions[layers.index(LayerRef("conv2", 1, b))] = 0.2  # width ceil(0.2 * 8) = 2
    student = shrink(teacher, actions)
    kept = torch.tensor([1, 3])
    s_stage = student.stages[1]
    assert torch.equal(s_stage[0].shortcut[0].weight, stage[0].shortcut[0].weight[kept])
    assert torch.equal(s_stage[1].bn2.running_var, stage[1].bn2.running_var[kept])
    # The next stage reads only those channels.
    assert torch.equal(student.stages[2][0].conv1.weight, teacher.stages[2][0].conv1.weight[:, kept])


def test_new_shortcut_carries_what_the_identity_carried(tiny_model) -> None:
    teacher = tiny_model(18, width=8)
    layers = prunable_layers(teacher.arch)
    actions = _ones(teacher.arch)
    for b in (0, 1):
        actions[layers.index(LayerRef("conv2", 0, b))] = 0.6  # stage 1 width 5, stem keeps 8
    student = shrink(teacher, actions)
    block = student.stages[0][0]
    assert isinstance(block.shortcut, nn.Sequential)  # the teacher had the identity here
    x = torch.randn(4, 1, 8, 8)
    kept = torch.topk(
        _l1(teacher.stages[0][0].conv2) + _l1(teacher.stages[0][1].conv2), 5
    ).indices.sort().values
    with torch.no_grad():
        # The first block sees the full stem and keeps every mid channel, so its output must be
        # exactly the teacher block's output on the kept channels.
        expected = teacher.stages[0][0](teacher.stem(x))[:, kept]
        got = block(student.stem(x))
    assert torch.allclose(got, expected, atol=1e-6)


def test_the_cutting_validates_its_indices() -> None:
    src, dst = nn.Conv2d(4, 6, 3), nn.Conv2d(2, 3, 3)
    with pytest.raises(SurgeryError, match="conv out"):
        _cut_conv(src, dst, out_idx=torch.tensor([0, 1]), in_idx=torch.tensor([0, 1]))
    with pytest.raises(SurgeryError, match="conv in"):
        _cut_conv(src, dst, out_idx=torch.tensor([0, 1, 5]), in_idx=torch.tensor([0, 4]))
    with pytest.raises(SurgeryError, match="grow"):
        _cut_conv(nn.Conv2d(4, 6, 1), dst, out_idx=torch.tensor([0, 1, 5]), in_idx=torch.tensor([0, 3]))


def test_stem_and_first_stage_share_channels_when_the_identity_stays(tiny_model) -> None:
    teacher = tiny_model(18, width=8)
    layers = prunable_layers(teacher.arch)
    actions = _ones(teacher.arch)
    actions[0] = 0.6  # stem 5 channels ...
    for b in (0, 1):
        actions[layers.index(LayerRef("conv2", 0, b))] = 0.6  # ... and stage 1 width 5: identity stays
    student = shrink(teacher, actions)
    assert isinstance(student.stages[0][0].shortcut, nn.Identity)
    # The identity adds stem channel i to stage channel i, so both must keep the same teacher
    # channels, ranked by the L1 norm summed over the stem and the stage's conv2s.
    scores = _l1(teacher.stem[0]) + _l1(teacher.stages[0][0].conv2) + _l1(teacher.stages[0][1].conv2)
    kept = torch.topk(scores, 5).indices.sort().values
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight[kept])
    for b in (0, 1):
        assert torch.equal(student.stages[0][b].conv2.weight, teacher.stages[0][b].conv2.weight[kept])
        assert torch.equal(student.stages[0][b].conv1.weight, teacher.stages[0][b].conv1.weight[:, kept])
