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

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from compression.data import make_loader
from networks.multibranch import MultiBranchNet
from shared.datasets import Dataset
from shared.feature_codec import BITS

log = logging.getLogger(__name__)


@dataclass
class SplitTrainConfig:
    """How the heads and bottlenecks are trained."""

    epochs: int = 3
    """passes over the (possibly subsampled) training split"""
    max_train_samples: int | None = 20000
    """train on at most this many samples (None: all); MNIST's first 20k already saturate the heads"""
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


def train_branches(net: MultiBranchNet, dataset: Dataset, cfg: SplitTrainConfig, *, mean: Sequence[float],
                   std: Sequence[float], progress: bool = True) -> list[dict[str, float]]:
    """Train `net`'s heads and bottlenecks in place (its backbone stays frozen); per-epoch loss records.

    `mean`/`std` are the normalisation the teacher was trained with (the bundle's input spec).
    """
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    rng = random.Random(cfg.seed)
    torch.set_num_threads(cfg.threads)
    train = dataset.train
    if cfg.max_train_samples is not None and len(train.y) > cfg.max_train_samples:
        keep = np.random.default_rng(cfg.seed).permutation(len(train.y))[:cfg.max_train_samples]
        train = type(train)(x=train.x[keep], y=train.y[keep])
    loader = make_loader(train, mean, std, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                         augment=False)
    for p in net.backbone.parameters():
        p.requires_grad_(False)
    params = [*net.heads.parameters(), *net.bottlenecks.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    steps = cfg.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history = []
    net.backbone.eval()  # frozen: BN keeps the teacher's running statistics
    for epoch in range(1, cfg.epochs + 1):
        net.heads.train()
        net.bottlenecks.train()
        sums = {"exit_loss": 0.0, "bottleneck_loss": 0.0}
        seen = 0
        started = time.perf_counter()
        for x, y in tqdm(loader, desc=f"split epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False):
            with torch.no_grad():
                outs = net.stage_outputs(x)  # S x (B, C_s, H_s, W_s)
                teacher_exits = [net.exit_logits(s, outs[s - 1]) for s in net.exit_after]
            exit_loss = x.new_zeros(())
            for s in net.exit_after[:-1]:
                logits = net.exit_logits(s, outs[s - 1])
                exit_loss = exit_loss + (1 - cfg.kd_weight) * F.cross_entropy(logits, y) \
                    + cfg.kd_weight * _kd(logits, teacher_exits[-1], cfg.temperature)
            bottleneck_loss = x.new_zeros(())
            for key, bottleneck in net.bottlenecks.items():
                p = int(key)
                z = fake_quantize(bottleneck.encode(outs[p - 1]), rng.choice(BITS))
                recon = bottleneck.decode(z)
                later = net.stages_from(recon, p, net.n_stages)
                bottleneck_loss = bottleneck_loss + F.mse_loss(recon, outs[p - 1])
                for s in net.exit_after:
                    if s > p:
                        bottleneck_loss = bottleneck_loss + _kd(net.exit_logits(s, later[s - p - 1]),
                                                                teacher_exits[net.exit_after.index(s)],
                                                                cfg.temperature)
            loss = exit_loss + bottleneck_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            sums["exit_loss"] += exit_loss.item() * len(y)
            sums["bottleneck_loss"] += bottleneck_loss.item() * len(y)
            seen += len(y)
        record = {"epoch": epoch, **{k: v / seen for k, v in sums.items()}, "seconds": time.perf_counter() - started}
        log.info("split epoch %d: exit loss %.4f bottleneck loss %.4f (%.0f s)", epoch, record["exit_loss"],
                 record["bottleneck_loss"], record["seconds"])
        history.append(record)
    net.eval()
    return history
