"""compression.distill: SP and Hinton losses against hand computations, and a real digits run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.distill import DistillConfig, distill, hinton_loss, sp_gram, sp_loss
from compression.surgery import prunable_layers, shrink
from networks.resnet import ResNet, build_model, resnet_arch
from shared.datasets import Dataset


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _np_gram(feat: np.ndarray) -> np.ndarray:
    q = feat.reshape(feat.shape[0], -1)
    g = q @ q.T
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def test_sp_gram_is_row_normalised_q_qt() -> None:
    feat = _rand(4, 3, 2, 2, seed=0)
    g = sp_gram(feat)
    assert g.shape == (4, 4)
    np.testing.assert_allclose(g.numpy(), _np_gram(feat.numpy()), rtol=1e-12)
    np.testing.assert_allclose(g.norm(dim=1).numpy(), np.ones(4), rtol=1e-12)


def test_sp_loss_matches_a_hand_computation_over_two_stages() -> None:
    # b = 3; the student's stages have fewer channels than the teacher's, as a shrunken student does.
    t1, t2 = _rand(3, 2, 2, 2, seed=1), _rand(3, 4, 1, 1, seed=2)
    s1, s2 = _rand(3, 1, 2, 2, seed=3), _rand(3, 2, 1, 1, seed=4)
    expected = 0.0
    for ft, fs in ((t1, s1), (t2, s2)):
        q_t, q_s = ft.numpy().reshape(3, -1), fs.numpy().reshape(3, -1)
        g_t, g_s = q_t @ q_t.T, q_s @ q_s.T
        g_t = g_t / np.sqrt((g_t**2).sum(axis=1))[:, None]
        g_s = g_s / np.sqrt((g_s**2).sum(axis=1))[:, None]
        expected += ((g_t - g_s) ** 2).sum() / 3**2
    assert sp_loss([s1, s2], [t1, t2]).item() == pytest.approx(expected, rel=1e-12)
    assert expected > 0


def test_sp_loss_is_zero_for_identical_or_rescaled_features() -> None:
    feats = [_rand(5, 3, 4, 4, seed=5), _rand(5, 6, 2, 2, seed=6)]
    assert sp_loss(feats, feats).item() == pytest.approx(0.0, abs=1e-12)
    # Row normalisation makes G blind to a layer's activation scale.
    scaled = [7.0 * f for f in feats]
    assert sp_loss(scaled, feats).item() == pytest.approx(0.0, abs=1e-12)


def test_sp_loss_rejects_mismatched_stages_and_batches() -> None:
    a, b = _rand(3, 2, seed=0), _rand(4, 2, seed=1)
    with pytest.raises(ValueError, match="student 1 and teacher 2"):
        sp_loss([a], [a, a])
    with pytest.raises(ValueError, match="stage 0: student batch 3 != teacher batch 4"):
        sp_loss([a], [b])


def test_hinton_loss_is_zero_for_identical_logits_and_matches_t2_kl() -> None:
    logits_t, logits_s = _rand(4, 5, seed=7), _rand(4, 5, seed=8)
    assert hinton_loss(logits_t, logits_t, temperature=4.0).item() == 0.0
    temperature = 2.0
    p_t = torch.softmax(logits_t / temperature, dim=1).numpy()
    p_s = torch.softmax(logits_s / temperature, dim=1).numpy()
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1).mean()
    got = hinton_loss(logits_s, logits_t, temperature=temperature).item()
    assert got == pytest.approx(temperature**2 * kl, rel=1e-10)
    assert got > 0


def test_hinton_loss_rejects_bad_temperature_and_shapes() -> None:
    x = _rand(2, 3, seed=0)
    with pytest.raises(ValueError, match=r"temperature must be > 0, got 0\.0"):
        hinton_loss(x, x, temperature=0.0)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        hinton_loss(x, _rand(2, 4, seed=1), temperature=1.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("method", "fitnet", "method must be one of"), ("optimizer", "rmsprop", "optimizer must be one of"),
     ("max_steps", 0, "max_steps must be None or >= 1, got 0"), ("alpha", 1.5, "alpha must be in"),
     ("epochs", 0, "epochs must be >= 1, got 0")],
)
def test_distill_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DistillConfig(**{field: value})


def _tiny_teacher(seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    return build_model(resnet_arch(18, in_channels=1, num_classes=10, width=4, input_size=(8, 8))).eval()


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["sp", "hinton", "none"])
def test_distill_trains_the_student_and_leaves_the_teacher_alone(digits: Dataset, method: str) -> None:
    teacher = _tiny_teacher()
    student = shrink(teacher, [0.6] * len(prunable_layers(teacher.arch)), inherit=False)
    teacher_before, student_before = _params(teacher), _params(student)
    cfg = DistillConfig(method=method, epochs=1, batch_size=64, device="cpu")
    history = distill(student, teacher, digits, cfg, progress=False)

    assert len(history) == 1
    row = history[0]
    assert row["epoch"] == 1 and row["steps"] == -(-len(digits.train.y) // 64)
    assert 0.0 <= row["val_accuracy"] <= 1.0 and np.isfinite(row["loss"])
    assert (row["kd"] == 0.0) == (method == "none")
    assert any(not torch.equal(v, student_before[k]) for k, v in student.state_dict().items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training and not student.training


def test_distill_respects_max_steps_and_train_subset(digits: Dataset) -> None:
    teacher = _tiny_teacher()
    student = shrink(teacher, [0.4] * len(prunable_layers(teacher.arch)))
    cfg = DistillConfig(epochs=5, max_steps=7, batch_size=32, train_subset=100, device="cpu")
    history = distill(student, teacher, digits, cfg, progress=False)
    # 100 samples / 32 = 4 steps per epoch, so the 7-step cap ends in the second, partial epoch.
    assert [row["steps"] for row in history] == [4, 7]
    assert [row["epoch"] for row in history] == [1, 2]


def test_distill_with_cross_entropy_learns_digits(digits: Dataset) -> None:
    teacher = _tiny_teacher()
    student = shrink(teacher, [1.0] * len(prunable_layers(teacher.arch)), inherit=False)
    history = distill(student, teacher, digits, DistillConfig(method="none", epochs=2, batch_size=64,
                                                              device="cpu"), progress=False)
    assert history[-1]["val_accuracy"] > 0.5  # chance is 0.1


def test_a_stopped_distillation_resumes_to_the_same_student(digits: Dataset, tmp_path, monkeypatch) -> None:
    from compression import resume

    teacher = _tiny_teacher()
    actions = [0.6] * len(prunable_layers(teacher.arch))
    cfg = DistillConfig(epochs=3, batch_size=128, device="cpu", precision="fp32", augment="crop-flip", seed=2)
    whole = shrink(teacher, actions)
    distill(whole, teacher, digits, cfg, progress=False)

    save, state = resume.save_state, tmp_path / "distill.pt"

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(resume, "save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        distill(shrink(teacher, actions), teacher, digits, cfg, progress=False, state_path=state)
    monkeypatch.setattr(resume, "save_state", save)
    resumed = shrink(teacher, actions)
    history = distill(resumed, teacher, digits, cfg, progress=False, state_path=state)
    assert [row["epoch"] for row in history] == [1, 2, 3] and not state.exists()
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bf16_distillation_keeps_float32_weights_and_losses(digits: Dataset) -> None:
    teacher = _tiny_teacher()
    student = shrink(teacher, [0.6] * len(prunable_layers(teacher.arch)))
    history = distill(student, teacher, digits, DistillConfig(epochs=1, batch_size=64, device="cpu",
                                                              precision="bf16"), progress=False)
    assert np.isfinite(history[0]["loss"]) and history[0]["kd"] > 0
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert student.stem[0].weight.is_contiguous()  # back to NCHW for checkpoints and ONNX export
