"""compression.data and compression.teacher: loaders, training, evaluation, checkpoints, devices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from compression import resume
from compression.data import AUGMENT_PAD, AUGMENTS, make_loader
from compression.precision import autocast, resolve_precision
from compression.teacher import (
    DeviceUnavailableError,
    TrainConfig,
    evaluate,
    predict_logits,
    resolve_device,
    train_model,
)
from networks.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from networks.resnet import build_model, resnet_arch
from shared.datasets import normalize


@dataclass(frozen=True)
class _Split:
    x: np.ndarray
    y: np.ndarray


# ---- data ----------------------------------------------------------------------------------------


def test_loader_yields_normalised_batches_like_shared_normalize(digits) -> None:
    loader = make_loader(digits.val, digits.mean, digits.std, batch_size=64, shuffle=False)
    xs, ys = zip(*loader, strict=True)
    assert xs[0].dtype == torch.float32 and ys[0].dtype == torch.int64
    assert xs[0].shape == (64, 1, 8, 8)
    x = torch.cat(xs).numpy()
    np.testing.assert_allclose(x, normalize(digits.val.x, digits.mean, digits.std), atol=1e-6)
    np.testing.assert_array_equal(torch.cat(ys).numpy(), digits.val.y)


def test_shuffle_is_a_seeded_permutation(digits) -> None:
    def epoch_labels(seed: int) -> list[np.ndarray]:
        loader = make_loader(digits.train, digits.mean, digits.std, batch_size=100, shuffle=True, seed=seed)
        return [torch.cat([y for _, y in loader]).numpy() for _ in range(2)]

    first, second = epoch_labels(3)
    assert sorted(first.tolist()) == sorted(digits.train.y.tolist())  # each sample once per epoch
    assert not np.array_equal(first, second)  # epochs differ
    again = epoch_labels(3)
    assert np.array_equal(first, again[0]) and np.array_equal(second, again[1])  # same seed, same run
    assert not np.array_equal(first, epoch_labels(4)[0])


def test_augment_only_shifts_images_by_at_most_the_pad() -> None:
    rng = np.random.default_rng(0)
    x_raw = rng.integers(1, 255, size=(32, 2, 6, 7), dtype=np.uint8)  # no zeros: padding is visible
    split = _Split(x_raw, np.arange(32, dtype=np.int64))
    mean, std = (100.0, 50.0), (40.0, 30.0)
    loader = make_loader(split, mean, std, batch_size=32, shuffle=False, augment=True, seed=1)
    x, y = next(iter(loader))
    assert x.shape == (32, 2, 6, 7) and torch.equal(y, torch.arange(32))
    p = AUGMENT_PAD
    clean = torch.from_numpy(normalize(x_raw, mean, std))
    background = (-torch.tensor(mean) / torch.tensor(std)).view(2, 1, 1)
    shifts = set()
    for i in range(32):
        padded = background.expand(2, 6 + 2 * p, 7 + 2 * p).clone()
        padded[:, p:p + 6, p:p + 7] = clean[i]
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.allclose(padded[:, dy:dy + 6, dx:dx + 7], x[i], atol=1e-6)]
        assert matches, f"sample {i} is not a shift of its image"
        shifts.add(matches[0])
    assert len(shifts) > 5  # offsets really are random


def test_crop_flip_crops_within_pad_4_and_mirrors_about_half() -> None:
    rng = np.random.default_rng(0)
    x_raw = rng.integers(1, 255, size=(64, 3, 5, 5), dtype=np.uint8)
    split = _Split(x_raw, np.arange(64, dtype=np.int64))
    mean, std = (100.0, 90.0, 80.0), (40.0, 30.0, 20.0)
    x, _ = next(iter(make_loader(split, mean, std, batch_size=64, shuffle=False, augment="crop-flip", seed=2)))
    p = AUGMENTS["crop-flip"][0]
    assert p == 4
    clean = torch.from_numpy(normalize(x_raw, mean, std))
    background = (-torch.tensor(mean) / torch.tensor(std)).view(3, 1, 1)
    mirrored = 0
    for i in range(64):
        padded = background.expand(3, 5 + 2 * p, 5 + 2 * p).clone()
        padded[:, p:p + 5, p:p + 5] = clean[i]
        crops = [padded[:, dy:dy + 5, dx:dx + 5] for dy in range(2 * p + 1) for dx in range(2 * p + 1)]
        plain = any(torch.allclose(c, x[i], atol=1e-6) for c in crops)
        flipped = any(torch.allclose(c.flip(2), x[i], atol=1e-6) for c in crops)
        assert plain or flipped, f"sample {i} is neither a crop nor a mirrored crop of its image"
        mirrored += flipped and not plain
    assert 16 <= mirrored <= 48  # a fair coin per image


def test_augment_names_and_booleans() -> None:
    split = _Split(np.zeros((4, 1, 3, 3), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="augment must be one of"):
        make_loader(split, (0.0,), (1.0,), batch_size=2, shuffle=False, augment="rotate")
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="rotate")


def test_precision_auto_is_bf16_only_where_native() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", cpu)
    with autocast(cpu, "bf16"):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32


def test_bf16_training_learns_digits(digits) -> None:
    torch.manual_seed(0)
    model = build_model(resnet_arch(18, in_channels=1, num_classes=10, width=8, input_size=(8, 8)))
    history = train_model(model, digits, TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu",
                                                     precision="bf16"), progress=False)
    assert history[-1]["precision"] == "bf16"
    assert next(model.parameters()).dtype == torch.float32  # autocast never changes the weights
    assert evaluate(model, digits.test, digits.mean, digits.std) > 0.8


def test_a_stopped_run_resumes_to_the_same_weights(digits, tmp_path: Path, monkeypatch) -> None:
    cfg = TrainConfig(epochs=3, batch_size=128, lr=0.05, device="cpu", precision="fp32", augment=True, seed=4)
    arch = resnet_arch(18, in_channels=1, num_classes=10, width=4, input_size=(8, 8))

    def fresh():
        torch.manual_seed(0)
        return build_model(arch)

    whole = fresh()
    train_model(whole, digits, cfg, progress=False)

    state = tmp_path / "state.pt"
    save = resume.save_state

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # the run is killed right after its state reached the disk

    monkeypatch.setattr(resume, "save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_model(fresh(), digits, cfg, progress=False, state_path=state)
    assert state.is_file()
    monkeypatch.setattr(resume, "save_state", save)
    resumed = fresh()
    history = train_model(resumed, digits, cfg, progress=False, state_path=state)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert not state.exists()  # a finished run leaves no state behind
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # A state saved under other settings is not resumed.
    other = TrainConfig(epochs=3, batch_size=64, lr=0.05, device="cpu", precision="fp32")
    model = fresh()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    resume.save_state(state, key="a", epoch=1, model=model, optimizer=optimizer, scheduler=None,
                      generator=torch.Generator(), history=[{"epoch": 1}])
    assert resume.load_state(state, key="b", model=model, optimizer=optimizer, scheduler=None,
                             generator=torch.Generator()) == (0, [])
    assert train_model(fresh(), digits, other, progress=False, state_path=state)[0]["epoch"] == 1


def test_loader_rejects_mismatched_statistics(digits) -> None:
    with pytest.raises(ValueError, match="one value per channel"):
        make_loader(digits.val, (0.0, 1.0), (1.0, 1.0), batch_size=8, shuffle=False)
    with pytest.raises(ValueError, match="std must be positive"):
        make_loader(digits.val, (0.0,), (0.0,), batch_size=8, shuffle=False)


# ---- config and devices --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("lr", 0.0), ("optimizer", "rmsprop"), ("schedule", "step"), ("label_smoothing", 1.0),
     ("momentum", 1.0), ("batch_size", 0), ("weight_decay", -1.0)],
)
def test_train_config_rejects_bad_values_by_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="'cuda'"):
            resolve_device("cuda")
    with pytest.raises(DeviceUnavailableError, match="cuda:99"):
        resolve_device("cuda:99")


# ---- training and evaluation ---------------------------------------------------------------------


def test_teacher_training_smoke_on_digits(digits) -> None:
    torch.manual_seed(0)
    model = build_model(resnet_arch(18, in_channels=1, num_classes=10, width=8, input_size=(8, 8)))
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu", seed=0)
    history = train_model(model, digits, cfg, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]) >= {"loss", "val_accuracy", "train_accuracy", "lr", "seconds"}
    assert history[1]["loss"] < history[0]["loss"]
    assert not model.training
    test_acc = evaluate(model, digits.test, digits.mean, digits.std)
    assert test_acc > 0.8, test_acc  # chance is 0.1; this run reaches about 0.94
    assert history[-1]["val_accuracy"] > 0.8


def test_adam_cosine_label_smoothing_and_augment_train_too(digits) -> None:
    torch.manual_seed(0)
    model = build_model(resnet_arch(18, in_channels=1, width=4, input_size=(8, 8)))
    cfg = TrainConfig(epochs=1, batch_size=128, lr=3e-3, optimizer="adam", schedule="cosine",
                      label_smoothing=0.1, augment=True, device="cpu")
    history = train_model(model, digits, cfg, progress=False)
    assert history[0]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine annealed to 0 at the last step
    assert np.isfinite(history[0]["loss"])


def test_predict_logits_and_evaluate_agree(digits, tiny_model) -> None:
    model = tiny_model(18)
    model.train()
    logits = predict_logits(model, digits.test.x, digits.mean, digits.std, batch_size=100)
    assert logits.shape == (len(digits.test.y), 10) and logits.dtype == np.float32
    assert model.training  # mode restored
    acc = evaluate(model, digits.test, digits.mean, digits.std, batch_size=64)
    assert acc == pytest.approx(float((logits.argmax(1) == digits.test.y).mean()))
    model.eval()
    with torch.no_grad():
        direct = model(torch.from_numpy(normalize(digits.test.x[:7], digits.mean, digits.std))).numpy()
    np.testing.assert_allclose(logits[:7], direct, atol=1e-5)


def test_predict_logits_rejects_bad_shapes(tiny_model) -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        predict_logits(tiny_model(18), np.zeros((3, 8, 8), np.uint8), (0.0,), (1.0,))
    with pytest.raises(ValueError, match="no samples"):
        predict_logits(tiny_model(18), np.zeros((0, 1, 8, 8), np.uint8), (0.0,), (1.0,))


# ---- checkpoints ---------------------------------------------------------------------------------


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path: Path, tiny_model) -> None:
    model = tiny_model(34)
    path = tmp_path / "sub" / "teacher.pt"
    save_checkpoint(model, path, val_accuracy=0.9, history=[{"epoch": 1}])
    restored = load_checkpoint(path)
    assert restored.arch == model.arch and not restored.training
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(restored(x), model(x))
    ckpt = read_checkpoint(path)
    assert ckpt["val_accuracy"] == 0.9 and ckpt["history"] == [{"epoch": 1}]
    assert not list(tmp_path.glob("**/*.tmp"))


def test_checkpoint_errors_name_the_file(tmp_path: Path, tiny_model) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_checkpoint(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"corrupt\.pt"):
        load_checkpoint(corrupt)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {}}, wrong)
    with pytest.raises(CheckpointError, match=r"wrong\.pt"):
        load_checkpoint(wrong)
    mismatch = tmp_path / "mismatch.pt"
    torch.save({"arch": resnet_arch(18, width=4), "state_dict": tiny_model(18).state_dict()}, mismatch)
    with pytest.raises(CheckpointError, match=r"mismatch\.pt"):
        load_checkpoint(mismatch)
    with pytest.raises(ValueError, match="arch"):
        save_checkpoint(tiny_model(18), tmp_path / "x.pt", arch={})
