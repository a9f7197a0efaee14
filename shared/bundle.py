"""The artifact bundle: the one hand-off from the offline half to the online half.

A bundle is a directory holding `manifest.json`, the models it lists, the files they need and
`reports/`. Manifest v2 lists models by name, each with a role (teacher, student, variant, split
segments), its ONNX file (and optionally a torch checkpoint), its tensors and measured metrics; a
student carries the SL offloader trained on its logits. A bundle can hold several students and
variants. Named `artifacts` (policies, profiles) are hashed like models.

`files` holds the sha256 and size of every file the manifest references. Loading checks them all
*before* anything is unpickled, because `offloader.pkl` is a pickle and a pickle from a tampered
bundle would run code on the edge. A v1 manifest (one student, one teacher, fixed file names) is
upgraded on read; anything else is refused with a message that says how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.names import ModelRole

SCHEMA_VERSION = 2
READABLE_VERSIONS: tuple[int, ...] = (1, 2)
"""Versions `load_manifest` reads; v1 is upgraded in memory (`upgrade_v1`)."""
MANIFEST = "manifest.json"
STUDENT_ONNX = "student.onnx"
OFFLOADER_PKL = "offloader.pkl"
TEACHER_PT = "teacher.pt"
TEACHER_ONNX = "teacher.onnx"
REPORTS = "reports"
TEACHER = "teacher"
STUDENT = "student"
"""The default names of the teacher and the student, as `edgecloud build` writes them."""
REBUILD_HINT = "rebuild it with `edgecloud build` (or `edgecloud train-offloader --out DIR` to rewrite the manifest)"
_CHUNK = 1 << 20


class BundleError(Exception):
    """A bundle is missing, incomplete or tampered with; the message names the file."""


class InputSpec(BaseModel):
    """What one raw sample looks like on the wire and how every side normalises it."""

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
    confidence_z: float = Field(
        default=0.0, ge=0.0, allow_inf_nan=False,
        description="rule target: how many standard errors above the target validation had to be "
                    "(offloading.operating_point.PairedCurve.confident); 0 asks the estimate alone")
    val_offload_rate: float = Field(description="offload rate at this threshold on the validation split")
    val_accuracy: float = Field(description="cooperative accuracy at this threshold on the validation split")


class Metrics(BaseModel):
    """The build's headline numbers, measured on the test split when the bundle was built."""

    model_config = ConfigDict(extra="allow")

    teacher_accuracy: float
    student_accuracy: float | None = None  # None only in a bundle without students (split segments only)
    teacher_bytes: int
    student_bytes: int | None = None
    offloader_bytes: int | None = None


class TensorSpec(BaseModel):
    """One input or output tensor of a model's graph, as the Open Inference Protocol describes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    datatype: str = Field(description="OIP datatype: FP32, UINT8, INT64, ...")
    shape: list[int] = Field(description="shape with -1 for variable axes; the first axis is the batch")


class OffloaderSpec(BaseModel):
    """The SL offloader trained on one student's logits, and where it cuts."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="pickled scikit-learn estimator, relative to the bundle")
    operating_point: OperatingPoint


ModelInput = Literal["raw_image", "tensor"]


class ModelEntry(BaseModel):
    """One model of the bundle: what it is for, where its graph is, what it takes and gives."""

    model_config = ConfigDict(extra="forbid")

    role: ModelRole
    file: str | None = Field(default=None, description="ONNX graph the online half runs, relative to the bundle")
    checkpoint: str | None = Field(
        default=None, description="torch checkpoint {arch, state_dict}, for the cloud's optional torch backend")
    takes: ModelInput = Field(
        default="raw_image",
        description="raw_image: raw pixels per the bundle's `input`, normalised before the graph; "
                    "tensor: the graph's first input as it is (e.g. a split feature)")
    inputs: list[TensorSpec] = Field(default_factory=list, description="the graph's inputs")
    outputs: list[TensorSpec] = Field(default_factory=list, description="the graph's outputs")
    arch: dict[str, Any] = Field(default_factory=dict, description="arch dict that rebuilds the network")
    metrics: dict[str, Any] = Field(default_factory=dict, description="measured: accuracy, bytes, params, ...")
    offloader: OffloaderSpec | None = Field(default=None, description="students: their SL offloader")
    parameters: dict[str, Any] = Field(default_factory=dict, description="role-specific settings")

    @model_validator(mode="after")
    def _has_a_graph(self) -> ModelEntry:
        if self.file is None and self.checkpoint is None:
            raise ValueError(f"a {self.role} model needs a `file` (ONNX) or a `checkpoint` (torch)")
        return self

    def referenced_files(self) -> list[str]:
        names = [self.file, self.checkpoint, self.offloader.file if self.offloader else None]
        return [name for name in names if name is not None]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    dataset: str
    input: InputSpec
    classes: list[str]
    models: dict[str, ModelEntry] = Field(description="every model of the bundle, by the name it is served under")
    teacher: str = Field(default=TEACHER, description="the model the cloud serves by default")
    student: str = Field(default=STUDENT, description="the student (with offloader) the edge runs by default")
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="other files the online half loads (policies, profiles), by name")
    files: dict[str, FileEntry] = Field(default_factory=dict, description="sha256 and size of every file above")
    metrics: Metrics
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @model_validator(mode="after")
    def _defaults_exist(self) -> Manifest:
        teacher = self.models.get(self.teacher)
        if teacher is None or teacher.role is not ModelRole.TEACHER:
            raise ValueError(f"teacher {self.teacher!r} is not a model with role 'teacher' in `models`")
        student = self.models.get(self.student)
        if student is None and not self.models_with_role(ModelRole.STUDENT):
            return self  # no students at all: e.g. a teacher and its split segments (`edgecloud split build`)
        if student is None or student.role is not ModelRole.STUDENT or student.offloader is None:
            raise ValueError(f"student {self.student!r} is not a model with role 'student' and an offloader")
        return self

    def referenced_files(self) -> list[str]:
        """Every file the manifest points at, once each, in a stable order."""
        names = [name for entry in self.models.values() for name in entry.referenced_files()]
        return list(dict.fromkeys([*names, *self.artifacts.values()]))

    def student_entry(self, name: str | None = None) -> ModelEntry:
        """The named student (default: the bundle's), with its offloader; BundleError if there is none."""
        name = self.student if name is None else name
        entry = self.models.get(name)
        if entry is None or entry.role is not ModelRole.STUDENT or entry.offloader is None:
            students = sorted(k for k, v in self.models.items() if v.role is ModelRole.STUDENT)
            raise BundleError(f"bundle has no student {name!r} with an offloader; its students: {students}")
        return entry

    def models_with_role(self, role: ModelRole) -> list[str]:
        return [name for name, entry in self.models.items() if entry.role is role]

    @property
    def operating_point(self) -> OperatingPoint:
        """The default student's operating point."""
        offloader = self.student_entry().offloader
        assert offloader is not None  # student_entry guarantees it
        return offloader.operating_point

    def with_operating_point(self, point: OperatingPoint, *, student: str | None = None) -> Manifest:
        """A copy whose student (default: the bundle's) cuts at `point`; the rest is unchanged."""
        name = self.student if student is None else student
        entry = self.student_entry(name)
        assert entry.offloader is not None  # student_entry guarantees it
        offloader = entry.offloader.model_copy(update={"operating_point": point})
        models = {**self.models, name: entry.model_copy(update={"offloader": offloader})}
        return self.model_copy(update={"models": models})

    @property
    def teacher_arch(self) -> dict[str, Any]:
        return self.models[self.teacher].arch

    @property
    def student_arch(self) -> dict[str, Any]:
        return self.models[self.student].arch


def image_tensors(shape: list[int], num_classes: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of an image classifier graph as `edgecloud build` exports it."""
    return ([TensorSpec(name="input", datatype="FP32", shape=[-1, *shape])],
            [TensorSpec(name="logits", datatype="FP32", shape=[-1, num_classes])])


def upgrade_v1(raw: dict[str, Any], *, listed: set[str]) -> dict[str, Any]:
    """A v1 manifest (fixed file names, one student, one teacher) as v2; `listed` = its `files` keys."""
    raw = dict(raw)
    shape = list(raw.get("input", {}).get("shape", []))
    inputs, outputs = image_tensors(shape, len(raw.get("classes", [])))
    tensors = {"inputs": [t.model_dump() for t in inputs], "outputs": [t.model_dump() for t in outputs]}
    metrics = raw.get("metrics", {})
    if "operating_point" not in raw:
        raise ValueError("v1 manifest has no operating_point")
    raw["models"] = {
        TEACHER: {"role": "teacher", "file": TEACHER_ONNX if TEACHER_ONNX in listed else None,
                  "checkpoint": TEACHER_PT, "arch": raw.pop("teacher_arch", {}), **tensors,
                  "metrics": {"accuracy": metrics.get("teacher_accuracy"), "bytes": metrics.get("teacher_bytes")}},
        STUDENT: {"role": "student", "file": STUDENT_ONNX, "arch": raw.pop("student_arch", {}), **tensors,
                  "metrics": {"accuracy": metrics.get("student_accuracy"), "bytes": metrics.get("student_bytes")},
                  "offloader": {"file": OFFLOADER_PKL, "operating_point": raw.pop("operating_point")}},
    }
    raw["schema_version"] = SCHEMA_VERSION
    return raw


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Hash every file the manifest references into `manifest.files` and write manifest.json.

    Reports are not hashed: they are for people, and nothing loads them.
    """
    bundle_dir = Path(bundle_dir)
    names = manifest.referenced_files()
    missing = [name for name in names if not (bundle_dir / name).is_file()]
    if missing:
        raise BundleError(f"{bundle_dir / missing[0]}: referenced by the manifest but missing")
    files = {name: file_entry(bundle_dir / name) for name in names}
    final = manifest.model_copy(update={"files": files, "schema_version": SCHEMA_VERSION})
    path = bundle_dir / MANIFEST
    path.write_text(json.dumps(final.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
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
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: invalid manifest: a JSON object is expected, got {type(raw).__name__}")
    version = raw.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{path}: schema_version {version!r} is not supported (this edgecloud reads "
                          f"{list(READABLE_VERSIONS)}); {REBUILD_HINT}")
    try:
        if version == 1:
            files = raw.get("files")
            raw = upgrade_v1(raw, listed=set(files) if isinstance(files, dict) else set())
        manifest = Manifest.model_validate(raw)
    except (ValidationError, ValueError, TypeError, AttributeError) as err:
        raise BundleError(f"{path}: invalid manifest (schema_version {version}): {err}; {REBUILD_HINT}") from err
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
    """Read manifest.json; with `verify`, check that every referenced file is listed and matches its sha256."""
    bundle_dir = Path(bundle_dir)
    manifest = _read_manifest(bundle_dir)
    if verify:
        for name in manifest.referenced_files():
            if name not in manifest.files:
                raise BundleError(f"{bundle_dir / name}: referenced by a model but not listed in {MANIFEST}")
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


def load_offloader(bundle_dir: Path, manifest: Manifest, student: str | None = None) -> Any:
    """Unpickle the student's offloader from the very bytes whose sha256 matched the manifest."""
    offloader = manifest.student_entry(student).offloader
    assert offloader is not None  # student_entry guarantees it
    data = read_verified(Path(bundle_dir), manifest, offloader.file)
    try:
        return pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ModuleNotFoundError) as err:
        raise BundleError(f"{Path(bundle_dir) / offloader.file}: cannot unpickle the offloader ({err})") from err
