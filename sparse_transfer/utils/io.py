"""Files the toolkit writes: atomically (a reader never sees half a file, an interrupted
write leaves the previous version), CSV tables of numbers, Markdown tables."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path: str | Path, newline: str | None = None):
    """Write through a temporary file and rename: a reader never sees half a file,
    and an interrupted write leaves the previous version intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, newline=newline) as f:
        yield f
    os.replace(f.name, path)


def write_json_atomic(path: str | Path, data) -> None:
    with atomic_open(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_csv(rows: list[dict], path: str | Path) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | Path) -> list[dict]:
    """The rows `write_csv` wrote, numbers as floats and empty cells (or None) as None."""
    with open(path, newline="") as f:
        return [{key: float(value) if value not in ("", "None") else None for key, value in row.items()}
                for row in csv.DictReader(f)]


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
