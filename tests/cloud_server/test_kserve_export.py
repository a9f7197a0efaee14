"""`edgecloud export kserve`: InferenceService manifests that the KServe Python SDK's models accept field by field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kserve.models as kserve_models
import kubernetes.client.models as k8s_models
import pytest
import yaml

from cloud_server.kserve_export import (
    EDGECLOUD_FILE,
    TRITON_FILE,
    KServeExportSettings,
    manifests,
)
from edgecloud.cli import main

_PRIMITIVES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool, "float": (int, float),
                                                   "object": object}
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")


class NotInTheModel(ValueError):
    """A manifest key the SDK's model has no field for (a typo KServe's API server would reject)."""


def build(value: Any, type_name: str, where: str = "$") -> Any:
    """`value` (parsed YAML) as the SDK model `type_name`, strictly: an unknown key raises NotInTheModel, a wrong
    primitive type TypeError, and the generated models' own checks (required fields, enums) their ValueError.

    The SDK's ApiClient would drop unknown keys silently, and it resolves model names in kserve.models only,
    while an InferenceService nests Kubernetes' own models (V1ObjectMeta, V1Container) from kubernetes.client.
    """
    if (match := _LIST.match(type_name)) is not None:
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        return [build(item, match[1], f"{where}[{i}]") for i, item in enumerate(value)]
    if (match := _DICT.match(type_name)) is not None:
        assert isinstance(value, dict), f"{where}: expected a mapping, got {value!r}"
        return {key: build(item, match[1] or match[2], f"{where}.{key}") for key, item in value.items()}
    if type_name in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[type_name]):
            raise TypeError(f"{where}: expected {type_name}, got {value!r}")
        return value
    cls = getattr(kserve_models, type_name, None) or getattr(k8s_models, type_name)
    by_json_key = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    kwargs = {}
    for key, item in value.items():
        if key not in by_json_key:
            raise NotInTheModel(f"{where}.{key}: {type_name} has no field {key!r}")
        attr = by_json_key[key]
        kwargs[attr] = build(item, cls.openapi_types[attr], f"{where}.{key}")
    return cls(**kwargs)


@pytest.fixture
def settings(tiny_bundle: Path, tmp_path: Path) -> KServeExportSettings:
    return KServeExportSettings(bundle=tiny_bundle, out=tmp_path / "kserve", namespace="models",
                                repository_uri="s3://models/triton-repo", bundle_uri="s3://models/tiny",
                                image="registry.example/edgecloud:0.1.0", token_secret="edgecloud-token", threads=2,
                                min_replicas=1, max_replicas=6, scale_target=24)


def test_both_manifests_are_inference_services_the_sdk_accepts(settings: KServeExportSettings) -> None:
    written = manifests(settings)
    assert sorted(written) == sorted([TRITON_FILE, EDGECLOUD_FILE])
    for name, service in written.items():
        model = build(service, "V1beta1InferenceService")
        assert isinstance(model, kserve_models.V1beta1InferenceService), name
        assert (model.api_version, model.kind) == ("serving.kserve.io/v1beta1", "InferenceService")
        assert model.metadata.namespace == "models"
        predictor = model.spec.predictor
        assert (predictor.min_replicas, predictor.max_replicas) == (1, 6)
        assert (predictor.scale_metric, predictor.scale_target) == ("concurrency", 24)


def test_the_triton_service_runs_kserves_triton_runtime_over_the_exported_repository(
        settings: KServeExportSettings) -> None:
    model = build(manifests(settings)[TRITON_FILE], "V1beta1InferenceService")
    assert model.metadata.name == "edgecloud-triton"
    spec = model.spec.predictor.model
    assert spec.model_format.name == "triton" and spec.protocol_version == "v2"
    assert spec.storage_uri == "s3://models/triton-repo"
    assert model.spec.predictor.containers is None  # the stock runtime, not an image of ours


def test_the_edgecloud_service_runs_cloud_serve_on_the_downloaded_bundle(settings: KServeExportSettings) -> None:
    model = build(manifests(settings)[EDGECLOUD_FILE], "V1beta1InferenceService")
    (container,) = model.spec.predictor.containers
    assert isinstance(container, k8s_models.V1Container)
    assert container.name == "kserve-container" and container.image == "registry.example/edgecloud:0.1.0"
    assert container.command == ["edgecloud", "cloud", "serve"]
    assert container.args[container.args.index("--bundle") + 1] == "/mnt/models"
    assert container.args[container.args.index("--models") + 1] == "teacher"
    assert container.args[container.args.index("--threads") + 1] == "2"
    port = int(container.args[container.args.index("--port") + 1])
    assert [p.container_port for p in container.ports] == [port] == [container.readiness_probe.http_get.port]
    env = {e.name: e for e in container.env}
    assert env["STORAGE_URI"].value == "s3://models/tiny"
    token = env["EDGECLOUD_TOKEN"].value_from.secret_key_ref
    assert (token.name, token.key, env["EDGECLOUD_TOKEN"].value) == ("edgecloud-token", "token", None)


def test_the_strict_check_catches_a_misspelt_field(settings: KServeExportSettings) -> None:
    service = manifests(settings)[TRITON_FILE]
    service["spec"]["predictor"]["model"]["storageURI"] = service["spec"]["predictor"]["model"].pop("storageUri")
    with pytest.raises(NotInTheModel, match="storageURI"):
        build(service, "V1beta1InferenceService")


def test_only_the_services_whose_uri_is_given_are_written(tiny_bundle: Path, tmp_path: Path) -> None:
    only_triton = KServeExportSettings(bundle=tiny_bundle, out=tmp_path, repository_uri="gs://m/repo")
    assert list(manifests(only_triton)) == [TRITON_FILE]
    with pytest.raises(ValueError, match="repository_uri"):
        KServeExportSettings(bundle=tiny_bundle, out=tmp_path)
    with pytest.raises(ValueError, match="'Edge_Cloud' is not a Kubernetes name"):
        KServeExportSettings(bundle=tiny_bundle, out=tmp_path, bundle_uri="s3://b", name="Edge_Cloud")


def test_the_command_writes_yaml_that_reads_back_as_the_same_services(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "written"
    code = main(["export", "kserve", "--bundle", str(tiny_bundle), "--out", str(out), "--repository-uri",
                 "s3://models/triton-repo", "--bundle-uri", "s3://models/tiny"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([TRITON_FILE, EDGECLOUD_FILE])
    said = capsys.readouterr().out
    for path in out.iterdir():
        assert f"kubectl apply -f {path}" in said
        assert yaml.safe_load(path.read_text()) == manifests(KServeExportSettings(
            bundle=tiny_bundle, out=out, repository_uri="s3://models/triton-repo", bundle_uri="s3://models/tiny"))[path.name]
        build(yaml.safe_load(path.read_text()), "V1beta1InferenceService")


def test_the_command_names_a_model_the_bundle_lacks(tiny_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "kserve", "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--bundle-uri", "s3://b",
                 "--models", "teacher,nope"])
    assert code == 1
    assert "model 'nope' is not in bundle" in capsys.readouterr().err
