"""Typed configuration sections (in the spirit of FFCV's): a nested dict from YAML is
validated into dataclasses by their type hints. An unknown key or a value of the wrong
type fails with one line naming the key and the file. NLP and vision recipes share it."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml


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


def read_sections(source, recipe_dir: Path, error: type[Exception]) -> tuple[dict, str]:
    """The raw sections of a recipe and where they come from: a YAML path, a bare name
    of a file in `recipe_dir`, a dict, or None (the defaults)."""
    if source is None:
        return {}, "<defaults>"
    if isinstance(source, dict):
        return dict(source), "<dict>"
    path = Path(source)
    if not path.exists() and (recipe_dir / f"{source}.yaml").exists():
        path = recipe_dir / f"{source}.yaml"
    if not path.is_file():
        raise error(f"recipe file {source} does not exist; give a YAML path or a name from {recipe_dir}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as problem:
        raise error(f"recipe {path} is not valid YAML: {str(problem).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise error(f"recipe {path} must be a mapping of sections, got {type(values).__name__}")
    return values, str(path)


def check_training_keys(training: dict, where: str, error: type[Exception]) -> None:
    """Every key of a recipe's `training:` section must be a `TrainingArguments` field."""
    from transformers import TrainingArguments

    valid = {f.name for f in dataclasses.fields(TrainingArguments)}
    for key in training:
        if key not in valid:
            raise error(f"unknown key 'training.{key}' in {where}: not a TrainingArguments field")


class YamlRecipe:
    """`to_dict` and `save` for a recipe dataclass."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
