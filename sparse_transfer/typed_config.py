"""Typed configuration sections (in the spirit of FFCV's): a nested dict from YAML is
validated into dataclasses by their type hints. An unknown key or a value of the wrong
type fails with one line naming the key and the file. NLP and vision recipes share it."""

from __future__ import annotations

import dataclasses
import types
import typing


def build_section(cls, values: dict, where: str, error: type[Exception], prefix: str = ""):
    """`cls(**values)` with nested dataclass sections built recursively and every value
    checked against the field's type hint (ints are accepted for floats)."""
    if not isinstance(values, dict):
        raise error(f"section '{prefix.rstrip('.') or 'recipe'}' in {where} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise error(f"unknown key '{prefix}{key}' in {where}; valid keys: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], where, f"{prefix}{key}", error)
    return cls(**kwargs)


def _coerce(value, hint, where: str, key: str, error: type[Exception]):
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value or {}, where, error, f"{key}.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _coerce(value, hint, where, key, error)
    if origin is list:
        if not isinstance(value, list):
            raise error(f"key '{key}' in {where} must be a list, got {value!r}")
        return [_coerce(v, args[0], where, key, error) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise error(f"key '{key}' in {where} must be a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML reads 1e-4 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise error(f"key '{key}' in {where} must be {hint.__name__}, got {value!r}")
    return value
