"""The cloud's models as a Triton model repository: raw-pixel ONNX graphs and their config.pbtxt.

    edgecloud export triton --bundle artifacts/mnist --out triton-repo
    tritonserver --model-repository triton-repo          # Triton's stock onnxruntime backend

    triton-repo/teacher/config.pbtxt     backend onnxruntime, dynamic batching, our tensor names
    triton-repo/teacher/labels.txt       the bundle's classes, for Triton's classification extension
    triton-repo/teacher/1/model.onnx     the bundle's graph with the normalisation folded in front

A bundle's graph takes normalised float32 and the runtime normalises raw pixels before it
(shared/preprocess.py). Triton's onnxruntime backend runs a graph and nothing else, so the one
normalisation goes into the graph as nodes: Cast(raw -> float32), Mul(scale), Add(shift), with the
(scale, shift) of `shared.preprocess.affine`: the same two float32 roundings as `apply_affine`, so the
exported graph on raw pixels gives what the original graph gives on numpy-normalised ones (checked
on every export, `check_parity`). An ArgMax gives `label`. The tensors are then those of our cloud
(docs/architecture.md, "Model names on the wire"): `input` UINT8 [N, C, H, W] in, `logits` FP32
[N, K] and `label` INT64 out; Triton presents `label` as [N, 1] (it wants a dimension per sample),
which the edge's client accepts.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud_server.settings import CloudSettings, ModelNames
from serving.model import INPUT, LABEL, LOGITS
from serving.settings import BundleDir
from shared.bundle import BundleError, Manifest, load_manifest, verify_file
from shared.preprocess import affine, normalize

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

VERSION = "1"
"""The one model version written; Triton serves the highest version directory by default."""
MODEL_FILE = "model.onnx"
"""The onnxruntime backend's default model file name."""
LABELS_FILE = "labels.txt"
PARITY_ATOL = 1e-5
"""Largest |logit difference| allowed between the exported graph on raw pixels and the original graph on
numpy-normalised ones. The arithmetic is the same, so the difference is expected to be 0; the tolerance
only admits a backend that fuses the two roundings."""

# The raw dtypes a bundle's input can have: (ONNX element type name, Triton config data_type).
_RAW_TYPES: dict[str, tuple[str, str]] = {"uint8": ("UINT8", "TYPE_UINT8"), "float32": ("FLOAT", "TYPE_FP32")}


def _defaults(field: str) -> Any:
    return CloudSettings.model_fields[field].default


class TritonExportSettings(BaseSettings):
    """What `edgecloud export triton` writes; batching defaults are the cloud server's own."""

    model_config = SettingsConfigDict(env_prefix="EDGECLOUD_", extra="ignore")

    bundle: BundleDir = Field(description="bundle directory from `edgecloud build`")
    out: Path = Field(description="model repository to write (created; an existing model directory in it is "
                                  "replaced)")
    models: ModelNames = Field(
        default=None, description="models of the bundle to export, comma-separated (default: its teacher)")
    max_batch_size: int = Field(default=_defaults("max_batch_size"), ge=1,
                                description="Triton's max_batch_size: most samples in one forward pass")
    max_queue_delay_ms: float = Field(
        default=_defaults("max_queue_delay_ms"), ge=0.0, le=10_000.0,
        description="Triton's dynamic batcher: longest the oldest request waits for others")
    instances: int = Field(default=1, ge=1, le=64, description="model instances (instance_group count) on CPU")
    threads: int = Field(default=1, ge=1, le=256, description="onnxruntime intra-op threads per instance")
    parity_samples: int = Field(default=64, ge=1, le=100_000,
                                description="random raw samples the exported graph is checked on")


@dataclass(frozen=True)
class Parity:
    """The exported graph on raw pixels against the original graph on numpy-normalised ones."""

    samples: int
    labels_equal: bool
    max_abs_logit_diff: float

    @property
    def ok(self) -> bool:
        return self.labels_equal and self.max_abs_logit_diff <= PARITY_ATOL


@dataclass(frozen=True)
class ExportedModel:
    name: str
    directory: Path
    config: Path
    graph: Path
    parity: Parity


class ExportError(RuntimeError):
    """The bundle cannot be exported as asked (the message names the model and why)."""


def _raw_types(manifest: Manifest) -> tuple[str, str]:
    try:
        return _RAW_TYPES[manifest.input.dtype]
    except KeyError:
        raise ExportError(f"bundle input dtype {manifest.input.dtype!r} has no Triton export; supported: "
                          f"{sorted(_RAW_TYPES)}") from None


def _fresh(name: str, taken: set[str]) -> str:
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def fold_normalisation(model: onnx.ModelProto, manifest: Manifest, *, num_classes: int) -> onnx.ModelProto:
    """A copy of `model` taking raw pixels as `input` and giving `logits` and `label` (module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    initializers = {init.name for init in graph.initializer}
    graph_inputs = [value for value in graph.input if value.name not in initializers]
    if len(graph_inputs) != 1 or len(graph.output) < 1:
        raise ExportError(f"graph {graph.name!r} has inputs {[v.name for v in graph_inputs]} and outputs "
                          f"{[v.name for v in graph.output]}; the export takes one image input and logits first")
    taken = initializers | {v.name for v in graph.input} | {v.name for v in graph.output}
    taken |= {name for node in graph.node for name in (*node.input, *node.output)}

    # The graph's own input becomes an internal tensor fed by the normalisation nodes.
    old_input, normalised = graph_inputs[0].name, _fresh("edgecloud_normalised", taken)
    for node in graph.node:
        node.input[:] = [normalised if name == old_input else name for name in node.input]
    old_output = graph.output[0].name
    if old_input != INPUT and INPUT in taken:
        raise ExportError(f"graph {graph.name!r} already has a tensor named {INPUT!r}; cannot name its input so")
    if old_output != LOGITS and LOGITS in taken:
        raise ExportError(f"graph {graph.name!r} already has a tensor named {LOGITS!r}; cannot name its logits so")

    onnx_type, _ = _raw_types(manifest)
    scale, shift = affine(manifest.input.mean, manifest.input.std)  # (1, C, 1, 1) float32 each
    names = {"scale": _fresh("edgecloud_scale", taken), "shift": _fresh("edgecloud_shift", taken),
             "float": _fresh("edgecloud_raw_float", taken), "scaled": _fresh("edgecloud_scaled", taken)}
    graph.initializer.extend([numpy_helper.from_array(scale, names["scale"]),
                              numpy_helper.from_array(shift, names["shift"])])
    prologue = []
    raw_float = INPUT
    if onnx_type != "FLOAT":
        prologue.append(helper.make_node("Cast", [INPUT], [names["float"]], to=TensorProto.FLOAT,
                                         name="edgecloud_cast"))
        raw_float = names["float"]
    # shared/preprocess.py: normalised = raw * (1 / std) + (-mean / std), one float32 multiply, then one add.
    prologue += [helper.make_node("Mul", [raw_float, names["scale"]], [names["scaled"]], name="edgecloud_scale"),
                 helper.make_node("Add", [names["scaled"], names["shift"]], [normalised], name="edgecloud_shift")]
    epilogue = []
    if old_output != LOGITS:
        epilogue.append(helper.make_node("Identity", [old_output], [LOGITS], name="edgecloud_logits"))
    epilogue.append(helper.make_node("ArgMax", [LOGITS], [LABEL], axis=1, keepdims=0, name="edgecloud_label"))
    nodes = [*prologue, *graph.node, *epilogue]
    del graph.node[:]
    graph.node.extend(nodes)

    c, h, w = manifest.input.shape
    keep = [value for value in graph.input if value.name in initializers]  # IR < 4 lists initializers too
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(INPUT, getattr(TensorProto, onnx_type), ["batch", c, h, w]),
                        *keep])
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", num_classes]),
                         helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["batch"])])
    try:
        onnx.checker.check_model(folded, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the folded graph of {graph.name!r} is not valid ONNX: {err}") from err
    return folded


def _session(model: onnx.ModelProto | Path) -> Any:
    from shared.onnx_session import open_session

    return open_session(model if isinstance(model, Path) else model.SerializeToString(), threads=1)


def check_parity(original: Path, folded: onnx.ModelProto, manifest: Manifest, *, samples: int, seed: int = 0
                 ) -> Parity:
    """onnxruntime on `folded` with raw pixels against onnxruntime on `original` after numpy's normalisation.

    The raw pixels are random over the raw dtype's range (uint8: 0..255), plus an all-zero and an
    all-max sample, so that every value the wire can carry is covered.
    """
    rng = np.random.default_rng(seed)
    shape = (samples, *manifest.input.shape)
    if manifest.input.dtype == "uint8":
        x = rng.integers(0, 256, size=shape, dtype=np.uint8)  # (N, C, H, W)
        x[0], x[-1] = 0, 255
    else:
        x = rng.uniform(0.0, 255.0, size=shape).astype(np.float32)
    reference = _session(original)
    (expected,) = reference.run([reference.get_outputs()[0].name],
                                {reference.get_inputs()[0].name: normalize(x, manifest.input.mean, manifest.input.std)})
    logits, labels = _session(folded).run([LOGITS, LABEL], {INPUT: x})
    return Parity(samples=samples, labels_equal=bool(np.array_equal(labels, expected.argmax(axis=1))),
                  max_abs_logit_diff=float(np.max(np.abs(logits - expected))))


def config_pbtxt(name: str, manifest: Manifest, settings: TritonExportSettings, *, num_classes: int) -> str:
    """The model's config.pbtxt (protobuf text of Triton's ModelConfig)."""
    _, triton_type = _raw_types(manifest)
    dims = ", ".join(str(d) for d in manifest.input.shape)
    delay_us = round(settings.max_queue_delay_ms * 1000)
    return f"""\
# Written by `edgecloud export triton` from a {manifest.dataset} bundle. Tensors as our cloud serves them:
# `input` raw pixels (the normalisation is in the graph), `logits`, and `label` (Triton answers it as [N, 1]).
name: "{name}"
backend: "onnxruntime"
max_batch_size: {settings.max_batch_size}
input [
  {{
    name: "{INPUT}"
    data_type: {triton_type}
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{LOGITS}"
    data_type: TYPE_FP32
    dims: [ {num_classes} ]
    label_filename: "{LABELS_FILE}"
  }},
  {{
    name: "{LABEL}"
    data_type: TYPE_INT64
    dims: [ 1 ]
    reshape: {{ shape: [ ] }}
  }}
]
# As `edgecloud cloud serve` batches: up to max_batch_size samples, the oldest request waiting at most this long.
dynamic_batching {{
  max_queue_delay_microseconds: {delay_us}
}}
instance_group [
  {{
    count: {settings.instances}
    kind: KIND_CPU
  }}
]
parameters {{
  key: "intra_op_thread_count"
  value: {{ string_value: "{settings.threads}" }}
}}
parameters {{
  key: "inter_op_thread_count"
  value: {{ string_value: "1" }}
}}
"""


def parse_config(text: str) -> Any:
    """`text` parsed as Triton's ModelConfig protobuf (tritonclient[grpc]); ExportError if it does not parse."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as err:
        raise ExportError(f"config.pbtxt does not parse as Triton's ModelConfig: {err}") from err


def _exported_models(settings: TritonExportSettings, manifest: Manifest) -> list[str]:
    names = settings.models if settings.models is not None else [manifest.teacher]
    for name in names:
        entry = manifest.models.get(name)
        if entry is None:
            raise ExportError(f"model {name!r} is not in bundle {settings.bundle}; it has {sorted(manifest.models)}")
        if entry.takes != "raw_image":
            raise ExportError(f"model {name!r} takes {entry.takes} inputs; the export writes image classifiers")
        if entry.file is None:
            raise ExportError(f"model {name!r} has no ONNX file in bundle {settings.bundle}; Triton's onnxruntime "
                              "backend needs one")
    return list(names)


def export_model(name: str, manifest: Manifest, settings: TritonExportSettings) -> ExportedModel:
    """Write REPO/NAME (graph, config, labels) after checking the graph's parity and the config's parse."""
    import onnx

    entry = manifest.models[name]
    assert entry.file is not None  # _exported_models checked it
    original = verify_file(settings.bundle, manifest, entry.file)
    num_classes = len(manifest.classes)
    try:
        source = onnx.load(str(original))
    except Exception as err:  # onnx raises DecodeError and others for a broken file
        raise BundleError(f"{original}: onnx cannot read it: {err}") from err
    folded = fold_normalisation(source, manifest, num_classes=num_classes)
    parity = check_parity(original, folded, manifest, samples=settings.parity_samples)
    if not parity.ok:
        raise ExportError(f"model {name!r}: the folded graph differs from the original on {parity.samples} raw "
                          f"samples (labels equal: {parity.labels_equal}, max |dlogit| "
                          f"{parity.max_abs_logit_diff:.3g} > {PARITY_ATOL})")
    text = config_pbtxt(name, manifest, settings, num_classes=num_classes)
    try:
        config = parse_config(text)
    except ImportError:
        logger.warning("tritonclient[grpc] is not installed: config.pbtxt of %r not checked against Triton's "
                       "ModelConfig", name)
    else:
        if config.name != name or [t.name for t in config.output] != [LOGITS, LABEL]:
            raise ExportError(f"config.pbtxt of {name!r} parsed to a different model: {config}")

    directory = settings.out / name
    if directory.exists():
        shutil.rmtree(directory)  # a previous export of this model: nothing of it may linger
    (directory / VERSION).mkdir(parents=True)
    graph = directory / VERSION / MODEL_FILE
    onnx.save(folded, str(graph))
    (directory / LABELS_FILE).write_text("".join(f"{label}\n" for label in manifest.classes))
    config_path = directory / "config.pbtxt"
    config_path.write_text(text)
    return ExportedModel(name=name, directory=directory, config=config_path, graph=graph, parity=parity)


def export_repository(settings: TritonExportSettings) -> list[ExportedModel]:
    """Every model asked for, each checked before it is written; raises before writing anything on a bad name."""
    manifest = load_manifest(settings.bundle, verify=True)
    names = _exported_models(settings, manifest)
    settings.out.mkdir(parents=True, exist_ok=True)
    return [export_model(name, manifest, settings) for name in names]
