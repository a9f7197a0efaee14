"""The bundle's teacher.onnx behind a real NVIDIA Triton server, as bench/triton_compare.py's reference.

Runs in .venv-triton (Python 3.12, `make .venv-triton/.installed`), never in the project's venv:

    LD_LIBRARY_PATH=/root/.pyenv/versions/3.12.1/lib .venv-triton/bin/python bench/_triton_server.py \
        --onnx B/teacher.onnx --mean 33.3 --std 78.6 --shape 1,28,28 --threads 1 --http-port 8100
    # a graph from `edgecloud export triton`, which normalises raw pixels itself:
    ... bench/_triton_server.py --onnx REPO/teacher/1/model.onnx --raw-input --shape 1,28,28 --http-port 8100

pytriton starts the `tritonserver` binary its wheel ships, with Triton's python backend: Triton's own
HTTP front end and dynamic batcher take the requests, and each batch reaches `_infer` in this process.
The model answers exactly what our cloud server's `teacher` answers (docs/architecture.md, "Model
names on the wire"): input `input` UINT8 [-1, C, H, W] raw pixels, outputs `logits` FP32 [-1, K] and
`label` INT64 (as [-1, 1]: see the binding), so one OIP request body works against both. The normalisation and the
onnxruntime session are the project's own (shared.preprocess, serving.backends.OnnxBackend),
imported from the repository, so the two servers differ only in the serving around them.

SIGTERM or SIGINT stops Triton and its python-backend stubs cleanly. With $TRITON_COMPARE_TOKEN set,
that is the token pytriton's protected endpoints (statistics among them) want in `triton-access-token`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the project's packages, importable without installing them here

from serving.backends import OnnxBackend  # noqa: E402  (needs the path above)
from shared.preprocess import ImagePreprocessor  # noqa: E402

TOKEN_ENV = "TRITON_COMPARE_TOKEN"  # pytriton guards /v2/models/*/stats; the bench reads batch sizes there


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def serve(args: argparse.Namespace) -> None:
    """Bind the teacher and block until SIGTERM/SIGINT."""
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    shape = tuple(args.shape)  # (C, H, W)
    if args.raw_input:
        normalise = None  # the graph normalises (`edgecloud export triton` folded it in)
    else:
        if args.mean is None or args.std is None:
            raise SystemExit("_triton_server: --mean and --std are required without --raw-input")
        try:
            normalise = ImagePreprocessor(shape=shape, dtype="uint8", mean=args.mean, std=args.std).normalize
        except ValueError as err:
            raise SystemExit(f"_triton_server: --shape/--mean/--std: {err}") from None
    backend = OnnxBackend(args.onnx, threads=args.threads)

    def logits_of(x: np.ndarray) -> np.ndarray:
        return backend.infer(x if normalise is None else normalise(x))  # (N, K): the graph's first output

    # One pass before serving: it warms the session and tells the number of classes for the config.
    classes = logits_of(np.zeros((1, *shape), np.uint8)).shape[1]

    @batch
    def _infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        # Triton has checked dtype and shape against the config; the normalisation is the project's one.
        logits = logits_of(inputs["input"])  # (N, K)
        return {"logits": logits, "label": logits.argmax(axis=1).astype(np.int64)[:, None]}

    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port, grpc_address="127.0.0.1",
                          grpc_port=args.grpc_port, metrics_port=args.metrics_port, log_verbose=0)
    # Dynamic batching as our cloud server does it (cloud_server/settings.py, serving/batcher.py): up to
    # max_batch_size samples, the oldest request waiting at most max_queue_delay for others. pytriton adds
    # preferred_batch_size [max_batch_size]: a full batch leaves at once, a partial one when the delay runs out.
    model_config = ModelConfig(
        max_batch_size=args.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=round(args.max_queue_delay_ms * 1000)),
    )
    # SIGTERM as Ctrl-C: Triton.serve() then stops the server and the stubs and cleans its workspace.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # pytriton's default protection (statistics, repository, ... need a token), with a token the bench knows.
    security = TritonSecurityConfig(access_token=os.environ.get(TOKEN_ENV) or None)
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=args.model,
            infer_func=_infer,
            inputs=[Tensor(name="input", dtype=np.uint8, shape=shape)],
            outputs=[Tensor(name="logits", dtype=np.float32, shape=(classes,)),
                     # Triton wants at least one dim per sample and pytriton exposes no `reshape`, so the
                     # label travels as [N, 1] here where ours sends [N]; the request body is the same.
                     Tensor(name="label", dtype=np.int64, shape=(1,))],
            config=model_config,
            strict=True,
        )
        triton.serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, required=True, help="the teacher's ONNX graph (float32 NCHW in)")
    parser.add_argument("--mean", type=_floats, help="per-channel mean of raw pixels, e.g. 33.3")
    parser.add_argument("--std", type=_floats, help="per-channel std of raw pixels, e.g. 78.6")
    parser.add_argument("--raw-input", action="store_true",
                        help="the graph takes raw UINT8 pixels and normalises them itself (a graph from `edgecloud "
                             "export triton`); --mean and --std are then not used")
    parser.add_argument("--shape", type=_ints, required=True, help="one sample's C,H,W, e.g. 1,28,28")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--max-batch-size", type=int, default=64, help="Triton's max_batch_size (samples)")
    parser.add_argument("--max-queue-delay-ms", type=float, default=2.0,
                        help="Triton's dynamic batcher max_queue_delay, in ms")
    parser.add_argument("--model", default="teacher", help="name to serve it under (the manifest's teacher)")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=0, help="0: Triton's default (8001)")
    parser.add_argument("--metrics-port", type=int, default=0, help="0: Triton's default (8002)")
    args = parser.parse_args(argv)
    args.grpc_port = args.grpc_port or None
    args.metrics_port = args.metrics_port or None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
