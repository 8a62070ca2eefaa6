#!/usr/bin/env python
"""The under-/over-training verdict (sparse_transfer/verdict.py) on every recorded run that
still has its per-epoch curve: the run directories under benchmarks/work/ that hold
`eval_results.json` and `epoch_metrics.csv`. Writes benchmarks/results/training_verdicts.md.

    python benchmarks/training_verdicts.py
"""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

from sparse_transfer.reports import markdown_table, write_text_atomic
from sparse_transfer.glue import get_task
from sparse_transfer.verdict import loss_key, training_verdict

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
TABLE = ROOT / "benchmarks" / "results" / "training_verdicts.md"


def epoch_curve(run_dir: Path) -> list[dict]:
    with open(run_dir / "epoch_metrics.csv") as f:
        return [{key: float(value) if value not in ("", "None") else None for key, value in row.items()}
                for row in csv.DictReader(f)]


def main() -> None:
    rows, counts = [], collections.Counter()
    for results_path in sorted(WORK.rglob("eval_results.json")):
        run_dir = results_path.parent
        if not (run_dir / "epoch_metrics.csv").exists():
            continue
        results = json.loads(results_path.read_text())
        metric = results["main_metric"]
        loss = loss_key(metric, get_task(results["task"]).main_metric)
        curve = epoch_curve(run_dir)
        verdict = training_verdict(curve, metric, loss)
        counts[verdict["verdict"]] += 1
        rows.append([run_dir.name, results["task"], results["recipe"],
                     " ".join(f"{100 * row[metric]:.1f}" for row in curve),
                     " ".join(f"{row[loss]:.2f}" for row in curve),
                     verdict["verdict"]])
    text = ("# Training verdicts of the recorded runs\n\nEvery run directory under benchmarks/work/ with a per-epoch "
            "curve, read by `sparse_transfer.verdict.training_verdict` (thresholds in that module).\n\n"
            + markdown_table(["run", "task", "recipe", "main metric per epoch", "eval loss per epoch", "verdict"], rows)
            + "\nCounts: " + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) + "\n")
    write_text_atomic(TABLE, text)
    print(text)


if __name__ == "__main__":
    main()
