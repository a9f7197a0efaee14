"""ONNX segments of a multi-branch net: head_p (device) and tail_p (server), parity-checked (torch).

For each partition point p (the device runs stages 1..p):
- `head_p`: normalised input -> `exit_s` logits for every exit s <= p, and `feature` (the bottleneck's
  code z_p, float, before quantisation);
- `tail_p`: `feature` (dequantised) -> `exit_s` logits for every exit s > p.
`head_S` (p = S, the number of stages) is the whole net on the device: every exit, no feature.

`check_composition` runs head_p then tail_p in onnxruntime and compares every exit with the torch
net split at p: the segments must compose to the full network (max |d logit| <= 1e-4).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from networks.multibranch import MultiBranchNet, feature_shape
from shared.onnx_session import open_session

INPUT, FEATURE = "input", "feature"


def exit_name(stage: int) -> str:
    return f"exit_{stage}"


class SegmentError(RuntimeError):
    """A segment does not export, or its composition does not reproduce the network."""


class _Head(nn.Module):
    def __init__(self, net: MultiBranchNet, p: int) -> None:
        super().__init__()
        self.net, self.p = net, p

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.p == self.net.n_stages:
            return tuple(self.net(x))
        z, exits = self.net.head(x, self.p)
        return (*exits, z)


class _Tail(nn.Module):
    def __init__(self, net: MultiBranchNet, p: int) -> None:
        super().__init__()
        self.net, self.p = net, p

    def forward(self, z: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.net.tail(z, self.p))


def head_outputs(net: MultiBranchNet, p: int) -> list[str]:
    names = [exit_name(s) for s in net.exit_after if s <= p]
    return names if p == net.n_stages else [*names, FEATURE]


def tail_outputs(net: MultiBranchNet, p: int) -> list[str]:
    return [exit_name(s) for s in net.exit_after if s > p]


def _export(module: nn.Module, dummy: Tensor, path: Path, *, input_name: str, outputs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    dynamic = {name: {0: "batch"} for name in [input_name, *outputs]}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=17, input_names=[input_name],
                          output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    got = [o.name for o in model.graph.output]
    if got != outputs:
        raise SegmentError(f"{path}: outputs {got}, expected {outputs}")
    return path


def export_head(net: MultiBranchNet, p: int, path: Path) -> Path:
    """head_p as ONNX: `input` (B, C, H, W) normalised -> head_outputs(net, p)."""
    c, h, w = net.arch["backbone"]["in_channels"], *net.arch["backbone"]["input_size"]
    return _export(_Head(net, p), torch.zeros(2, c, h, w), Path(path), input_name=INPUT,
                   outputs=head_outputs(net, p))


def export_tail(net: MultiBranchNet, p: int, path: Path) -> Path:
    """tail_p as ONNX: `feature` (B, *feature_shape) -> tail_outputs(net, p)."""
    shape = feature_shape(net.arch, p)
    return _export(_Tail(net, p), torch.zeros(2, *shape), Path(path), input_name=FEATURE,
                   outputs=tail_outputs(net, p))


def check_composition(net: MultiBranchNet, p: int, head_path: Path, tail_path: Path | None, x: np.ndarray,
                      *, atol: float = 1e-4) -> float:
    """Max |logit| difference between head_p -> tail_p in onnxruntime and the torch net split at p.

    `x` is a normalised (N, C, H, W) float batch. SegmentError when it exceeds `atol` (or is not finite).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    head = open_session(head_path)
    outs = head.run(None, {INPUT: x})
    if p < net.n_stages:
        if tail_path is None:
            raise ValueError(f"partition {p} < {net.n_stages} stages needs a tail")
        feature = outs[-1]
        outs = [*outs[:-1], *open_session(tail_path).run(None, {FEATURE: feature})]
    with torch.inference_mode():
        reference = net(torch.from_numpy(x), split=None if p == net.n_stages else p)
    if len(outs) != len(reference):
        raise SegmentError(f"split at {p}: segments give {len(outs)} exits, the net {len(reference)}")
    worst = 0.0
    for got, want in zip(outs, reference, strict=True):
        diff = np.abs(np.asarray(got, np.float64) - want.double().numpy())
        worst = max(worst, float(diff.max()) if np.isfinite(diff).all() else float("inf"))
    if worst > atol:
        raise SegmentError(f"split at {p}: head -> tail differs from the network by up to {worst:.3g} > {atol:g}")
    return worst
