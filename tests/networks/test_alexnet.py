"""networks.alexnet and networks.alexnet_edits: arch dicts, the built net, its seam, and its edits (eqs. 2-4)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from compression.export import check_parity, export_onnx
from networks import family
from networks.alexnet import FAMILY, AlexNet, alexnet_arch, param_count, validate_arch
from networks.alexnet_edits import derive_arch, flat_columns, layer_infos, shrink
from networks.checkpoint import load_checkpoint, save_checkpoint
from networks.edits import SMALLEST, SurgeryError, l1_filters, top

N_LAYERS = 7  # 5 convs + 2 hidden fc


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # A training job shares this machine; tiny nets gain nothing from more threads.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny(width: float = 0.125, *, input_size: tuple[int, int] = (32, 32), seed: int = 0) -> AlexNet:
    """A seeded tiny AlexNet in eval mode with non-trivial BN, so misplaced statistics show up."""
    torch.manual_seed(seed)
    model = AlexNet(alexnet_arch(in_channels=3, num_classes=10, input_size=input_size, width=width))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _x(h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))


# ---- arch dicts ----------------------------------------------------------------------------------


def test_default_arch_is_the_cifar_alexnet() -> None:
    arch = FAMILY.default_arch(in_channels=3, num_classes=10, input_size=(32, 32))
    assert arch == {
        "family": "alexnet", "in_channels": 3, "num_classes": 10, "input_size": [32, 32],
        "convs": [{"out": 64, "kernel": 5, "pool": True}, {"out": 192, "kernel": 5, "pool": True},
                  {"out": 384, "kernel": 3, "pool": False}, {"out": 256, "kernel": 3, "pool": False},
                  {"out": 256, "kernel": 3, "pool": True}],
        "fc": [1024, 512], "dropout": 0.5,
    }
    assert json.loads(json.dumps(arch)) == arch  # stored in checkpoints and manifests as JSON


def test_width_scales_every_conv_and_fc() -> None:
    arch = FAMILY.default_arch(in_channels=3, num_classes=10, input_size=(32, 32), width=0.5)
    assert [c["out"] for c in arch["convs"]] == [32, 96, 192, 128, 128]
    assert arch["fc"] == [512, 256]
    tiny = FAMILY.default_arch(in_channels=1, num_classes=2, input_size=(32, 32), width=0.001)
    assert [c["out"] for c in tiny["convs"]] == [1] * 5 and tiny["fc"] == [1, 1]  # never 0 channels


def test_unknown_and_bad_options_raise_naming_them() -> None:
    with pytest.raises(family.FamilyError, match="widht"):
        family.default_arch("alexnet", in_channels=3, num_classes=10, input_size=(32, 32), widht=0.5)
    with pytest.raises(TypeError, match="widht"):  # no **options to swallow it
        FAMILY.default_arch(in_channels=3, num_classes=10, input_size=(32, 32), widht=0.5)  # type: ignore[call-arg]
    for width in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="width"):
            alexnet_arch(width=width)


def _malformed() -> list[tuple[str, Any, str]]:
    """(path into the arch, bad value, text the error must contain); path "-key" deletes the key."""
    return [
        ("-convs", None, "'convs'"),
        ("-dropout", None, "'dropout'"),
        ("family", "resnet", "family"),
        ("in_channels", 0, "in_channels"),
        ("num_classes", True, "num_classes"),
        ("input_size", [32], "input_size"),
        ("input_size", [32, 0], r"\['input_size'\]\[1\]"),
        ("convs", [], "convs"),
        ("convs.1.out", -3, r"\['convs'\]\[1\]\['out'\]"),
        ("convs.0.kernel", 4, r"\['convs'\]\[0\]\['kernel'\]"),
        ("convs.2.kernel", 3.0, r"\['convs'\]\[2\]\['kernel'\]"),
        ("convs.0.pool", 1, r"\['convs'\]\[0\]\['pool'\]"),
        ("convs.3.pol", True, r"\['convs'\]\[3\].*unknown \['pol'\]"),
        ("fc", [64, 0], r"\['fc'\]\[1\]"),
        ("fc", 64, "fc"),
        ("dropout", 1.0, "dropout"),
        ("dropout", -0.1, "dropout"),
        ("dropout", False, "dropout"),
    ]


@pytest.mark.parametrize(("path", "value", "message"), _malformed())
def test_validate_names_the_first_malformed_field(path: str, value: Any, message: str) -> None:
    arch = alexnet_arch(width=0.125)
    *parents, leaf = path.lstrip("-").split(".")
    node: Any = arch
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if path.startswith("-"):
        del node[leaf]
    else:
        node[leaf] = value
    with pytest.raises(ValueError, match=message):
        validate_arch(arch)
    if path != "family":  # another family name sends the arch to that family, not to us
        with pytest.raises(ValueError, match=message):
            family.build_model(arch)


def test_input_too_small_for_the_pools_is_rejected() -> None:
    # 32 -> 16 -> 8 -> 4 is fine; 4 -> 2 -> 1 leaves the third 2x2 pool a 1x1 map.
    alexnet_arch(input_size=(8, 8), width=0.125)
    with pytest.raises(ValueError, match=r"\['convs'\]\[4\]\['pool'\].*1x1"):
        alexnet_arch(input_size=(4, 4), width=0.125)
    with pytest.raises(ValueError, match="must be a dict"):
        validate_arch("not a dict")  # type: ignore[arg-type]


# ---- the built network -----------------------------------------------------------------------------


@pytest.mark.parametrize("input_size", [(32, 32), (28, 28), (30, 30), (32, 28)])
def test_cut_points_are_the_stage_outputs(input_size: tuple[int, int]) -> None:
    model = _tiny(input_size=input_size)
    logits, feats = model.forward_features(_x(*input_size))
    assert logits.shape == (2, 10)
    assert [tuple(f.shape[1:]) for f in feats] == FAMILY.cut_points(model.arch)
    assert torch.equal(model(_x(*input_size)), logits)  # forward is forward_features' logits
    if input_size == (32, 32):
        assert [f[1:] for f in FAMILY.cut_points(model.arch)] == [(16, 16), (8, 8), (8, 8), (8, 8), (4, 4)]


def test_classify_continues_from_the_last_stage() -> None:
    model = _tiny()
    logits, feats = model.forward_features(_x())
    torch.testing.assert_close(model.classify(feats[-1]), logits)
    assert isinstance(model.stem, nn.Identity) and len(model.stages) == 5
    assert isinstance(model, family.StagedNet)


@pytest.mark.parametrize("width", [1.0, 0.5, 0.125, 0.01])
def test_param_count_matches_the_built_network(width: float) -> None:
    arch = alexnet_arch(width=width)
    assert param_count(arch) == _numel(AlexNet(arch))


def test_param_count_of_odd_archs() -> None:
    arch = alexnet_arch(in_channels=1, num_classes=7, input_size=(30, 28), width=0.125)
    arch["fc"] = []  # logits straight from the flattened map
    arch["convs"][2]["kernel"] = 1
    arch["dropout"] = 0
    model = AlexNet(arch)
    assert param_count(arch) == _numel(model)
    assert model(torch.randn(2, 1, 30, 28)).shape == (2, 7)


def test_full_size_alexnet_is_a_few_million_parameters() -> None:
    arch = alexnet_arch()
    # convs ~2.5M + fc (256*4*4*1024 + 1024*512) ~4.7M: the CIFAR AlexNet's size class.
    assert 6_000_000 < param_count(arch) < 8_500_000
    assert family.model_bytes(arch) == 4 * param_count(arch)


def test_describe_rows() -> None:
    rows = FAMILY.describe(alexnet_arch())
    assert rows[0] == {"stage": "1", "layers": 1, "width": 64, "detail": "k=5, pool"}
    assert rows[2] == {"stage": "3", "layers": 1, "width": 384, "detail": "k=3"}
    assert rows[-1] == {"stage": "fc", "layers": 2, "width": 1024, "detail": "1024-512"}
    assert len(rows) == 6


# ---- compression edits ---------------------------------------------------------------------------


def test_prunable_layers_and_their_eq2_states() -> None:
    model = _tiny()
    infos = layer_infos(model.arch)
    assert [i.name for i in infos] == [f"stages.{i}.conv" for i in range(5)] + ["hidden.0.fc", "hidden.1.fc"]
    assert all(isinstance(model.get_submodule(i.name), nn.Conv2d | nn.Linear) for i in infos)
    assert [i.kind for i in infos] == [0.0] * 5 + [1.0] * 2
    assert [i.stride for i in infos] == [2, 2, 1, 1, 2, 1, 1]  # a pooling stage halves the map
    assert [(i.kernel, i.padding) for i in infos] == [(5, 2), (5, 2), (3, 1), (3, 1), (3, 1), (1, 0), (1, 0)]
    assert [i.out_channels for i in infos] == [8, 24, 48, 32, 32, 128, 64]
    states = family.layer_states(model.arch)
    assert states.shape == (N_LAYERS, 5) and states.min() >= 0.0 and states.max() <= 1.0


def test_derive_arch_scales_widths_and_kernels() -> None:
    arch = alexnet_arch(width=0.5)
    before = copy.deepcopy(arch)
    assert derive_arch(arch, [1.0] * N_LAYERS) == arch
    student = derive_arch(arch, [0.0, 0.2, 0.4, 0.6, 0.8, 0.0, np.float32(0.6)])
    assert arch == before  # pure
    # φ = 0 is the smallest width (nothing is removable); kernels 5 -> 1, 1, and 3 -> 3, 3, 3.
    assert [c["out"] for c in student["convs"]] == [7, 20, 77, 77, 103]
    assert [c["kernel"] for c in student["convs"]] == [1, 1, 3, 3, 3]
    assert [c["pool"] for c in student["convs"]] == [c["pool"] for c in arch["convs"]]
    assert student["fc"] == [103, 154]
    assert derive_arch(arch, [0.0] * N_LAYERS) == derive_arch(arch, [SMALLEST] * N_LAYERS)
    assert FAMILY.cut_points(student)[-1][1:] == FAMILY.cut_points(arch)[-1][1:]  # spatial shapes kept


@pytest.mark.parametrize("actions", [[1.0] * 6, [0.3] * N_LAYERS])
def test_derive_arch_rejects_bad_actions(actions: list[float]) -> None:
    with pytest.raises(ValueError, match="action"):
        derive_arch(alexnet_arch(width=0.125), actions)


def test_all_ones_student_reproduces_the_teacher() -> None:
    teacher = _tiny()
    student = shrink(teacher, [1.0] * N_LAYERS, inherit=True)
    assert student is not teacher and student.arch == teacher.arch and not student.training
    with torch.no_grad():
        torch.testing.assert_close(student(_x()), teacher(_x()), atol=1e-5, rtol=0)


def test_shrunk_student_inherits_the_teachers_largest_filters() -> None:
    teacher = _tiny(width=0.25)
    actions = [0.4, 0.6, 0.8, 1.0, 0.4, 0.6, 0.2]
    student = shrink(teacher, actions, inherit=True)
    assert _numel(student) < _numel(teacher) and _numel(student) == param_count(student.arch)
    with torch.no_grad():
        assert student(_x()).shape == (2, 10)
    t, s = teacher.stages, student.stages
    # conv 1: 5x5 -> 3x3 (φ = 0.4), its largest-L1 filters, the kernel cropped centrally.
    idx0 = top(l1_filters(t[0].conv), s[0].conv.out_channels)
    assert s[0].conv.kernel_size == (3, 3)
    torch.testing.assert_close(s[0].conv.weight, t[0].conv.weight[idx0][:, :, 1:4, 1:4], atol=0, rtol=0)
    torch.testing.assert_close(s[0].bn.running_var, t[0].bn.running_var[idx0], atol=0, rtol=0)
    # conv 2 reads only the channels conv 1 kept.
    idx1 = top(l1_filters(t[1].conv), s[1].conv.out_channels)
    torch.testing.assert_close(s[1].conv.weight, t[1].conv.weight[idx1][:, idx0][:, :, 1:4, 1:4], atol=0, rtol=0)
    # The first fc keeps the columns of the last conv's kept channels in the (C, 4, 4) flattening.
    idx4 = top(l1_filters(t[4].conv), s[4].conv.out_channels)
    cols = flat_columns(idx4, 16)
    assert cols[:17].tolist() == [int(idx4[0]) * 16 + i for i in range(16)] + [int(idx4[1]) * 16]
    rows0 = top(l1_filters(teacher.hidden[0].fc), student.hidden[0].fc.out_features)
    torch.testing.assert_close(student.hidden[0].fc.weight, teacher.hidden[0].fc.weight[rows0][:, cols],
                               atol=0, rtol=0)
    torch.testing.assert_close(student.hidden[0].bn.bias, teacher.hidden[0].bn.bias[rows0], atol=0, rtol=0)
    # The class layer keeps every class and follows the last hidden fc's rows.
    rows1 = top(l1_filters(teacher.hidden[1].fc), student.hidden[1].fc.out_features)
    torch.testing.assert_close(student.fc.weight, teacher.fc.weight[:, rows1], atol=0, rtol=0)
    torch.testing.assert_close(student.fc.bias, teacher.fc.bias, atol=0, rtol=0)


def test_smaller_actions_give_fewer_parameters() -> None:
    teacher = _tiny()
    sizes = [_numel(shrink(teacher, [phi] * N_LAYERS, inherit=False)) for phi in (1.0, 0.8, 0.6, 0.4, 0.2)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


def test_shrink_keeps_the_teachers_mode_and_leaves_it_untouched() -> None:
    teacher = _tiny().train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = shrink(teacher, [0.2] * N_LAYERS, inherit=False)
    assert student.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_inheriting_into_a_wrong_arch_is_a_surgery_error() -> None:
    from networks.alexnet_edits import _inherit

    teacher = _tiny()
    arch = copy.deepcopy(teacher.arch)
    arch["convs"][2]["kernel"] = 5  # a 3x3 teacher kernel cannot grow into a 5x5 one
    with pytest.raises(SurgeryError, match="grow"):
        _inherit(teacher, AlexNet(arch))


# ---- the seam, ONNX and checkpoints ------------------------------------------------------------------


def test_the_seam_dispatches_to_alexnet() -> None:
    arch = family.default_arch("alexnet", in_channels=3, num_classes=10, input_size=(32, 32), width=0.125)
    assert family.family_of(arch) is FAMILY and "alexnet" in family.families()
    torch.manual_seed(0)
    teacher = family.build_model(arch)
    assert isinstance(teacher, AlexNet)
    assert family.model_bytes(arch) == 4 * _numel(teacher)
    assert family.cut_points(arch) == FAMILY.cut_points(arch)
    assert family.input_shape(arch) == (3, 32, 32)
    assert [i.name for i in family.prunable_layers(arch)] == [i.name for i in layer_infos(arch)]
    actions = [0.6] * N_LAYERS
    student = family.shrink(teacher.eval(), actions)
    assert student.arch == family.derive_arch(arch, actions) == derive_arch(arch, actions)
    assert isinstance(student, AlexNet)
    assert family.describe(arch) == FAMILY.describe(arch)


@pytest.mark.parametrize("input_size", [(32, 32), (30, 30)])
def test_onnx_export_matches_torch(tmp_path: Path, input_size: tuple[int, int]) -> None:
    model = _tiny(input_size=input_size)
    path = export_onnx(model, tmp_path / "alexnet.onnx", input_shape=(3, *input_size))
    assert check_parity(model, path, _x(*input_size).numpy()) <= 1e-4


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _tiny()
    save_checkpoint(model, tmp_path / "alexnet.pt", note="tiny")
    loaded = load_checkpoint(tmp_path / "alexnet.pt")  # rebuilt through the seam from arch["family"]
    assert isinstance(loaded, AlexNet) and loaded.arch == model.arch
    with torch.no_grad():
        torch.testing.assert_close(loaded(_x()), model(_x()), atol=0, rtol=0)
