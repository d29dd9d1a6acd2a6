"""Typed validation of nested JSON/TOML data against dataclasses, shared by the training config and model
cards: unknown keys are named with the known ones, types are checked, and every problem is one line
naming the file and the key (``config.toml: optim.lr: expected a number, got 'fast'``)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from ..errors import InputError


def field_error(source: str, key: str, message: str) -> InputError:
    return InputError(f"{key}: {message}", source)


def describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "an object"
    return {
        bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"
    }.get(annotation, str(annotation))  # fmt: skip


def coerce(value: Any, annotation: Any, source: str, key: str) -> Any:
    """Check `value` against the field's annotation; convert arrays to lists / tuples, ints to floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, source, key)
            except InputError:
                pass
        raise field_error(source, key, f"expected {describe(annotation)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise field_error(source, key, f"expected {describe(annotation)}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise field_error(source, key, f"expected a list of {len(args)} numbers, got {value!r}")
        return tuple(
            coerce(v, a, source, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise field_error(source, key, f"expected a list, got {value!r}")
        return [coerce(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise field_error(source, key, "expected a table / object")
        return build(annotation, value, source, f"{key}.")
    if origin is dict:  # free-form objects (a card's network config, its metrics); contents checked elsewhere
        if not isinstance(value, Mapping):
            raise field_error(source, key, f"expected an object, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise field_error(source, key, f"expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise field_error(source, key, f"expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise field_error(source, key, f"expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise field_error(source, key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r}")  # a programming error


def checked(cls: type, data: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """The entries of `data` checked against the dataclass `cls` (nested dataclasses built): only the keys
    present, so a caller can tell a key left out from one set to its default."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise field_error(source, prefix + unknown[0], f"unknown key (known: {', '.join(sorted(fields))})")
    required = [
        n for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in data
    ]  # fmt: skip
    if required:
        raise field_error(source, prefix + required[0], "required key is missing")
    return {name: coerce(value, hints[name], source, prefix + name) for name, value in data.items()}


def build(cls: type, data: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """An instance of the dataclass `cls` from checked `data`."""
    return cls(**checked(cls, data, source, prefix))
