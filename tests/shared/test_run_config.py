"""shared/run_config.py: defaults < --config file < EDGECLOUD_<SCOPE>__ variables < flags, one error per bad key."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from cloud_server.settings import CloudSettings
from edge_agent.settings import EdgeSettings
from shared.run_config import (
    ConfigError,
    ConfigModel,
    Layer,
    Scope,
    env_layer,
    env_value,
    file_layer,
    flag_layer,
    resolve,
    value_layer,
    write_run_config,
)


class Link(ConfigModel):
    rtt_ms: float = 20.0
    """round trip."""
    name: str = "wifi"
    """what it is."""


class Run(ConfigModel):
    users: int = 1
    """devices."""
    link: Link = Field(default_factory=Link)
    """the link."""
    spare: Link | None = None
    """a second link, if any."""
    tags: list[str] = Field(default_factory=lambda: ["a", "b"])
    """a list: replaced whole."""
    knobs: dict[str, Any] = Field(default_factory=lambda: {"depth": 18, "width": 16})
    """a free-form dict: replaced whole."""
    switch_s: float = 20.0
    """may be infinite."""


FLAGS = {"users": "users", "link.rtt_ms": "rtt_ms", "link.name": "link_name"}


def _flags(**given: Any) -> Layer:
    args = argparse.Namespace(users=None, rtt_ms=None, link_name=None)
    for key, value in given.items():
        setattr(args, key, value)
    return flag_layer(args, FLAGS)


def _file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(values))
    return path


def test_each_layer_wins_over_the_one_below(tmp_path: Path) -> None:
    config = file_layer(_file(tmp_path, {"users": 2, "link": {"rtt_ms": 30.0, "name": "lte"}}))
    env = env_layer(Scope.ORCHESTRATE, {"EDGECLOUD_ORCHESTRATE__USERS": "3",
                                        "EDGECLOUD_ORCHESTRATE__LINK__RTT_MS": "40"})
    flags = _flags(rtt_ms=50.0)
    assert resolve(Run, Scope.ORCHESTRATE, []) == Run()
    only_file = resolve(Run, Scope.ORCHESTRATE, [config])
    assert (only_file.users, only_file.link) == (2, Link(rtt_ms=30.0, name="lte"))
    over_file = resolve(Run, Scope.ORCHESTRATE, [config, env])
    assert (over_file.users, over_file.link.rtt_ms) == (3, 40.0)
    over_env = resolve(Run, Scope.ORCHESTRATE, [config, env, flags])
    # Nested objects merge key by key: the flag's rtt, the variable's users, the file's link name.
    assert (over_env.users, over_env.link.rtt_ms, over_env.link.name) == (3, 50.0, "lte")
    # A preset (or a bundle's record) is the lowest layer of all.
    preset = value_layer({"users": 9, "link": {"name": "5g"}})
    assert resolve(Run, Scope.ORCHESTRATE, [preset]).users == 9
    assert resolve(Run, Scope.ORCHESTRATE, [preset, config]).users == 2
    assert resolve(Run, Scope.ORCHESTRATE, [preset, flags]).link == Link(rtt_ms=50.0, name="5g")


def test_lists_and_free_form_dicts_are_replaced_whole(tmp_path: Path) -> None:
    config = file_layer(_file(tmp_path, {"tags": ["c"], "knobs": {"width": 4}}))
    run = resolve(Run, Scope.BUILD, [config])
    assert run.tags == ["c"] and run.knobs == {"width": 4}


def test_nested_variables_and_whole_objects_as_json() -> None:
    env = env_layer(Scope.SPLIT, {"EDGECLOUD_SPLIT__LINK": '{"rtt_ms": 5}', "EDGECLOUD_SPLIT__LINK__NAME": "dsl",
                                  "EDGECLOUD_SPLIT__SPARE__RTT_MS": "7.5"})
    run = resolve(Run, Scope.SPLIT, [env])
    assert run.link == Link(rtt_ms=5.0, name="dsl")
    assert run.spare == Link(rtt_ms=7.5)


@pytest.mark.parametrize(("text", "value"), [
    ("5", 5), ("1e-3", 0.001), ("true", True), ("null", None), ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}),
    ("cuda:0", "cuda:0"), ("auto", "auto"), ("", ""), ("crop-flip", "crop-flip"),
])
def test_a_variable_is_json_where_it_parses_else_a_string(text: str, value: Any) -> None:
    assert env_value(text) == value


def test_only_the_scopes_double_underscore_variables_are_read() -> None:
    environ = {"EDGECLOUD_TOKEN": "secret", "EDGECLOUD_CLOUD_URL": "http://cloud", "EDGECLOUD_BUNDLE": "b",
               "EDGECLOUD_BUILD_USERS": "3", "EDGECLOUD_SPLIT__USERS": "4", "EDGECLOUD_BUILD__USERS": "5"}
    assert env_layer(Scope.ORCHESTRATE, environ).values == {}
    assert env_layer(Scope.BUILD, environ).values == {"users": 5}
    assert env_layer(Scope.SPLIT, environ).values == {"users": 4}


def test_the_servers_settings_ignore_the_run_variables(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLOUD_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("EDGECLOUD_CLOUD_URL", "http://cloud:8001")
    before = (CloudSettings(), EdgeSettings())
    for name, value in {"EDGECLOUD_BUILD__TEACHER__EPOCHS": "5", "EDGECLOUD_SPLIT__REGIME__DEADLINE_MS": "300",
                        "EDGECLOUD_ORCHESTRATE__USERS": "3", "EDGECLOUD_ORCHESTRATE__PORT": "9",
                        "EDGECLOUD_BUILD__THREADS": "3"}.items():
        monkeypatch.setenv(name, value)
    assert (CloudSettings(), EdgeSettings()) == before
    assert before[1].cloud_url is not None and str(before[1].cloud_url).startswith("http://cloud:8001")


def test_an_unknown_key_names_itself_and_its_layer(tmp_path: Path) -> None:
    path = _file(tmp_path, {"link": {"rtt": 1}})
    with pytest.raises(ConfigError, match=rf"--config {path}: unknown link setting\(s\) rtt; known: name, rtt_ms"):
        resolve(Run, Scope.BUILD, [file_layer(path)])
    with pytest.raises(ConfigError, match="EDGECLOUD_BUILD__USER: unknown build setting 'user'; known: knobs, link"):
        resolve(Run, Scope.BUILD, [env_layer(Scope.BUILD, {"EDGECLOUD_BUILD__USER": "3"})])
    with pytest.raises(ConfigError, match=r"EDGECLOUD_BUILD__LINK: unknown link setting\(s\) speed"):
        resolve(Run, Scope.BUILD, [env_layer(Scope.BUILD, {"EDGECLOUD_BUILD__LINK": '{"speed": 3}'})])
    args = argparse.Namespace(hops=3)
    with pytest.raises(ConfigError, match="--hops: unknown split setting 'hops'"):
        resolve(Run, Scope.SPLIT, [flag_layer(args, {"hops": "hops"})])
    with pytest.raises(ConfigError, match=rf"--config {path}: build setting 'link' must be an object, got 3"):
        resolve(Run, Scope.BUILD, [file_layer(_file(tmp_path, {"link": 3}))])


def test_a_bad_value_is_one_error_naming_the_field_and_its_layer(tmp_path: Path) -> None:
    env = env_layer(Scope.ORCHESTRATE, {"EDGECLOUD_ORCHESTRATE__LINK__RTT_MS": "fast"})
    with pytest.raises(ConfigError, match=r"^invalid orchestrate setting link.rtt_ms "
                                          r"\(EDGECLOUD_ORCHESTRATE__LINK__RTT_MS\): Input should be a valid number"):
        resolve(Run, Scope.ORCHESTRATE, [env])
    with pytest.raises(ConfigError, match=r"invalid orchestrate setting users \(--users\): Input should be a valid"):
        resolve(Run, Scope.ORCHESTRATE, [_flags(users="many")])
    path = _file(tmp_path, {"users": []})
    with pytest.raises(ConfigError, match=rf"invalid build setting users \(--config {path}\)"):
        resolve(Run, Scope.BUILD, [file_layer(path)])


class Needs(ConfigModel):
    bundle: Path
    """required."""


def test_a_missing_setting_names_its_flag_and_variable() -> None:
    layer = flag_layer(argparse.Namespace(bundle=None), {"bundle": "bundle"})
    with pytest.raises(ConfigError, match="invalid split setting bundle: missing: give --bundle, "
                                          "EDGECLOUD_SPLIT__BUNDLE or the config file's key"):
        resolve(Needs, Scope.SPLIT, [layer])


def test_a_bad_file_or_variable_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a JSON object, got list"):
        file_layer(_file(tmp_path, [1]))  # type: ignore[arg-type]
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        file_layer(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="EDGECLOUD_BUILD__LINK__: empty setting name"):
        env_layer(Scope.BUILD, {"EDGECLOUD_BUILD__LINK__": "x"})
    with pytest.raises(ConfigError, match="EDGECLOUD_BUILD__USERS__X: users is already set to 3 by "
                                          "EDGECLOUD_BUILD__USERS"):
        env_layer(Scope.BUILD, {"EDGECLOUD_BUILD__USERS": "3", "EDGECLOUD_BUILD__USERS__X": "1"})


def test_the_config_a_run_used_is_written_and_reads_back_as_a_config_file(tmp_path: Path) -> None:
    run = Run(users=4, link=Link(rtt_ms=3.5), spare=Link(name="lte"), switch_s=math.inf)
    path = write_run_config(run, tmp_path / "out")
    assert path == tmp_path / "out" / "config.json"
    assert json.loads(path.read_text())["switch_s"] == "Infinity"  # JSON has no inf
    assert resolve(Run, Scope.ORCHESTRATE, [file_layer(path)]) == run
    partial = write_run_config(run, tmp_path, name="partial.json", exclude={"spare", "knobs"})
    assert set(json.loads(partial.read_text())) == {"users", "link", "tags", "switch_s"}
