"""The artifact bundle: the one hand-off from the offline half to the online half.

A bundle is a directory holding `manifest.json`, `student.onnx`, `offloader.pkl`, `teacher.pt`
(+ `teacher.onnx` when exportable) and `reports/`. The manifest lists every artifact with its
sha256 and size; loading checks them all *before* anything is unpickled, because `offloader.pkl`
is a pickle and a pickle from a tampered bundle would run code on the edge.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
STUDENT_ONNX = "student.onnx"
OFFLOADER_PKL = "offloader.pkl"
TEACHER_PT = "teacher.pt"
TEACHER_ONNX = "teacher.onnx"
REPORTS = "reports"
# A bundle without these cannot serve: the edge needs the first two, the cloud the third.
REQUIRED_FILES: tuple[str, ...] = (STUDENT_ONNX, OFFLOADER_PKL, TEACHER_PT)
_CHUNK = 1 << 20


class BundleError(Exception):
    """A bundle is missing, incomplete or tampered with; the message names the file."""


class InputSpec(BaseModel):
    """What one sample looks like on the wire and how each side normalises it."""

    model_config = ConfigDict(extra="forbid")

    shape: list[int] = Field(description="per-sample shape [C, H, W]")
    dtype: str = Field(default="uint8", description="dtype of the raw pixels as stored in the dataset")
    mean: list[float] = Field(description="per-channel mean of raw pixel values: x = (raw - mean) / std")
    std: list[float] = Field(description="per-channel std of raw pixel values")


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    bytes: int


class OperatingPoint(BaseModel):
    """Where the offloader cuts: offload a sample when its score is above `threshold`."""

    model_config = ConfigDict(extra="allow")

    filter: str = Field(default="sl", description="a name in offloading.filters.FILTERS")
    rule: Literal["boundary", "budget", "target"] = Field(
        default="budget",
        description="how threshold was chosen: the offloader's own decision boundary (capped by budget), "
        "the best validation accuracy within budget, or the lowest rate reaching target_accuracy",
    )
    threshold: float = Field(description="offload when score > threshold")
    budget: float | None = Field(default=None, description="largest fraction offloaded, if chosen by budget")
    target_accuracy: float | None = Field(default=None, description="accuracy asked for, if chosen by target")
    val_offload_rate: float = Field(description="offload rate at this threshold on the validation split")
    val_accuracy: float = Field(description="cooperative accuracy at this threshold on the validation split")


class Metrics(BaseModel):
    """Measured on the test split when the bundle was built."""

    model_config = ConfigDict(extra="allow")

    teacher_accuracy: float
    student_accuracy: float
    teacher_bytes: int
    student_bytes: int
    offloader_bytes: int


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    dataset: str
    input: InputSpec
    classes: list[str]
    files: dict[str, FileEntry] = Field(default_factory=dict)
    metrics: Metrics
    operating_point: OperatingPoint
    teacher_arch: dict[str, Any] = Field(default_factory=dict)
    student_arch: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Hash every artifact present in `bundle_dir` into `manifest.files` and write manifest.json.

    Reports are not hashed: they are for people, and nothing loads them.
    """
    bundle_dir = Path(bundle_dir)
    missing = [name for name in REQUIRED_FILES if not (bundle_dir / name).is_file()]
    if missing:
        raise BundleError(f"{bundle_dir / missing[0]}: required bundle file is missing")
    names = [*REQUIRED_FILES, *([TEACHER_ONNX] if (bundle_dir / TEACHER_ONNX).is_file() else [])]
    files = {name: file_entry(bundle_dir / name) for name in names}
    final = manifest.model_copy(update={"files": files})
    path = bundle_dir / MANIFEST
    path.write_text(json.dumps(final.model_dump(mode="json"), indent=2) + "\n")
    return path


def _read_manifest(bundle_dir: Path) -> Manifest:
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: bundle directory does not exist")
    if not path.is_file():
        raise BundleError(f"{path}: manifest is missing; is this a bundle written by `edgecloud build`?")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err})") from err
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        raise BundleError(f"{path}: invalid manifest: {err}") from err
    if manifest.schema_version != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: schema_version {manifest.schema_version} is not supported (expected {SCHEMA_VERSION})"
        )
    return manifest


def verify_file(bundle_dir: Path, manifest: Manifest, name: str) -> Path:
    """Check one listed artifact's size and sha256; return its path."""
    entry = manifest.files.get(name)
    path = bundle_dir / name
    if entry is None:
        raise BundleError(f"{path}: not listed in {MANIFEST}, refusing to load it")
    if not path.is_file():
        raise BundleError(f"{path}: listed in {MANIFEST} but missing (incomplete bundle)")
    size = path.stat().st_size
    if size != entry.bytes:
        raise BundleError(f"{path}: size {size} B does not match the manifest's {entry.bytes} B (tampered?)")
    if sha256_file(path) != entry.sha256:
        raise BundleError(f"{path}: sha256 does not match the manifest (tampered or corrupt)")
    return path


def load_manifest(bundle_dir: Path, *, verify: bool = True) -> Manifest:
    """Read manifest.json; with `verify`, check every listed file and that the required ones are listed."""
    bundle_dir = Path(bundle_dir)
    manifest = _read_manifest(bundle_dir)
    if verify:
        for name in REQUIRED_FILES:
            if name not in manifest.files:
                raise BundleError(f"{bundle_dir / name}: required file is not listed in {MANIFEST}")
        for name in manifest.files:
            verify_file(bundle_dir, manifest, name)
    return manifest


def read_verified(bundle_dir: Path, manifest: Manifest, name: str) -> bytes:
    """One listed artifact's bytes, read once and checked against the manifest's size and sha256.

    What is checked is exactly what the caller gets: hashing the file and then opening it again
    would let a file swapped in between (a race an attacker can win) go unchecked.
    """
    entry = manifest.files.get(name)
    path = Path(bundle_dir) / name
    if entry is None:
        raise BundleError(f"{path}: not listed in {MANIFEST}, refusing to load it")
    if not path.is_file():
        raise BundleError(f"{path}: listed in {MANIFEST} but missing (incomplete bundle)")
    with path.open("rb") as handle:
        data = handle.read(entry.bytes + 1)  # one byte more than promised shows a longer file, unread
    if len(data) != entry.bytes:
        size = path.stat().st_size
        raise BundleError(f"{path}: size {size} B does not match the manifest's {entry.bytes} B (tampered?)")
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise BundleError(f"{path}: sha256 does not match the manifest (tampered or corrupt)")
    return data


def load_offloader(bundle_dir: Path, manifest: Manifest) -> Any:
    """Unpickle offloader.pkl from the very bytes whose sha256 matched the manifest."""
    data = read_verified(Path(bundle_dir), manifest, OFFLOADER_PKL)
    try:
        return pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ModuleNotFoundError) as err:
        raise BundleError(f"{Path(bundle_dir) / OFFLOADER_PKL}: cannot unpickle the offloader ({err})") from err
