"""Half-size ONNX files: float32 weights stored as float16, cast back to float32 inside the graph.

A bundle kept in the repository should be small (a width-32 ResNet-18 teacher is 11.2 MB in float32).
Storing its weights in float16 halves the file; a Cast node in front of every converted weight turns it
back into float32, so the graph still computes in float32 and takes and returns the same tensors, and
onnxruntime folds the casts away when it loads the session (no run-time cost). Only the weights lose
precision (a relative 2^-11); whether that changes any answer is measured, never assumed:
`edgecloud pack` re-evaluates every packed model and records its accuracy in the manifest.

    to_fp16_storage(Path("bundle/teacher.onnx"), Path("packed/teacher.onnx"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_ELEMENTS = 64
"""Smaller float tensors (biases, BN shifts folded into convs) stay float32: they save nothing worth it."""


def to_fp16_storage(src: Path, dst: Path, *, min_elements: int = MIN_ELEMENTS) -> int:
    """Write ``src`` to ``dst`` with large float32 initializers stored as float16; returns how many."""
    model = onnx.load(str(src))
    graph = model.graph
    graph_inputs = {i.name for i in graph.input}
    keep, casts, converted = [], [], 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in graph_inputs:
            keep.append(init)
            continue
        array = numpy_helper.to_array(init)
        if array.size < min_elements:
            keep.append(init)
            continue
        half = f"{init.name}__fp16"
        keep.append(numpy_helper.from_array(array.astype(np.float16), name=half))
        casts.append(helper.make_node("Cast", [half], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"))
        converted += 1
    del graph.initializer[:]
    graph.initializer.extend(keep)
    # The casts run first: every consumer still reads the float32 tensor under its old name.
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return converted
