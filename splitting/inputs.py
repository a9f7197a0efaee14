"""What a device holds before it runs anything: the dataset's own encoded image files (numpy only).

A camera or a phone keeps a JPEG, not raw pixels, so the fair server-only baseline uploads that file
and the server decodes it (`Regime.server_payload = jpeg`); a split is worth it only if it beats that.
Artifact `split_input_bytes` (file split/input_bytes.npz) holds, for every sample of the bundle's test
split and in its order (the order of `split_correct`), the size of its encoded file, plus a few of the
files themselves so that `edgecloud profile --role server` can time the decode on them:

    write_input_bytes(bundle, sizes, source="cifar10 test/*.jpg", samples=first_64_files)  # split build
    sizes = read_input_bytes(bundle, manifest, raw_shape=(3, 32, 32))                      # everyone else

A bundle without it (MNIST, digits: their files are raw arrays) gets `InputBytes.default`: every image
`DEFAULT_JPEG_RATIO` of its raw bytes, CIFAR-10's own ratio (its 10,000 test JPEGs average 921 bytes,
3,072 raw bytes each), labelled as a default wherever it is reported.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared import bundle as B

ARTIFACT_INPUT_BYTES = "split_input_bytes"
INPUT_BYTES_NPZ = "split/input_bytes.npz"
DEFAULT_JPEG_RATIO = 0.30
"""Encoded over raw bytes where a bundle records no sizes: CIFAR-10's test JPEGs, 921 / 3072 bytes."""
MAX_SAMPLES = 64
"""Encoded files kept in the bundle for timing the server's decode (about 60 KB for CIFAR-10)."""


@dataclass(frozen=True)
class InputBytes:
    """Encoded size of every test sample, as the device holds it."""

    per_sample: np.ndarray
    """(N,) int64: bytes of test sample n's file (empty for the default: every sample is `mean`)"""
    mean: float
    """mean bytes per sample (what planners predict with)"""
    source: str
    """where the sizes come from (a dataset's files, or the default and why)"""
    samples: tuple[bytes, ...] = ()
    """a few of the files themselves, for timing the decode (none for the default)"""

    def at(self, sample: int | None) -> float:
        """Bytes of request `sample`'s image (sample n % N, as the environment cycles the test split);
        the mean when the sample is unknown (a prediction) or the sizes are the default."""
        if sample is None or len(self.per_sample) == 0:
            return self.mean
        return float(self.per_sample[sample % len(self.per_sample)])

    @property
    def is_default(self) -> bool:
        return len(self.per_sample) == 0

    @classmethod
    def default(cls, raw_shape: Sequence[int]) -> InputBytes:
        raw = int(np.prod(raw_shape))
        return cls(per_sample=np.zeros(0, np.int64), mean=DEFAULT_JPEG_RATIO * raw,
                   source=f"default: {DEFAULT_JPEG_RATIO:g} x {raw} raw bytes (CIFAR-10's JPEG ratio); the bundle "
                          f"has no {ARTIFACT_INPUT_BYTES}")


def write_input_bytes(bundle: Path, per_sample: np.ndarray, *, source: str, samples: Sequence[bytes] = ()) -> Path:
    """Store the encoded sizes of the bundle's test split (in its order) as artifact split_input_bytes.

    When the bundle already holds `split_correct`, the sizes must cover the same samples; at most
    `MAX_SAMPLES` of `samples` (encoded files, e.g. the first test JPEGs) are kept.
    """
    bundle = Path(bundle)
    sizes = np.asarray(per_sample)
    if sizes.ndim != 1 or len(sizes) == 0 or not np.issubdtype(sizes.dtype, np.integer) or (sizes <= 0).any():
        raise ValueError(f"per_sample must be a non-empty 1-D array of positive byte counts, got {sizes.shape} "
                         f"{sizes.dtype}")
    manifest = B.load_manifest(bundle)
    correct = manifest.artifacts.get("split_correct")  # splitting.setup.ARTIFACT_CORRECT (not imported: a cycle)
    if correct is not None:
        with np.load(io.BytesIO(B.read_verified(bundle, manifest, correct)), allow_pickle=False) as z:
            n_test = int(z["correct"].shape[1])
        if n_test != len(sizes):
            raise ValueError(f"{bundle}: split_correct covers {n_test} test samples, per_sample has {len(sizes)}")
    kept = [bytes(s) for s in samples[:MAX_SAMPLES]]
    offsets = np.cumsum([0, *(len(s) for s in kept)]).astype(np.int64)
    meta = json.dumps({"source": source}).encode()
    rel = INPUT_BYTES_NPZ
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    with (bundle / rel).open("wb") as handle:
        np.savez_compressed(handle, per_sample=sizes.astype(np.int64),
                            samples=np.frombuffer(b"".join(kept), dtype=np.uint8), offsets=offsets,
                            meta=np.frombuffer(meta, dtype=np.uint8))
    manifest = B.load_manifest(bundle, verify=False)
    B.write_manifest(bundle, manifest.model_copy(update={"artifacts": {**manifest.artifacts,
                                                                       ARTIFACT_INPUT_BYTES: rel}}))
    return bundle / rel


def read_input_bytes(bundle: Path, manifest: B.Manifest, *, raw_shape: Sequence[int]) -> InputBytes:
    """The bundle's encoded sizes (verified), or `InputBytes.default(raw_shape)` when it has none."""
    name = manifest.artifacts.get(ARTIFACT_INPUT_BYTES)
    if name is None:
        return InputBytes.default(raw_shape)
    with np.load(io.BytesIO(B.read_verified(Path(bundle), manifest, name)), allow_pickle=False) as z:
        sizes = z["per_sample"].astype(np.int64)
        blob, offsets = z["samples"].tobytes(), z["offsets"]
        meta = json.loads(z["meta"].tobytes().decode())
    samples = tuple(blob[int(a):int(b)] for a, b in itertools.pairwise(offsets))
    return InputBytes(per_sample=sizes, mean=float(sizes.mean()), source=str(meta.get("source", name)),
                      samples=samples)
