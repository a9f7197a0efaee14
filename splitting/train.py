"""Train the exit heads and the bottlenecks of a multi-branch net on the frozen teacher (torch).

Frozen backbone, not joint training (BranchyNet trains all exits together): the backbone is the
bundle's teacher, which the cloud serves as it is and whose accuracy the bundle reports; joint
training would move it (trading final-exit accuracy for early-exit accuracy) and would mean
re-training a ResNet-18 on CPU. With it frozen, its last exit stays bit-identical to the teacher,
and only the small heads and bottlenecks learn, in minutes.

Losses, per batch (the teacher's stage outputs h_s computed once, without gradients):
- exit after stage s:   CE(head_s(h_s), y) + T^2 KL(softmax(t/T) || softmax(head_s(h_s)/T)), t = teacher logits
  (Hinton et al. 2015, with the final exit as the teacher: exits agree with it where they can);
- bottleneck at p:      MSE(dec(Q(enc(h_p))), h_p) + sum over later exits e of T^2 KL(exit_e(h) || exit_e(h^)),
  h^ the later stages run on the decoded feature: feature distillation plus output distillation, as in
  split-computing bottleneck training (Matsubara et al. 2022). Q is fake quantisation with a
  straight-through gradient at a bit width drawn from {8, 4, 2} per batch, so the decoder learns
  to read the coarse codes it will be sent.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from compression import resume
from compression.data import augment_name, loader_generator, make_loader
from compression.precision import PRECISIONS, autocast, channels_last, resolve_precision, to_channels_last
from networks.multibranch import MultiBranchNet
from shared.datasets import Dataset
from shared.feature_codec import BITS
from shared.preprocess import normalize

log = logging.getLogger(__name__)


@dataclass
class SplitTrainConfig:
    """How the heads and bottlenecks are trained."""

    epochs: int = 3
    """passes over the (possibly subsampled) training split; every epoch's validation accuracy of each
    exit and each bottleneck path is in the history, so convergence can be read off it"""
    max_train_samples: int | None = 20000
    """train on at most this many samples (None: all); MNIST's first 20k already saturate the heads"""
    augment: bool | str = False
    """training-time augmentation (compression.data.AUGMENTS); natural images: "crop-flip" """
    precision: str = "auto"
    """training arithmetic (compression.precision): fp32, bf16 or auto"""
    batch_size: int = 128
    """samples per step"""
    lr: float = 2e-3
    """Adam learning rate, cosine-annealed to zero"""
    temperature: float = 4.0
    """distillation temperature T"""
    kd_weight: float = 0.5
    """weight of the distillation term against cross-entropy for exit heads"""
    seed: int = 0
    """seeds torch, numpy and the batch order"""
    threads: int = 2
    """torch intra-op threads"""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"invalid SplitTrainConfig: {self}")
        augment_name(self.augment)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def fake_quantize(z: Tensor, bits: int) -> Tensor:
    """Per-tensor affine quantise-dequantise (shared.feature_codec's maths) with a straight-through gradient."""
    levels = (1 << bits) - 1
    lo = torch.clamp(z.min().detach(), max=0.0)
    hi = torch.clamp(z.max().detach(), min=0.0)
    scale = torch.clamp((hi - lo) / levels, min=1e-8)
    zero_point = torch.round(-lo / scale)
    q = torch.clamp(torch.round(z / scale) + zero_point, 0, levels)
    zq = (q - zero_point) * scale
    return z + (zq - z).detach()


def _kd(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t


@torch.no_grad()
def validation_accuracy(net: MultiBranchNet, x: Tensor, y: Tensor, *, batch_size: int = 500) -> dict[str, float]:
    """Accuracy of every exit ("exit_s") and of every bottleneck path at 8 bits ("split_p", through the
    final exit) on normalised validation samples: what convergence is read from."""
    net.eval()
    correct: dict[str, int] = {}
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        outs = net.stage_outputs(xb)
        for s in net.exit_after:
            key = f"exit_{s}"
            correct[key] = correct.get(key, 0) + int((net.exit_logits(s, outs[s - 1]).argmax(1) == yb).sum())
        for key, bottleneck in net.bottlenecks.items():
            p = int(key)
            recon = bottleneck.decode(fake_quantize(bottleneck.encode(outs[p - 1]), 8))
            last = net.stages_from(recon, p, net.n_stages)[-1]
            name = f"split_{p}"
            correct[name] = correct.get(name, 0) + int((net.exit_logits(net.n_stages, last).argmax(1) == yb).sum())
    return {k: v / len(y) for k, v in correct.items()}


def train_branches(net: MultiBranchNet, dataset: Dataset, cfg: SplitTrainConfig, *, mean: Sequence[float],
                   std: Sequence[float], progress: bool = True, state_path: Path | None = None
                   ) -> list[dict[str, Any]]:
    """Train `net`'s heads and bottlenecks in place (its backbone stays frozen); per-epoch records.

    `mean`/`std` are the normalisation the teacher was trained with (the bundle's input spec). Each
    record holds the epoch's losses and the validation accuracy of every exit and bottleneck path
    (`validation_accuracy`). With `state_path` a stopped run resumes after its last epoch.
    """
    device = torch.device("cpu")
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    rng = random.Random(cfg.seed)
    torch.set_num_threads(cfg.threads)
    train = dataset.train
    if cfg.max_train_samples is not None and len(train.y) > cfg.max_train_samples:
        keep = np.random.default_rng(cfg.seed).permutation(len(train.y))[:cfg.max_train_samples]
        train = type(train)(x=train.x[keep], y=train.y[keep])
    loader = make_loader(train, mean, std, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                         augment=cfg.augment)
    x_val = torch.from_numpy(normalize(dataset.val.x, mean, std))
    y_val = torch.from_numpy(dataset.val.y)
    for p in net.backbone.parameters():
        p.requires_grad_(False)
    params = [*net.heads.parameters(), *net.bottlenecks.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    steps = cfg.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    key = json.dumps({"cfg": asdict(cfg), "arch": net.arch, "n_train": len(train.y)}, sort_keys=True, default=str)
    done, history = resume.load_state(state_path, key=key, model=net, optimizer=optimizer, scheduler=scheduler,
                                      generator=loader_generator(loader))
    to_channels_last(net)
    for epoch in range(done + 1, cfg.epochs + 1):
        net.backbone.eval()  # frozen: BN keeps the teacher's running statistics
        net.heads.train()
        net.bottlenecks.train()
        sums = {"exit_loss": 0.0, "bottleneck_loss": 0.0}
        seen = 0
        started = time.perf_counter()
        for x, y in tqdm(loader, desc=f"split epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False):
            x = channels_last(x)
            with autocast(device, precision):
                exit_loss, bottleneck_loss = _losses(net, x, y, cfg, rng)
            loss = exit_loss + bottleneck_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            sums["exit_loss"] += exit_loss.item() * len(y)
            sums["bottleneck_loss"] += bottleneck_loss.item() * len(y)
            seen += len(y)
        record: dict[str, Any] = {"epoch": epoch, **{k: v / seen for k, v in sums.items()},
                                  "val_accuracy": validation_accuracy(net, x_val, y_val),
                                  "seconds": time.perf_counter() - started, "precision": precision}
        log.info("split epoch %d: exit loss %.4f bottleneck loss %.4f, val %s (%.0f s)", epoch, record["exit_loss"],
                 record["bottleneck_loss"], {k: round(v, 4) for k, v in record["val_accuracy"].items()},
                 record["seconds"])
        history.append(record)
        if state_path is not None and epoch < cfg.epochs:
            resume.save_state(state_path, key=key, epoch=epoch, model=net, optimizer=optimizer, scheduler=scheduler,
                              generator=loader_generator(loader), history=history)
    resume.finish(state_path)
    net.to(memory_format=torch.contiguous_format).eval()
    return history


def _losses(net: MultiBranchNet, x: Tensor, y: Tensor, cfg: SplitTrainConfig, rng: random.Random
            ) -> tuple[Tensor, Tensor]:
    """(exit loss, bottleneck loss) of one batch: the module docstring's two losses, in float32."""
    with torch.no_grad():
        outs = net.stage_outputs(x)  # S x (B, C_s, H_s, W_s)
        teacher_exits = [net.exit_logits(s, outs[s - 1]).float() for s in net.exit_after]
    exit_loss = x.new_zeros((), dtype=torch.float32)
    for s in net.exit_after[:-1]:
        logits = net.exit_logits(s, outs[s - 1]).float()
        exit_loss = exit_loss + (1 - cfg.kd_weight) * F.cross_entropy(logits, y) \
            + cfg.kd_weight * _kd(logits, teacher_exits[-1], cfg.temperature)
    bottleneck_loss = x.new_zeros((), dtype=torch.float32)
    for key, bottleneck in net.bottlenecks.items():
        p = int(key)
        z = fake_quantize(bottleneck.encode(outs[p - 1]).float(), rng.choice(BITS))
        recon = bottleneck.decode(z)
        later = net.stages_from(recon, p, net.n_stages)
        bottleneck_loss = bottleneck_loss + F.mse_loss(recon.float(), outs[p - 1].float())
        for s in net.exit_after:
            if s > p:
                bottleneck_loss = bottleneck_loss + _kd(net.exit_logits(s, later[s - p - 1]).float(),
                                                        teacher_exits[net.exit_after.index(s)], cfg.temperature)
    return exit_loss, bottleneck_loss
