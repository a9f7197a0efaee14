"""Supervised training and evaluation of the teacher (and any ResNet student); checkpoints are in networks.

Typical use (the pipeline in ``edgecloud`` wraps exactly this)::

    ds = load_dataset("mnist", data_dir=Path("../shared/data/mnist"))
    model = build_model(resnet_arch(18, in_channels=1, width=16, input_size=(28, 28)))
    history = train_model(model, ds, TrainConfig(epochs=5))
    save_checkpoint(model, Path("artifacts/teacher.pt"), history=history)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np
import torch
from pydantic import model_validator
from torch import nn
from tqdm.auto import tqdm

from compression import resume
from compression.data import augment_name, loader_generator, make_loader
from compression.precision import PRECISIONS, autocast, channels_last, resolve_precision, to_channels_last
from shared.run_config import ConfigModel

if TYPE_CHECKING:
    from shared.datasets import Dataset, Split

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("onecycle", "cosine", "none")


class DeviceUnavailableError(RuntimeError):
    """The requested torch device does not exist on this machine."""


class TrainConfig(ConfigModel):
    epochs: int = 10
    """passes over the training split"""
    batch_size: int = 128
    """samples per optimiser step"""
    lr: float = 0.1
    """peak learning rate (the one-cycle maximum, or the cosine start)"""
    optimizer: str = "sgd"
    """sgd (Nesterov momentum) or adam (AdamW: decoupled weight decay)"""
    schedule: str = "onecycle"
    """learning-rate schedule stepped every batch: onecycle, cosine or none"""
    weight_decay: float = 5e-4
    """L2 penalty; the usual value for CIFAR ResNets"""
    momentum: float = 0.9
    """SGD momentum (ignored by adam)"""
    label_smoothing: float = 0.0
    """cross-entropy label smoothing in [0, 1)"""
    augment: bool | str = False
    """training-time augmentation (compression.data.AUGMENTS): "none", "shift" (pad 2 + random crop; True)
    or "crop-flip" (pad 4 + random crop + horizontal flip, for natural images)"""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto (cuda when available)"""
    precision: str = "auto"
    """training arithmetic (compression.precision): "fp32", "bf16" (autocast) or "auto" (bf16 where native)"""
    seed: int = 0
    """seeds the data order, the augmentation and torch's global RNG (the model's init is the caller's)"""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        augment_name(self.augment)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        return self


def resolve_device(name: str | torch.device) -> torch.device:
    """Map auto to cuda if available else cpu; an explicitly requested cuda device must exist."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {name!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {name!r} requested but only "
                                         f"{torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return device


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names (shared with distillation so both train alike)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, *,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-batch schedule over ``cfg.epochs * steps_per_epoch`` steps, or None for a constant lr."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        # Smith & Topin's one-cycle: fast convergence in few epochs, which suits CPU budgets.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


def train_model(model: nn.Module, dataset: Dataset, cfg: TrainConfig, *, progress: bool = True,
                state_path: Path | None = None) -> list[dict]:
    """Train ``model`` in place with cross-entropy; one history dict per epoch.

    Each dict holds ``epoch``, ``loss`` (mean training loss), ``train_accuracy`` (on the augmented
    batches, as seen while training), ``val_accuracy``, ``lr`` (at the epoch's end) and ``seconds``.
    With ``state_path`` the run saves its state after every epoch and a restarted run with the same
    settings continues where it stopped (compression.resume). The model is left on the training
    device, in eval mode.
    """
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    to_channels_last(model.to(device))
    loader = make_loader(dataset.train, dataset.mean, dataset.std, batch_size=cfg.batch_size, shuffle=True,
                         seed=cfg.seed, augment=cfg.augment)
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=len(loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    key = json.dumps({"cfg": cfg.model_dump(mode="json"), "n_train": len(dataset.train.y)}, sort_keys=True)
    done, history = resume.load_state(state_path, key=key, model=model, optimizer=optimizer,
                                      scheduler=scheduler, generator=loader_generator(loader))
    for epoch in range(done + 1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=f"teacher epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        for x, y in bar:
            x, y = channels_last(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            with autocast(device, precision):
                logits = model(x)  # (B, K)
            loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(dim=1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        val_acc = evaluate(model, dataset.val, dataset.mean, dataset.std, device=device,
                           batch_size=max(cfg.batch_size, 512))
        record = {"epoch": epoch, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                  "val_accuracy": val_acc, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": time.perf_counter() - start, "precision": precision}
        log.info("epoch %d/%d: loss %.4f val_accuracy %.4f (%.0f s)", epoch, cfg.epochs, record["loss"], val_acc,
                 record["seconds"])
        history.append(record)
        if state_path is not None and epoch < cfg.epochs:
            resume.save_state(state_path, key=key, epoch=epoch, model=model, optimizer=optimizer,
                              scheduler=scheduler, generator=loader_generator(loader), history=history)
    resume.finish(state_path)
    model.to(memory_format=torch.contiguous_format).eval()
    return history


def predict_logits(model: nn.Module, x_raw: np.ndarray, mean: Sequence[float], std: Sequence[float], *,
                   device: str | torch.device = "cpu", batch_size: int = 512) -> np.ndarray:
    """(N, K) float32 logits for raw (N, C, H, W) pixels, normalised here exactly as in training.

    The model is moved to ``device`` and run in eval mode; its previous mode is restored.
    """
    if x_raw.ndim != 4:
        raise ValueError(f"x_raw must be (N, C, H, W), got shape {x_raw.shape}")
    dev = resolve_device(device)
    placeholder_y = np.zeros(len(x_raw), dtype=np.int64)
    loader = make_loader(_RawSplit(x_raw, placeholder_y), mean, std, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.to(dev).eval()
    chunks: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for x, _ in loader:
                chunks.append(model(x.to(dev)).float().cpu().numpy())  # (B, K)
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("x_raw holds no samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)


@dataclass(frozen=True)
class _RawSplit:
    """Split-shaped view of bare arrays, for make_loader."""

    x: np.ndarray
    y: np.ndarray


def evaluate(model: nn.Module, split: Split, mean: Sequence[float], std: Sequence[float], *,
             device: str | torch.device = "cpu", batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``split``."""
    if len(split.y) == 0:
        raise ValueError("cannot evaluate on an empty split")
    logits = predict_logits(model, split.x, mean, std, device=device, batch_size=batch_size)
    return float((logits.argmax(axis=1) == split.y).mean())
