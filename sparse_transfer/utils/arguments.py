"""Command-line arguments shared by the entry points: values as argv (so that recipe
and file defaults go through the same `HfArgumentParser` as the command line), and a
whole argument set from one JSON / YAML file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from sparse_transfer.utils.errors import ConfigurationError


def as_argv(values: dict) -> list[str]:
    argv = []
    for key, value in values.items():
        if value is None:  # unset: leave the field's default
            continue
        argv.append(f"--{key}")
        argv.extend(str(v) for v in value) if isinstance(value, list) else argv.append(str(value))
    return argv


def read_arguments_file(path: str) -> list[str]:
    values = (json.loads if path.endswith(".json") else yaml.safe_load)(Path(path).read_text())
    if not isinstance(values, dict):
        raise ConfigurationError(f"arguments file {path} must hold a mapping of argument names to values")
    return as_argv(values)


def given_flags(argv: list[str]) -> set[str]:
    """The flag names present in `argv` (`--name v` or `--name=v`)."""
    return {arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")}


def with_defaults(argv: list[str], defaults: dict) -> list[str]:
    """`argv` preceded by the defaults it does not set (the command line wins)."""
    given = given_flags(argv)
    return as_argv({k: v for k, v in defaults.items() if k not in given}) + argv


def without_flags(argv: list[str], flags: set[str]) -> list[str]:
    """`argv` minus the given flags and their values (`--flag v` or `--flag=v`, bools alone)."""
    kept, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in flags:
            has_value = "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            skip = has_value
            continue
        kept.append(arg)
    return kept


def int_list(text: str) -> list[int]:
    """`1-7` (inclusive) or `2,3,5` -> a list of ints; [] when the text is neither."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            return list(range(first, last + 1))
        return [int(part) for part in text.split(",")]
    except ValueError:
        return []
