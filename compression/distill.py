"""Knowledge distillation from the teacher into a compressed student.

Two losses, both against a frozen teacher (eval mode, no grad):

* similarity-preserving KD (Tung & Mori, ICCV 2019), the default: for every matched stage output the
  batch's (b, b) similarity matrix G = Q·Qᵀ (Q = activations flattened per sample) is row-normalised,
  and the student is pulled towards the teacher's G. Because G is (b, b) whatever the layer width,
  it matches a shrunken student to its teacher with no adapter layers.
* Hinton et al. (2015) soft-target KD: T²·KL(softmax(t/T) ‖ softmax(s/T)) mixed with cross-entropy.

``distill`` serves both the short per-episode budget of the RL search (``max_steps``,
``train_subset``) and the final full distillation of the chosen student.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import field_validator, model_validator
from torch import Tensor, nn
from tqdm.auto import tqdm

from compression import resume
from compression.data import augment_name, loader_generator, make_loader
from compression.precision import PRECISIONS, autocast, channels_last, resolve_precision, to_channels_last
from compression.teacher import TrainConfig, build_optimizer, evaluate, resolve_device
from shared.run_config import ConfigModel

if TYPE_CHECKING:
    from shared.datasets import Dataset, Split

log = logging.getLogger(__name__)

METHODS = ("sp", "hinton", "none")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")


def sp_gram(feat: Tensor) -> Tensor:
    """Row-normalised batch similarity (Tung & Mori eqs. 1-2): (b, ...) -> (b, b)."""
    if feat.ndim < 2 or feat.shape[0] == 0:
        raise ValueError(f"sp_gram needs a (b>0, ...) batch of activations, got shape {tuple(feat.shape)}")
    # float32 whatever the training precision: a bfloat16 Gram of thousands of products loses the
    # small differences between samples that SP-KD is about.
    q = feat.reshape(feat.shape[0], -1)  # (b, C*H*W)
    if q.dtype in (torch.bfloat16, torch.float16):
        q = q.float()
    g = q @ q.t()  # (b, b)
    # Row-wise L2 normalisation makes G independent of the layer's width and activation scale.
    return F.normalize(g, p=2.0, dim=1)


def sp_loss(feats_s: Sequence[Tensor], feats_t: Sequence[Tensor]) -> Tensor:
    """Σ over matched stages of ‖G_T − G_S‖²_F / b² (Tung & Mori eq. 3)."""
    if len(feats_s) != len(feats_t) or len(feats_s) == 0:
        raise ValueError(
            f"sp_loss needs the same non-zero number of stages, got student {len(feats_s)} "
            f"and teacher {len(feats_t)}"
        )
    total = feats_s[0].new_zeros(())
    for stage, (fs, ft) in enumerate(zip(feats_s, feats_t, strict=True)):
        b = fs.shape[0]
        if ft.shape[0] != b:
            raise ValueError(f"stage {stage}: student batch {b} != teacher batch {ft.shape[0]}")
        diff = sp_gram(ft) - sp_gram(fs)  # (b, b)
        total = total + diff.pow(2).sum() / (b * b)
    return total


def hinton_loss(logits_s: Tensor, logits_t: Tensor, *, temperature: float) -> Tensor:
    """T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (Hinton et al. 2015).

    The T² factor keeps the soft-target gradients on the same scale as the hard-label ones.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits_s.shape != logits_t.shape or logits_s.ndim != 2:
        raise ValueError(
            f"hinton_loss needs two (b, K) logit tensors of one shape, got {tuple(logits_s.shape)} "
            f"and {tuple(logits_t.shape)}"
        )
    log_p_s = F.log_softmax(logits_s / temperature, dim=1)
    log_p_t = F.log_softmax(logits_t / temperature, dim=1)
    # log_target=True computes p_t·(log p_t − log p_s) directly: exactly 0 for identical logits.
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


class DistillConfig(ConfigModel):
    """Knowledge-distillation run settings."""

    method: Literal["sp", "hinton", "none"] = "sp"
    """distillation loss added to cross-entropy: "sp" (Tung & Mori), "hinton", or "none" (plain CE)."""
    epochs: int = 20
    """passes over the (sub)set of training data."""
    max_steps: int | None = None
    """if set, stop after this many optimiser steps (the RL search's short per-episode budget)."""
    batch_size: int = 128
    """training mini-batch size; also the b of the SP Gram matrices."""
    lr: float = 0.05
    """peak learning rate."""
    optimizer: Literal["sgd", "adam"] = "sgd"
    """"sgd" (Nesterov momentum) or "adam" (AdamW), built by compression.teacher.build_optimizer."""
    momentum: float = 0.9
    """SGD momentum (ignored by adam)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """learning-rate schedule over all steps of the run."""
    weight_decay: float = 5e-4
    """L2 weight decay."""
    gamma: float = 3000.0
    """SP loss weight γ: Tung & Mori's CIFAR-10 value, kept for the search's short episodes. The build's
    final distillation and its cross-fit students default to 300 (edgecloud.presets.BUILD_DEFAULTS), which
    distilled better students on digits and MNIST (docs/results.md, "SP-KD weight")."""
    alpha: float = 0.9
    """Hinton only: weight of the soft-target loss; cross-entropy gets 1 − alpha."""
    temperature: float = 4.0
    """Hinton only: softmax temperature T."""
    augment: bool | str = False
    """training-time augmentation (compression.data.AUGMENTS): "none", "shift" (True: pad 2, crop back at a
    random offset) or "crop-flip" (pad 4 + horizontal flip, for natural images)."""
    device: str = "auto"
    """torch device for student and teacher, resolved by compression.teacher.resolve_device."""
    precision: str = "auto"
    """training arithmetic (compression.precision): "fp32", "bf16" (autocast) or "auto" (bf16 where native)."""
    seed: int = 0
    """seed for the training subset, batch order and augmentation."""
    train_subset: int | None = None
    """if set, distil on this many training samples drawn once with `seed` (per-episode budget)."""
    eval_batch_size: int = 512
    """batch size for the validation pass after each epoch."""

    @field_validator("method", "optimizer", "schedule", mode="before")
    @classmethod
    def _one_of(cls, value: Any, info: Any) -> Any:
        # Before the Literal check, so the message names the field and its choices.
        choices = {"method": METHODS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}[info.field_name]
        if value not in choices:
            raise ValueError(f"{info.field_name} must be one of {choices}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "train_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value}")
        if self.lr <= 0 or self.weight_decay < 0 or self.gamma < 0 or self.temperature <= 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, gamma >= 0, temperature > 0; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, gamma={self.gamma}, temperature={self.temperature}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        augment_name(self.augment)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        return self


def _train_split(dataset: Dataset, cfg: DistillConfig) -> Split:
    train = dataset.train
    if cfg.train_subset is None or cfg.train_subset >= len(train.y):
        return train
    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.permutation(len(train.y))[: cfg.train_subset])
    return dataclasses.replace(train, x=train.x[idx], y=train.y[idx])


def _make_optimizer(params: Sequence[nn.Parameter], cfg: DistillConfig) -> torch.optim.Optimizer:
    # The teacher's optimiser factory, so teacher training and distillation step alike.
    train_cfg = TrainConfig(lr=cfg.lr, optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                            momentum=cfg.momentum)
    return build_optimizer(params, train_cfg)


def _lr_factor(step: int, total_steps: int, schedule: str) -> float:
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def _batch_loss(
    student: nn.Module, teacher: nn.Module, x: Tensor, y: Tensor, cfg: DistillConfig, *, precision: str = "fp32"
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(total loss, cross-entropy, KD term, student logits) for one batch; the networks run at ``precision``,
    the losses in float32."""
    device = x.device
    if cfg.method == "sp":
        with autocast(device, precision):
            logits_s, feats_s = student.forward_features(x)
            with torch.no_grad():
                _, feats_t = teacher.forward_features(x)
        logits_s = logits_s.float()
        kd = sp_loss(feats_s, feats_t)
        ce = F.cross_entropy(logits_s, y)
        return ce + cfg.gamma * kd, ce, kd, logits_s
    with autocast(device, precision):
        logits_s = student(x)
    logits_s = logits_s.float()
    ce = F.cross_entropy(logits_s, y)
    if cfg.method == "hinton":
        with torch.no_grad(), autocast(device, precision):
            logits_t = teacher(x)
        kd = hinton_loss(logits_s, logits_t.float(), temperature=cfg.temperature)
        return (1.0 - cfg.alpha) * ce + cfg.alpha * kd, ce, kd, logits_s
    return ce, ce, ce.new_zeros(()), logits_s


def distill(
    student: nn.Module, teacher: nn.Module, dataset: Dataset, cfg: DistillConfig, *, progress: bool = True,
    state_path: Path | None = None,
) -> list[dict]:
    """Train ``student`` in place against the frozen ``teacher``; return one dict per epoch.

    Each history entry holds epoch, steps (cumulative), lr, loss, ce, kd, train_accuracy and
    val_accuracy. With ``max_steps`` the last epoch may be partial; it is still evaluated, so the
    last entry always describes the returned student. Seeds torch's global RNG with ``cfg.seed``.
    With ``state_path`` a stopped run resumes after its last completed epoch (compression.resume).
    """
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    train = _train_split(dataset, cfg)
    loader = make_loader(
        train, dataset.mean, dataset.std, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
        augment=cfg.augment,
    )
    if len(loader) == 0:
        raise ValueError(f"no training batches: train split has {len(train.y)} samples")
    total_steps = cfg.epochs * len(loader)
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    to_channels_last(student.to(device))
    teacher_was_training = teacher.training
    # The teacher only runs under no_grad, so its parameters need no freezing; eval() fixes its BN.
    to_channels_last(teacher.to(device)).eval()
    optimizer = _make_optimizer(list(student.parameters()), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, total_steps, cfg.schedule)
    )
    key = json.dumps({"cfg": cfg.model_dump(mode="json"), "n_train": len(train.y),
                      "student": getattr(student, "arch", None)}, sort_keys=True, default=str)
    done, history = resume.load_state(state_path, key=key, model=student, optimizer=optimizer,
                                      scheduler=scheduler, generator=loader_generator(loader))
    step = history[-1]["steps"] if history else 0
    epochs = tqdm(range(done, cfg.epochs), desc=f"distill[{cfg.method}]", disable=not progress, leave=False,
                  initial=done, total=cfg.epochs)
    try:
        for epoch in epochs:
            student.train()
            sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0}
            correct = seen = 0
            for x, y in loader:
                x, y = channels_last(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
                loss, ce, kd, logits_s = _batch_loss(student, teacher, x, y, cfg, precision=precision)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"distillation loss is {loss.item()} at step {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                n = y.shape[0]
                sums["loss"] += loss.item() * n
                sums["ce"] += ce.item() * n
                sums["kd"] += kd.item() * n
                correct += (logits_s.argmax(dim=1) == y).sum().item()
                seen += n
                if step >= total_steps:
                    break
            val_acc = evaluate(
                student, dataset.val, dataset.mean, dataset.std, device=device, batch_size=cfg.eval_batch_size
            )
            row = {
                "epoch": epoch + 1,
                "steps": step,
                "lr": optimizer.param_groups[0]["lr"],
                **{k: v / seen for k, v in sums.items()},
                "train_accuracy": correct / seen,
                "val_accuracy": float(val_acc),
            }
            history.append(row)
            log.debug("distill epoch %d: %s", epoch + 1, row)
            epochs.set_postfix(loss=f"{row['loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}")
            if step >= total_steps:
                break
            if state_path is not None:
                resume.save_state(state_path, key=key, epoch=epoch + 1, model=student, optimizer=optimizer,
                                  scheduler=scheduler, generator=loader_generator(loader), history=history)
    finally:
        teacher.train(teacher_was_training)
        teacher.to(memory_format=torch.contiguous_format)
    resume.finish(state_path)
    student.to(memory_format=torch.contiguous_format).eval()
    return history
