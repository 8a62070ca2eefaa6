"""Recipes for every workflow: YAML files (shipped in `sparse_transfer/recipes/<kind>/`, or
the user's own), with `base:` inheritance and dotted `key=value` overrides, validated into
typed dataclass sections (in the spirit of FFCV's). An unknown key or a value of the wrong
type fails with one line naming the key and the file."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from sparse_transfer.utils.errors import ConfigurationError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"  # shipped with the package


class RecipeError(ConfigurationError):
    """A recipe that cannot run: the message names the key, the file and the fix."""


def build_section(cls, values: dict, where: str, prefix: str = ""):
    """`cls(**values)` with nested dataclass sections built recursively and every value
    checked against the field's type hint (ints are accepted for floats)."""
    if not isinstance(values, dict):
        raise RecipeError(f"section '{prefix.rstrip('.') or 'recipe'}' in {where} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise RecipeError(f"unknown key '{prefix}{key}' in {where}; valid keys: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], where, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(value, hint, where: str, key: str):
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value or {}, where, f"{key}.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _coerce(value, hint, where, key)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"key '{key}' in {where} must be a list, got {value!r}")
        return [_coerce(v, args[0], where, key) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"key '{key}' in {where} must be a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML reads 1e-4 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise RecipeError(f"key '{key}' in {where} must be {hint.__name__}, got {value!r}")
    return value


def recipe_names(kind: str) -> list[str]:
    """The names of the recipes shipped for a workflow (`transfer`, `upstream`, `vision`)."""
    return sorted(path.stem for path in (RECIPE_DIR / kind).glob("*.yaml"))


def read_sections(source, kind: str, overrides: Mapping | Sequence[str] | None = None) -> tuple[dict, str]:
    """The raw sections of a recipe and where they come from. `source`: a YAML path, the
    name of a recipe shipped for workflow `kind` (`recipes/<kind>/<name>.yaml`), a dict, or
    None (the defaults). A file's `base: other.yaml` (relative to it) starts from another
    recipe, so variants state only what differs. `overrides` win over the source, in one
    syntax for every workflow: dotted keys, as a mapping (`{"pruning.sparsity": 0.8}`; None
    values are ignored) or as `key=value` strings (`sparsity.target=0.95`, values read as YAML)."""
    if source is None:
        values, where = {}, "<defaults>"
    elif isinstance(source, dict):
        values, where = copy.deepcopy(source), "<dict>"
    else:
        path = Path(source)
        shipped = RECIPE_DIR / kind / f"{source}.yaml"
        if not path.exists() and shipped.exists():
            path = shipped
        if not path.is_file():
            raise RecipeError(f"recipe {source} does not exist; give a YAML path or one of the {kind} recipes: "
                              f"{', '.join(recipe_names(kind))}")
        values, where = _read_with_base(path), str(path)
    for key, value in parse_overrides(overrides).items():
        *parents, leaf = key.split(".")
        section = values
        for parent in parents:
            section = section.setdefault(parent, {})
            if not isinstance(section, dict):
                raise RecipeError(f"override {key}: '{parent}' in {where} is not a section")
        section[leaf] = value
    return values, where


def parse_overrides(overrides: Mapping | Sequence[str] | None) -> dict:
    """Dotted key -> value from a mapping or from `key=value` strings."""
    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        return {key: value for key, value in overrides.items() if value is not None}
    parsed = {}
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise RecipeError(f"override {override!r} is not key=value (dotted for sections: sparsity.target=0.95)")
        parsed[key] = yaml.safe_load(raw)
    return parsed


def _read_with_base(path: Path) -> dict:
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as problem:
        raise RecipeError(f"recipe {path} is not valid YAML: {str(problem).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections, got {type(values).__name__}")
    base = values.pop("base", None)
    return _merge(_read_with_base(path.parent / base), values) if base else values


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both_sections else value
    return merged


def check_training_keys(training: dict, where: str) -> None:
    """Every key of a recipe's `training:` section must be a `TrainingArguments` field."""
    from transformers import TrainingArguments

    valid = {f.name for f in dataclasses.fields(TrainingArguments)}
    for key in training:
        if key not in valid:
            raise RecipeError(f"unknown key 'training.{key}' in {where}: not a TrainingArguments field")


class YamlRecipe:
    """`to_dict` and `save` for a recipe dataclass."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
