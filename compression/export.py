"""ONNX export of a student or teacher, and a parity check of the exported graph against torch.

The graph takes float32 ``input`` (N, C, H, W), already normalised, and returns ``logits`` (N, K),
with N dynamic: the names the edge and the cloud use on the wire (docs/architecture.md).

With torch 2.13 both exporters work offline. The legacy TorchScript exporter (``dynamo=False``) is
deprecated but still present; it is the default here because it exports a plain conv net in a
fraction of a second at the requested opset, with all weights inside one file. The torch.export
(dynamo) exporter is the fallback for a torch that no longer ships the legacy one; it needs
opset >= 18 and is told to keep the weights inline (``external_data=False``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
from torch import nn

from shared.onnx_session import SessionError, open_session

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_DYNAMO_MIN_OPSET = 18  # the dynamo exporter has no implementations below this opset


class ExportError(RuntimeError):
    """The exported file is not the self-contained graph with the agreed interface."""


class ParityError(RuntimeError):
    """The ONNX graph and the torch model disagree on the same inputs."""


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _export_legacy(model: nn.Module, dummy: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        # The deprecation notice is known (see module docstring) and says nothing about this export.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def _export_dynamo(model: nn.Module, dummy: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        # torch.export's own internals trip this pytree deprecation; nothing in our model does.
        warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*", category=FutureWarning)
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=True, opset_version=max(opset, _DYNAMO_MIN_OPSET),
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False,
        )


def _check_graph(path: Path, input_shape: tuple[int, int, int]) -> None:
    """The file must be a valid, self-contained graph with the agreed names and a dynamic batch."""
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(f"{path}: weights {external[:3]} were written to external files")
    inputs, outputs = [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(f"{path}: expected input {INPUT_NAME!r} / output {OUTPUT_NAME!r}, "
                           f"got {inputs} / {outputs}")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if dims[0].dim_value or [d.dim_value for d in dims[1:]] != list(input_shape):
        shown = [d.dim_param or d.dim_value for d in dims]
        raise ExportError(f"{path}: input must be (batch, *{input_shape}), got {shown}")


def export_onnx(model: nn.Module, path: Path, *, input_shape: tuple[int, int, int], opset: int = 17,
                exporter: Literal["auto", "legacy", "dynamo"] = "auto") -> Path:
    """Write ``model`` (switched to eval mode) to ``path`` as one self-contained .onnx file.

    ``input_shape`` is (C, H, W); the batch axis is dynamic. ``exporter="auto"`` uses the legacy
    exporter and falls back to dynamo only if the legacy one fails.
    """
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
    if exporter not in ("auto", "legacy", "dynamo"):
        raise ValueError(f"exporter must be 'auto', 'legacy' or 'dynamo', got {exporter!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    # Batch 2, not 1: a batch of one lets a tracer specialise the batch axis to a constant.
    dummy = torch.zeros(2, *input_shape, device=_device_of(model))
    if exporter == "dynamo":
        _export_dynamo(model, dummy, path, opset)
    elif exporter == "legacy":
        _export_legacy(model, dummy, path, opset)
    else:
        try:
            _export_legacy(model, dummy, path, opset)
        except (RuntimeError, TypeError, NotImplementedError, AttributeError) as exc:
            log.warning("legacy ONNX exporter failed (%s); retrying with the dynamo exporter", exc)
            _export_dynamo(model, dummy, path, opset)
    _check_graph(path, tuple(int(d) for d in input_shape))
    return path


def check_parity(model: nn.Module, onnx_path: Path, x: np.ndarray, *, atol: float = 1e-4) -> float:
    """Max |logit_onnx - logit_torch| over ``x`` (normalised float (N, C, H, W)); ParityError if > atol.

    onnxruntime (CPU) and the torch model (eval mode, on its own device) see the same real inputs,
    so a wrong weight, a wrong model or a lossy export all surface here instead of at the edge.
    """
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"x must be a non-empty (N, C, H, W) batch, got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not Path(onnx_path).is_file():
        raise FileNotFoundError(f"ONNX file {onnx_path} does not exist")
    try:
        session = open_session(onnx_path)  # SessionError when onnxruntime cannot load the graph
        onnx_logits = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    except (SessionError, ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.InvalidGraph,
            ort_errors.InvalidProtobuf, ort_errors.RuntimeException) as exc:
        raise ParityError(f"{onnx_path} cannot run on inputs of shape {x.shape}: {exc}") from exc
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            torch_logits = model(torch.from_numpy(x).to(_device_of(model))).float().cpu().numpy()
    except RuntimeError as exc:  # e.g. a model built for another input shape
        raise ParityError(f"the torch model cannot run on inputs of shape {x.shape}: {exc}") from exc
    finally:
        model.train(was_training)
    if onnx_logits.shape != torch_logits.shape:
        raise ParityError(f"{onnx_path} gives logits of shape {onnx_logits.shape}, "
                          f"the torch model {torch_logits.shape}")
    diff = np.abs(onnx_logits.astype(np.float64) - torch_logits.astype(np.float64))
    # NaN compares False against atol; a NaN anywhere must fail, not pass.
    max_diff = float(diff.max()) if np.isfinite(diff).all() else float("inf")
    if max_diff > atol:
        raise ParityError(f"{onnx_path} differs from the torch model by up to {max_diff:.3g} > atol {atol:g}")
    return max_diff
