"""The split segments of a bundle, run with onnxruntime (numpy only: the device and the server use it).

`SplitPlan` reads what the manifest says about the split (stages, exits, feature shapes, which model
is head_p / tail_p); `SegmentRunner` opens the graphs (every sha256 checked) and runs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared import onnx_session
from shared.bundle import BundleError, Manifest, load_manifest, verify_file
from shared.feature_codec import BITS, packed_bytes
from shared.names import ModelRole

INPUT, FEATURE = "input", "feature"


def head_name(p: int) -> str:
    return f"head_{p}"


def tail_name(p: int) -> str:
    return f"tail_{p}"


def exit_name(stage: int) -> str:
    return f"exit_{stage}"


@dataclass(frozen=True)
class SplitPlan:
    """The split structure a bundle holds: S stages, exits 1..S, a head for p in 1..S, a tail for p < S."""

    n_stages: int
    bits: tuple[int, ...]
    feature_shapes: dict[int, tuple[int, ...]]  # p -> per-sample shape of the sent feature, 1 <= p < S
    raw_shape: tuple[int, ...]                  # per-sample raw input (C, H, W): what server-only sends

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> SplitPlan:
        heads = {int(e.parameters["partition"]): e for e in manifest.models.values()
                 if e.role is ModelRole.SPLIT_HEAD}
        tails = {int(e.parameters["partition"]): e for e in manifest.models.values()
                 if e.role is ModelRole.SPLIT_TAIL}
        if not heads:
            raise BundleError("bundle has no split_head models; build them with `edgecloud split build`")
        n_stages = max(heads)
        missing = [p for p in range(1, n_stages) if p not in heads or p not in tails]
        if missing or n_stages not in heads:
            raise BundleError(f"bundle's split segments are incomplete: partition {missing[:1] or [n_stages]} "
                              "lacks a head or a tail")
        bits = tuple(heads[n_stages].parameters.get("bits", BITS))
        shapes = {p: tuple(int(d) for d in tails[p].parameters["feature_shape"]) for p in range(1, n_stages)}
        return cls(n_stages=n_stages, bits=bits, feature_shapes=shapes, raw_shape=tuple(manifest.input.shape))

    def payload_bytes(self, partition: int, bits: int) -> int:
        """Bytes of tensor payload one request sends for a split at `partition` (0: raw pixels; S: none)."""
        if partition == self.n_stages:
            return 0
        if partition == 0:
            return int(np.prod(self.raw_shape))
        return packed_bytes(self.feature_shapes[partition], bits)


def open_session(path: Path, *, threads: int = 1) -> Any:
    """A segment's session (shared.onnx_session, `threads` intra-op threads); a graph that cannot load is a
    BundleError naming the file."""
    try:
        return onnx_session.open_session(path, threads=threads)
    except onnx_session.SessionError as err:
        raise BundleError(str(err)) from err


class SegmentRunner:
    """Head and/or tail sessions of one bundle; `heads`/`tails` choose which partitions to open."""

    def __init__(self, bundle: Path, *, manifest: Manifest | None = None, heads: Iterable[int] = (),
                 tails: Iterable[int] = (), threads: int = 1) -> None:
        self.bundle = Path(bundle)
        self.manifest = manifest if manifest is not None else load_manifest(self.bundle)
        self.plan = SplitPlan.from_manifest(self.manifest)
        self._heads = {p: self._open(head_name(p), threads) for p in heads}
        self._tails = {p: self._open(tail_name(p), threads) for p in tails}

    def _open(self, name: str, threads: int) -> Any:
        entry = self.manifest.models.get(name)
        if entry is None or entry.file is None:
            raise BundleError(f"{self.bundle}: no split segment {name!r} with an ONNX file")
        return open_session(verify_file(self.bundle, self.manifest, entry.file), threads=threads)

    def head(self, p: int, x: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        """Normalised (N, C, H, W) -> ({exit stage: logits}, feature or None for p = S)."""
        session = self._heads[p]
        names = [o.name for o in session.get_outputs()]
        outs = session.run(names, {INPUT: np.ascontiguousarray(x, np.float32)})
        exits = {int(n.split("_")[1]): np.asarray(v) for n, v in zip(names, outs, strict=True) if n != FEATURE}
        feature = next((np.asarray(v) for n, v in zip(names, outs, strict=True) if n == FEATURE), None)
        return exits, feature

    def tail(self, p: int, feature: np.ndarray) -> dict[int, np.ndarray]:
        """Dequantised feature (N, *shape) -> {exit stage: logits} for the exits after p."""
        session = self._tails[p]
        names = [o.name for o in session.get_outputs()]
        outs = session.run(names, {FEATURE: np.ascontiguousarray(feature, np.float32)})
        return {int(n.split("_")[1]): np.asarray(v) for n, v in zip(names, outs, strict=True)}


def segment_parameters(*, partition: int, exits: list[int], feature_shape: tuple[int, ...] | None,
                       bits: tuple[int, ...] = BITS) -> dict[str, Any]:
    """`ModelEntry.parameters` of a head or tail."""
    params: dict[str, Any] = {"partition": partition, "exits": exits, "bits": list(bits)}
    if feature_shape is not None:
        params["feature_shape"] = list(feature_shape)
        params["feature_bytes"] = {str(b): packed_bytes(feature_shape, b) for b in bits}
    return params
