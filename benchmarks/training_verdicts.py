#!/usr/bin/env python
"""The under-/over-training verdict (sparse_transfer/transfer/verdict.py) on the recorded runs:
- every run directory under benchmarks/work/ with `eval_results.json` and `epoch_metrics.csv`
  (the whole per-epoch curve);
- the records of benchmarks/results/glue/ (sparse_transfer_glue.py), which keep only the best and
  the final epoch: read as a curve of those one or two points, so a run whose best epoch is its
  last is `undetermined` there (telling `undertrained` needs the epoch before the last).
Writes benchmarks/results/training_verdicts.md.

    python benchmarks/training_verdicts.py
"""

from __future__ import annotations

import collections
import json

from common import GLUE_RECORDS, ROOT, WORK

from sparse_transfer.glue import get_task
from sparse_transfer.transfer.verdict import loss_key, training_verdict
from sparse_transfer.utils.io import markdown_table, read_csv, write_text_atomic

TABLE = ROOT / "benchmarks" / "results" / "training_verdicts.md"


def curves():
    """(name, task, recipe, metric key, epoch rows, source) of every run with a curve."""
    for results_path in sorted(WORK.rglob("eval_results.json")):
        run_dir = results_path.parent
        if (run_dir / "epoch_metrics.csv").exists():
            results = json.loads(results_path.read_text())
            yield (run_dir.name, results["task"], results["recipe"], results["main_metric"], read_csv(run_dir / "epoch_metrics.csv"),
                   "whole curve")
    for record_path in sorted(GLUE_RECORDS.glob("*.json")):
        record = json.loads(record_path.read_text())
        metric = "eval_" + get_task(record["task"]).main_metric
        points = [record["best"]] if record["best"]["epoch"] == record["final"]["epoch"] else \
            [record["best"], record["final"]]
        yield record_path.stem, record["task"], record["recipe"], metric, points, "best and final epochs"


def main() -> None:
    rows, counts = [], collections.Counter()
    for name, task, recipe, metric, curve, source in curves():
        loss = loss_key(metric, get_task(task).main_metric)
        verdict = training_verdict(curve, metric, loss)
        counts[(source, verdict["verdict"])] += 1
        rows.append([name, task, recipe, source, " ".join(f"{row['epoch']:g}:{100 * row[metric]:.1f}" for row in curve),
                     " ".join(f"{row[loss]:.2f}" for row in curve), verdict["verdict"]])
    text = ("# Training verdicts of the recorded runs\n\nRead by `sparse_transfer.transfer.verdict.training_verdict` "
            "(thresholds in that module), from each run directory's per-epoch curve, or from the best and final "
            "epochs that `benchmarks/results/glue/` records keep.\n\n"
            + markdown_table(["run", "task", "recipe", "read from", "epoch:main metric", "eval loss", "verdict"], rows)
            + "\nCounts: " + "; ".join(f"{source}: {verdict} {count}" for (source, verdict), count
                                       in sorted(counts.items())) + "\n")
    write_text_atomic(TABLE, text)
    print(text)


if __name__ == "__main__":
    main()
