"""`edgecloud export kserve`: InferenceService manifests that the KServe Python SDK's models accept field by field.

The SDK runs in a process of its own (tests/cloud_server/kserve_sdk.py says why); one run judges every
manifest these tests need.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_server.kserve_export import EDGECLOUD_FILE, TRITON_FILE, KServeExportSettings, manifests
from edgecloud.cli import main
from tests.deploy.tools import REPO_ROOT

URIS = ["--repository-uri", "s3://models/triton-repo", "--bundle-uri", "s3://models/tiny"]


def _settings(bundle: Path, out: Path) -> KServeExportSettings:
    return KServeExportSettings(bundle=bundle, out=out, namespace="models", repository_uri="s3://models/triton-repo",
                                bundle_uri="s3://models/tiny", image="registry.example/edgecloud:0.1.0",
                                token_secret="edgecloud-token", threads=2, min_replicas=1, max_replicas=6,
                                scale_target=24)


def _within(part: Any, whole: Any) -> bool:
    """Every key of `part`, at every depth, is in `whole` with the same value (lists item by item)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _within(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(part) == len(whole) and all(map(_within, part, whole))
    return part == whole


@pytest.fixture(scope="module")
def written(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every manifest the tests judge: the full export, the command's YAML files, and a misspelt one."""
    services = dict(manifests(_settings(tiny_bundle, tmp_path_factory.mktemp("kserve"))))
    out = tmp_path_factory.mktemp("kserve-cli")
    assert main(["export", "kserve", "--bundle", str(tiny_bundle), "--out", str(out), *URIS]) == 0
    for path in sorted(out.iterdir()):
        services[f"cli/{path.name}"] = yaml.safe_load(path.read_text())
    misspelt = copy.deepcopy(services[TRITON_FILE])
    misspelt["spec"]["predictor"]["model"]["storageURI"] = misspelt["spec"]["predictor"]["model"].pop("storageUri")
    services["misspelt"] = misspelt
    return services


@pytest.fixture(scope="module")
def verdicts(written: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "tests.cloud_server.kserve_sdk"], input=json.dumps(written),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_both_manifests_are_inference_services_the_sdk_accepts_key_for_key(
        written: dict[str, dict[str, Any]], verdicts: dict[str, dict[str, Any]]) -> None:
    for name in (TRITON_FILE, EDGECLOUD_FILE, f"cli/{TRITON_FILE}", f"cli/{EDGECLOUD_FILE}"):
        verdict = verdicts[name]
        assert verdict["ok"], (name, verdict.get("error"))
        assert verdict["type"] == "V1beta1InferenceService"
        # Every key became a model field and came back unchanged (the SDK adds its defaults, e.g. the model's name).
        assert _within(written[name], verdict["back"]), (name, verdict["back"])
    assert verdicts[EDGECLOUD_FILE]["container_types"] == ["V1Container"]


def test_the_services_scale_on_requests_in_flight(written: dict[str, dict[str, Any]]) -> None:
    for name in (TRITON_FILE, EDGECLOUD_FILE):
        service = written[name]
        assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
        assert service["metadata"]["namespace"] == "models"
        predictor = service["spec"]["predictor"]
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 6)
        assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 24)


def test_the_triton_service_runs_kserves_triton_runtime_over_the_exported_repository(
        written: dict[str, dict[str, Any]]) -> None:
    service = written[TRITON_FILE]
    assert service["metadata"]["name"] == "edgecloud-triton"
    predictor = service["spec"]["predictor"]
    assert "containers" not in predictor  # the stock runtime, not an image of ours
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "triton"} and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "s3://models/triton-repo"


def test_the_edgecloud_service_runs_cloud_serve_on_the_downloaded_bundle(written: dict[str, dict[str, Any]]) -> None:
    (container,) = written[EDGECLOUD_FILE]["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container" and container["image"] == "registry.example/edgecloud:0.1.0"
    assert container["command"] == ["edgecloud", "cloud", "serve"]
    args = container["args"]
    assert args[args.index("--bundle") + 1] == "/mnt/models"
    assert args[args.index("--models") + 1] == "teacher"
    assert args[args.index("--threads") + 1] == "2"
    port = int(args[args.index("--port") + 1])
    probe_port = container["readinessProbe"]["httpGet"]["port"]
    assert [p["containerPort"] for p in container["ports"]] == [port] == [probe_port]
    env = {e["name"]: e for e in container["env"]}
    assert env["STORAGE_URI"]["value"] == "s3://models/tiny"
    assert env["EDGECLOUD_TOKEN"] == {"name": "EDGECLOUD_TOKEN",
                                      "valueFrom": {"secretKeyRef": {"name": "edgecloud-token", "key": "token"}}}


def test_the_sdk_check_catches_a_misspelt_field(verdicts: dict[str, dict[str, Any]]) -> None:
    assert not _within({"a": {"b": 1}}, {"a": {"b": 2, "c": 3}}) and _within({"a": [1]}, {"a": [1], "c": 3})
    assert not verdicts["misspelt"]["ok"]
    assert "NotInTheModel" in verdicts["misspelt"]["error"] and "storageURI" in verdicts["misspelt"]["error"]


def test_only_the_services_whose_uri_is_given_are_written(tiny_bundle: Path, tmp_path: Path) -> None:
    only_triton = KServeExportSettings(bundle=tiny_bundle, out=tmp_path, repository_uri="gs://m/repo")
    assert list(manifests(only_triton)) == [TRITON_FILE]
    with pytest.raises(ValueError, match="repository_uri"):
        KServeExportSettings(bundle=tiny_bundle, out=tmp_path)
    with pytest.raises(ValueError, match="'Edge_Cloud' is not a Kubernetes name"):
        KServeExportSettings(bundle=tiny_bundle, out=tmp_path, bundle_uri="s3://b", name="Edge_Cloud")


def test_the_command_says_how_to_apply_each_file(tiny_bundle: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "kserve", "--bundle", str(tiny_bundle), "--out", str(tmp_path), *URIS]) == 0
    said = capsys.readouterr().out
    for name in (TRITON_FILE, EDGECLOUD_FILE):
        assert f"kubectl apply -f {tmp_path / name}" in said


def test_the_command_names_a_model_the_bundle_lacks(tiny_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "kserve", "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--bundle-uri", "s3://b",
                 "--models", "teacher,nope"])
    assert code == 1
    assert "model 'nope' is not in bundle" in capsys.readouterr().err
