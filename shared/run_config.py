"""One way to configure a run, the same for `edgecloud build`, `split` and `orchestrate` (pydantic + stdlib).

A run's settings are one pydantic model. They come in layers, each over the one before it:

1. the model's defaults (for `build`: the preset's values; for `split`: the bundle's regime);
2. a JSON file (`--config FILE`), an object in the model's shape: `{"teacher": {"epochs": 5}}`;
3. environment variables `EDGECLOUD_<SCOPE>__<FIELD>[__<SUBFIELD>...]`, SCOPE one of BUILD, SPLIT or
   ORCHESTRATE: `EDGECLOUD_BUILD__TEACHER__EPOCHS=5`. A value is read as JSON when it parses as JSON
   (`5`, `true`, `null`, `[1, 2]`, `{"epochs": 5}`) and as a string otherwise (`cuda`);
4. command-line flags, only those given.

Nested settings objects merge key by key; any other value (a list, a free-form dict) replaces the one
below it whole. A key the model does not have is an error that names the key and its layer (the file,
the variable or the flag), so a typo never vanishes; a value the model refuses is one error naming the
field's path and, where one set it, its layer. `write_run_config` writes the settings a run used
(`config.json`) beside its results.

The servers read `EDGECLOUD_<FIELD>` (EDGECLOUD_TOKEN, EDGECLOUD_CLOUD_URL, ...: serving/cli.py). The
double underscore after the scope keeps the two apart: nothing here reads a variable without it, and
no server setting is named `build__...`, `split__...` or `orchestrate__...`.

    layers = [file_layer(args.config), env_layer(Scope.ORCHESTRATE), flag_layer(args, FLAGS)]
    spec = resolve(SimSpec, Scope.ORCHESTRATE, layers)
    write_run_config(spec, args.out)
"""

from __future__ import annotations

import argparse
import json
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

ENV_PREFIX = "EDGECLOUD_"
CONFIG_JSON = "config.json"
"""The settings a run used, written beside its results."""

M = TypeVar("M", bound=BaseModel)
KeyPath = tuple[str, ...]


class ConfigModel(BaseModel):
    """Base of every run's settings model: an unknown key is an error, a field's docstring its description."""

    # Infinite values (a switch time of inf: never) are written as "Infinity", which reads back.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, ser_json_inf_nan="strings")


class Scope(StrEnum):
    """Which command's settings: the part of the variables' names after EDGECLOUD_."""

    BUILD = "build"
    SPLIT = "split"
    ORCHESTRATE = "orchestrate"

    @property
    def env_prefix(self) -> str:
        return f"{ENV_PREFIX}{self.name}__"

    def variable(self, path: KeyPath) -> str:
        """The environment variable that sets the setting at `path`."""
        return self.env_prefix + "__".join(part.upper() for part in path)


class ConfigError(ValueError):
    """A layer of a run's settings is unusable; the message names the key or field and the layer."""


@dataclass(frozen=True)
class Layer:
    """One layer of settings in the model's shape, and where each of its keys came from."""

    values: dict[str, Any]
    """settings as nested dicts, in the model's shape."""
    origins: Mapping[KeyPath, str] = field(default_factory=dict)
    """where the value at a key path came from (a variable's or a flag's name), for messages."""
    name: str = ""
    """where the whole layer came from (a file), used where `origins` names nothing."""
    flags: Mapping[KeyPath, str] = field(default_factory=dict)
    """every flag the command has, by the setting it sets: named when a required setting is missing."""

    def origin(self, path: KeyPath) -> str:
        """The source of the value at `path`: its own, an enclosing key's, or the ones under it."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.origins:
                return self.origins[path[:end]]
        below = sorted({src for key, src in self.origins.items() if key[:len(path)] == path})
        return ", ".join(below) if below else self.name


def file_layer(path: Path | None) -> Layer:
    """The JSON object in a `--config` file (an empty layer without one)."""
    if path is None:
        return Layer({})
    name = f"--config {path}"
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{name}: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a JSON object, got {type(raw).__name__}")
    return Layer(raw, name=name)


def env_value(text: str) -> Any:
    """A variable's value: JSON where it parses (numbers, true, null, lists, objects), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def env_layer(scope: Scope, environ: Mapping[str, str] | None = None) -> Layer:
    """The `EDGECLOUD_<SCOPE>__...` variables of `environ` (the process's by default) as one layer."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[KeyPath, str] = {}
    # Sorted, so that a variable setting a whole object comes before the ones setting its keys.
    for name in sorted(n for n in environ if n.startswith(scope.env_prefix)):
        path = tuple(part.lower() for part in name[len(scope.env_prefix):].split("__"))
        if not all(path):
            raise ConfigError(f"{name}: empty setting name; write {scope.env_prefix}<FIELD>[__<SUBFIELD>...]")
        _put(values, path, env_value(environ[name]), what=name, origins=origins)
        origins[path] = name
    return Layer(values, origins=origins)


def flag_layer(args: argparse.Namespace, table: Mapping[str, str],
               convert: Mapping[str, Callable[[Any], Any]] | None = None) -> Layer:
    """The flags given on a command line: `table` maps a setting's dotted path to its argparse dest.

    A flag left at None was not given and sets nothing; `convert` turns a flag's value into the
    setting's (a comma-separated list into a list, ...)."""
    values: dict[str, Any] = {}
    origins: dict[KeyPath, str] = {}
    flags: dict[KeyPath, str] = {}
    for dotted, dest in table.items():
        path = tuple(dotted.split("."))
        flag = "--" + dest.replace("_", "-")
        flags[path] = flag
        value = getattr(args, dest, None)
        if value is None:
            continue
        if convert and dotted in convert:
            value = convert[dotted](value)
        _put(values, path, value, what=flag, origins=origins)
        origins[path] = flag
    return Layer(values, origins=origins, flags=flags)


def value_layer(values: Mapping[str, Any], name: str = "") -> Layer:
    """Settings given in code (a preset, a bundle's record), named `name` in messages."""
    return Layer(_copy(values), name=name)


def _put(values: dict[str, Any], path: KeyPath, value: Any, *, what: str, origins: Mapping[KeyPath, str]) -> None:
    node = values
    for depth, key in enumerate(path[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            other = origins.get(path[:depth + 1], "another setting")
            raise ConfigError(f"{what}: {'.'.join(path[:depth + 1])} is already set to {child!r} by {other}")
        node = child
    last = node.get(path[-1])
    node[path[-1]] = {**value, **last} if isinstance(value, dict) and isinstance(last, dict) else value


def _copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (itself, or inside `X | None`), or None for any other value."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in get_args(annotation) if a is not type(None)]
        annotation = models[0] if len(models) == 1 else None
    if get_origin(annotation) is None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def check_keys(model: type[BaseModel], values: Mapping[str, Any], layer: Layer, scope: Scope,
               path: KeyPath = ()) -> None:
    """Every key of `values` is a field of `model` (recursively); ConfigError naming it and `layer` if not."""
    fields = model.model_fields
    unknown = [key for key in values if key not in fields]
    if unknown:
        where = layer.origin((*path, unknown[0]))
        known = ", ".join(sorted(fields))
        what = (f"unknown {scope} setting {unknown[0]!r}" if not path
                else f"unknown {'.'.join(path)} setting(s) {', '.join(unknown)}")
        raise ConfigError(f"{where + ': ' if where else ''}{what}; known: {known}")
    for key, value in values.items():
        sub = nested_model(fields[key].annotation)
        if sub is None or value is None:
            continue
        if isinstance(value, BaseModel):
            continue  # a model given in code is already checked
        if not isinstance(value, Mapping):
            where = layer.origin((*path, key))
            dotted = ".".join((*path, key))
            raise ConfigError(f"{where + ': ' if where else ''}{scope} setting {dotted!r} must be an object, "
                              f"got {value!r}")
        check_keys(sub, value, layer, scope, (*path, key))


def merge(model: type[BaseModel], below: Mapping[str, Any], above: Mapping[str, Any]) -> dict[str, Any]:
    """`above` over `below`: key by key inside nested settings models, any other value replaced whole."""
    out = dict(below)
    for key, value in above.items():
        info = model.model_fields.get(key)
        sub = nested_model(info.annotation) if info is not None else None
        if sub is not None and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(sub, out[key], value)
        else:
            out[key] = _copy(value) if isinstance(value, Mapping) else value
    return out


def _leaves(values: Mapping[str, Any], path: KeyPath = ()) -> Iterator[KeyPath]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key)


Prepare = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
"""(a layer's values, the layers below it merged) -> the layer's values in the model's current shape."""


def merged(model: type[BaseModel], scope: Scope, layers: Sequence[Layer], *, prepare: Prepare | None = None
           ) -> tuple[dict[str, Any], dict[KeyPath, Layer]]:
    """The layers merged, lowest first, each checked for unknown keys; and which layer set each value."""
    out: dict[str, Any] = {}
    setters: dict[KeyPath, Layer] = {}
    for layer in layers:
        values = prepare(_copy(layer.values), out) if prepare is not None else layer.values
        check_keys(model, values, layer, scope)
        out = merge(model, out, values)
        setters.update({path: layer for path in _leaves(values)})
    return out, setters


def resolve(model: type[M], scope: Scope, layers: Sequence[Layer], *, prepare: Prepare | None = None,
            finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> M:
    """The model validated from `layers` (lowest first); ConfigError naming the key or field and its layer.

    `prepare` turns each layer into the model's current shape before it is checked (old key names,
    values that depend on what the layers below set); `finish` the merged settings, before they are
    validated (values that depend on them all, such as a level relative to the bundle's teacher)."""
    values, setters = merged(model, scope, layers, prepare=prepare)
    if finish is not None:
        values = finish(values)
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise ConfigError(describe(err, scope, setters, layers)) from None


def describe(err: ValidationError, scope: Scope, setters: Mapping[KeyPath, Layer] | None = None,
             layers: Sequence[Layer] = ()) -> str:
    """One line per problem: `invalid SCOPE setting PATH (LAYER): message`."""
    setters = setters or {}
    lines = []
    for problem in err.errors():
        path = tuple(str(part) for part in problem["loc"])
        msg = problem["msg"].removeprefix("Value error, ")
        source = _source(path, setters)
        if problem["type"] == "missing":
            flag = next((layer.flags[path] for layer in layers if path in layer.flags), None)
            msg = f"missing: give {flag + ', ' if flag else ''}{scope.variable(path)} or the config file's key"
        dotted = ".".join(path)
        lines.append(f"invalid {scope} setting{' ' + dotted if dotted else ''}"
                     f"{f' ({source})' if source else ''}: {msg}")
    return "; ".join(lines)


def _source(path: KeyPath, setters: Mapping[KeyPath, Layer]) -> str:
    for end in range(len(path), 0, -1):
        if path[:end] in setters:
            return setters[path[:end]].origin(path[:end])
    under = sorted({layer.origin(key) for key, layer in setters.items() if path and key[:len(path)] == path})
    return ", ".join(s for s in under if s)


def run_config_json(config: BaseModel, *, exclude: set[str] | None = None) -> str:
    """The settings a run used as JSON, in the shape a `--config` file takes (`exclude`: sections it did not use)."""
    return config.model_dump_json(indent=2, exclude=exclude) + "\n"


def write_run_config(config: BaseModel, out_dir: Path, *, name: str = CONFIG_JSON,
                     exclude: set[str] | None = None) -> Path:
    """Write the settings a run used to `out_dir/name` (config.json), beside the run's results."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(run_config_json(config, exclude=exclude))
    return path
