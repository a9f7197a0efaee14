"""Command-line flags generated from a settings class, so a setting is declared once (type, default, help).

    add_settings_arguments(parser, CloudSettings, CloudSettings.model_fields)   # --max-batch-size, ...
    settings = settings_from_args(CloudSettings, args)                           # flags over EDGECLOUD_*
    problems = describe_invalid(err)                                             # one line per bad field

A flag left out keeps the `EDGECLOUD_<FIELD>` variable or the default. Secret fields (tokens) get
no flag at all: a secret on a command line is visible to every user of the machine (`ps`).
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ENV_PREFIX = "EDGECLOUD_"


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def is_secret(info: FieldInfo) -> bool:
    return _unwrap_optional(info.annotation) is SecretStr


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "computed at start"
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return "unset"
    return str(info.default)


def add_settings_arguments(parser: argparse.ArgumentParser, settings_cls: type[BaseSettings],
                           fields: Iterable[str]) -> list[str]:
    """One `--field-name` flag per field (secrets skipped), typed and documented from the class; the names."""
    added = []
    for name in fields:
        info = settings_cls.model_fields[name]
        if is_secret(info):
            continue
        annotation = _unwrap_optional(info.annotation)
        help_text = (f"{info.description or name} (default: {_default_text(info)}; env {ENV_PREFIX}"
                     f"{name.upper()})").replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is Literal:
            kwargs["choices"] = [str(choice) for choice in get_args(annotation)]
        elif annotation in (int, float, Path):
            kwargs["type"] = annotation
        else:  # str, URLs, comma-separated lists: the settings class parses and validates the text
            kwargs["metavar"] = name.upper()
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)
        added.append(name)
    return added


def overrides(args: argparse.Namespace, fields: Iterable[str]) -> dict[str, Any]:
    """The flags the user gave, as settings fields."""
    return {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}


def describe_invalid(err: ValidationError) -> list[str]:
    """`invalid FIELD: message` per problem, without echoing the rejected value (it may be a secret)."""
    lines = []
    for problem in err.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "settings"
        lines.append(f"invalid {field}: {problem['msg']}")
    return lines
