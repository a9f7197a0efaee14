"""`edgecloud export triton` / `edgecloud export kserve`: the cloud's models for other serving engines."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from pydantic_settings import BaseSettings

from cloud_server.kserve_export import KServeExportSettings
from cloud_server.triton_export import TritonExportSettings
from serving.cli import add_settings_arguments, describe_invalid, overrides


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("export", help="write the cloud's models for Triton or KServe",
                            description="Exports for serving engines that speak the same Open Inference Protocol "
                                        "as `edgecloud cloud serve`, so the edge works unchanged against them.")
    export_sub = parser.add_subparsers(dest="export_command", metavar="TARGET", required=True)
    _target(
        export_sub, "triton", TritonExportSettings, run_triton,
        help_text="a Triton model repository (onnxruntime backend, raw UINT8 input, dynamic batching)",
        description=(
            "Writes OUT/NAME/config.pbtxt, OUT/NAME/labels.txt and OUT/NAME/1/model.onnx for the bundle's teacher "
            "(or --models). The graph takes raw pixels: the bundle's normalisation is folded into it as Cast, Mul "
            "and Add nodes, and an ArgMax gives `label`, so Triton's stock onnxruntime backend serves the tensors "
            "our cloud serves (input `input`, outputs `logits`, `label`). Each graph is checked against the "
            "original one on random raw pixels, and each config.pbtxt is parsed with Triton's ModelConfig "
            "protobuf, before anything is written. Then: tritonserver --model-repository OUT. "
            "Example: edgecloud export triton --bundle artifacts/mnist --out triton-repo"))
    _target(
        export_sub, "kserve", KServeExportSettings, run_kserve,
        help_text="KServe InferenceService manifests (Triton over the exported repository; our image)",
        description=(
            "Writes two InferenceService manifests (serving.kserve.io/v1beta1) to OUT: "
            "inferenceservice-triton.yaml, KServe's Triton runtime over a model repository from `edgecloud "
            "export triton` uploaded to --repository-uri; and inferenceservice-edgecloud.yaml, our own image as a "
            "custom predictor serving the bundle from --bundle-uri. Both speak the v2 protocol on the same paths, "
            "so the edge's --cloud-url may point at either. Example: edgecloud export kserve --bundle "
            "artifacts/mnist --out kserve/ --repository-uri s3://models/triton-repo --bundle-uri "
            "s3://models/mnist --image registry.example/edgecloud:0.1.0"))


def _target(export_sub: Any, name: str, settings_cls: type[BaseSettings], handler: Callable[[argparse.Namespace], int],
            *, help_text: str, description: str) -> None:
    """One export target: its flags come from its settings class, and its handler reads them back from there."""
    target = export_sub.add_parser(name, help=help_text, description=description, allow_abbrev=False)
    fields = add_settings_arguments(target, settings_cls, settings_cls.model_fields)
    target.set_defaults(handler=handler, settings_fields=fields)


def _settings(cls: type, args: argparse.Namespace, prog: str) -> Any:
    from pydantic import ValidationError

    try:
        return cls(**overrides(args, args.settings_fields))
    except ValidationError as err:
        for line in describe_invalid(err):
            print(f"{prog}: {line}", file=sys.stderr)
        return None


def run_triton(args: argparse.Namespace) -> int:
    prog = "edgecloud export triton"
    logging.basicConfig(level="WARNING", stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = _settings(TritonExportSettings, args, prog)
    if settings is None:
        return 2
    try:
        import onnx  # noqa: F401  (the export's one extra dependency, named before any work)
    except ImportError:
        print(f"{prog}: the export needs the onnx package: pip install 'edgecloud[export]'", file=sys.stderr)
        return 2
    from cloud_server.triton_export import ExportError, export_repository
    from shared.bundle import BundleError

    try:
        exported = export_repository(settings)
    except (ExportError, BundleError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    for model in exported:
        print(f"{model.name}: {model.graph} (raw pixels in; {model.parity.samples} samples: labels equal, "
              f"max |dlogit| {model.parity.max_abs_logit_diff:.2g} against the original graph)")
        print(f"{' ' * len(model.name)}  {model.config}")
    print(f"repository {settings.out}: tritonserver --model-repository {settings.out}")
    return 0


def run_kserve(args: argparse.Namespace) -> int:
    prog = "edgecloud export kserve"
    settings = _settings(KServeExportSettings, args, prog)
    if settings is None:
        return 2
    from cloud_server.kserve_export import write_manifests
    from shared.bundle import BundleError

    try:
        written = write_manifests(settings)
    except BundleError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"{path}: kubectl apply -f {path}")
    return 0
