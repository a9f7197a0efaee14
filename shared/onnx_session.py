"""The one place ONNX sessions are opened with the project's settings, and the one batch-predict helper.

Every side runs ONNX graphs (the edge its student, servers their models, the offline tools their
parity checks and evaluations); all of them open sessions here, so threads, providers and graph
optimisation are set once. onnxruntime is imported when a session is opened, never at import time:
`shared/` is imported by every side, and a side without onnxruntime must still import it.

    session = open_session(Path("bundle/student.onnx"), threads=1)
    logits = batch_logits(session, normalize(x_raw, mean, std))     # (N, K), in batches
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

INPUT = "input"
OUTPUT = "logits"


class SessionError(RuntimeError):
    """onnxruntime cannot load a graph; the message names the file."""


def open_session(path: Path | str | bytes, *, threads: int | None = None, serving: bool = False) -> Any:
    """An onnxruntime InferenceSession on the CPU provider (``path`` may be the model's bytes).

    ``threads`` sets intra-op threads (one inter-op thread: our graphs are one chain); None leaves
    onnxruntime's default (all cores), which offline tools want and a pinned server does not.
    ``serving`` is for a model behind a server's event loop: sequential execution and no busy-waiting
    between passes (idle spinning threads would steal the loop's core). A graph onnxruntime cannot
    load raises SessionError naming it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if serving:
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = path if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own untyped errors for a bad graph
        what = "the graph" if isinstance(path, bytes) else str(path)
        raise SessionError(f"{what}: onnxruntime cannot load it: {err}") from err


def batch_logits(session: Any, x: np.ndarray, *, batch_size: int = 1024, output: str = OUTPUT) -> np.ndarray:
    """(N, K) ``output`` of ``session`` on already-normalised (N, C, H, W) ``x``, ``batch_size`` at a time."""
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {x.shape}")
    parts = [session.run([output], {INPUT: np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)})[0]
             for i in range(0, len(x), batch_size)]
    if not parts:
        raise ValueError("x holds no samples")
    return np.concatenate(parts)
