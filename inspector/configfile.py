"""YAML config files for dataclass configs: defaults < YAML file < command-line flags.

Every unknown key, wrong type or bad value is a ConfigError naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
    return data


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        inner = typing.get_args(hint)
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(_coerce(v, inner[0], key, source) for v in value)
        if len(inner) != len(value):
            raise ConfigError(f"{source}: {key}: expected {len(inner)} values, got {len(value)}")
        return tuple(_coerce(v, h, key, source) for v, h in zip(value, inner))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, (str, Path)):
            return str(value)
    else:
        return value
    raise ConfigError(f"{source}: {key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def build(cls: type[T], values: dict[str, Any], source: str) -> T:
    """Construct dataclass `cls` from a mapping, checking each key and type; then cls.validate(source)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{source}: unknown key {key!r} (known keys: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], key, source)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(source)
    return obj


def resolve(cls: type[T], config_file: str | Path | None, flags: dict[str, Any]) -> T:
    """defaults < YAML file < flags (flags that are None were not given)."""
    values: dict[str, Any] = load_yaml(config_file) if config_file else {}
    source = str(config_file) if config_file else "options"
    given = {k: v for k, v in flags.items() if v is not None}
    build(cls, values, source)  # checked alone first, so an error in the file names the file
    return build(cls, {**values, **given}, source if not given else f"{source} + flags")


def require(ok: bool, source: str, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {key}: {message}")
