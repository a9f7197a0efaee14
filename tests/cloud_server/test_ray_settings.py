"""`edgecloud cloud ray-serve` without a cluster: its settings, the Serve options they become, and the prefix path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cloud_server.ray_serve import deployment_options, replica_fields, runtime_env
from cloud_server.settings import CloudSettings, RayServeSettings
from edgecloud.cli import main
from serving.fastpath import route_path


def test_fixed_replicas_reserve_one_ray_cpu_per_thread(tiny_bundle: Path) -> None:
    options = deployment_options(RayServeSettings(bundle=tiny_bundle, replicas=3, threads=2))
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 2.0}
    assert deployment_options(RayServeSettings(bundle=tiny_bundle, threads=2, replica_cpus=0.5))[
        "ray_actor_options"]["num_cpus"] == 0.5


def test_max_replicas_turns_on_autoscaling_on_queue_length(tiny_bundle: Path) -> None:
    options = deployment_options(RayServeSettings(bundle=tiny_bundle, replicas=2, max_replicas=8, target_queue=12,
                                                  max_ongoing_requests=64, max_queued_requests=500))
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 8,
                                             "target_ongoing_requests": 12}
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (64, 500)


def test_the_token_reaches_replicas_by_environment_never_in_their_fields(tiny_bundle: Path) -> None:
    settings = RayServeSettings(bundle=tiny_bundle, token=SecretStr("s3cret"), replicas=2)
    fields = replica_fields(settings)
    assert "token" not in fields and "s3cret" not in repr(fields)
    assert set(fields) < set(CloudSettings.model_fields)  # what each replica builds its CloudSettings from
    assert runtime_env(settings) == {"env_vars": {"EDGECLOUD_TOKEN": "s3cret"}}
    assert deployment_options(settings)["ray_actor_options"]["runtime_env"] == runtime_env(settings)
    assert runtime_env(RayServeSettings(bundle=tiny_bundle)) == {}


def test_bad_settings_name_the_value(tiny_bundle: Path) -> None:
    with pytest.raises(ValidationError, match="max_replicas 2 is below replicas 3"):
        RayServeSettings(bundle=tiny_bundle, replicas=3, max_replicas=2)
    with pytest.raises(ValidationError, match="route_prefix"):
        RayServeSettings(bundle=tiny_bundle, route_prefix="no-slash")


def test_the_command_refuses_bad_flags_before_touching_ray(tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    assert main(["cloud", "ray-serve", "--bundle", str(tiny_bundle), "--replicas", "3", "--max-replicas", "2"]) == 2
    assert "max_replicas 2 is below replicas 3" in capsys.readouterr().err
    assert main(["cloud", "ray-serve", "--bundle", str(tiny_bundle), "--models", "teacher,nope"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize(("path", "root_path", "expected"), [
    ("/v2/models/teacher/infer", "", "/v2/models/teacher/infer"),  # `cloud serve`, Ray Serve at route_prefix "/"
    ("/two/v2/models/teacher/infer", "/two", "/v2/models/teacher/infer"),  # Ray Serve at route_prefix "/two"
    ("/v2/models/teacher/infer", "/two", "/v2/models/teacher/infer"),  # a server that strips the prefix itself
])
def test_the_infer_fast_path_sees_the_path_below_the_mount_point(path: str, root_path: str, expected: str) -> None:
    assert route_path({"type": "http", "path": path, "root_path": root_path}) == expected
