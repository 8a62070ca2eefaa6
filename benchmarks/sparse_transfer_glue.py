"""Reproduce the paper's sparse-transfer comparison (2308.02060, Tables 6-7) at CPU scale.

The real MiniLM (6 blocks) dense, and pruned one-shot to 90% with our prune CLI, on the
real GLUE RTE, MRPC and STS-B; every run goes through `run_glue.py` and a recipe:

  dense_reference   dense model, dense-transfer recipe (3 epochs)
  dense_transfer    90% model, dense-transfer recipe (3 epochs)
  extended_dense    90% model, extended dense-transfer recipe (8 epochs)
  gradual_unfreeze  90% model, gradual unfreezing with LR rewinding (1 + 6 + 1 = 8 epochs)

LR rule (every method tuned alike): each method tries two LRs and, per task and seed,
keeps the one with the better best-epoch dev score. Resumable: finished runs are skipped
(an interrupted one starts over), so the matrix can be completed over several sittings;
every finished run is recorded under benchmarks/results/glue/ and the tables are rebuilt
from those records.

    python benchmarks/sparse_transfer_glue.py run [--tasks rte] [--seeds 0] [--methods ...]
    python benchmarks/sparse_transfer_glue.py report      # rebuild benchmarks/RESULTS.md tables
"""

from __future__ import annotations

import argparse
import json
import statistics

from common import GLUE_RECORDS as RECORDS
from common import ROOT, WORK, dense_model, glue_run, sparse_model

from sparse_transfer.utils.io import write_json_atomic, write_text_atomic

TABLES = ROOT / "benchmarks" / "results" / "glue_tables.md"
STEP_TIMES = ROOT / "benchmarks" / "results"  # step_time_cpu*.json, written by benchmarks/step_time.py

METHODS = {  # name: (model, recipe, learning rates)
    "dense_reference": ("dense", "dense_transfer", [2e-5, 1e-4]),
    "dense_transfer": ("sparse90", "dense_transfer", [1e-4, 2e-4]),
    "extended_dense": ("sparse90", "extended_dense_transfer", [1e-4, 2e-4]),
    "gradual_unfreeze": ("sparse90", "gradual_unfreeze", [1e-4, 2e-4]),
}
SEEDS = {"rte": [0, 1], "mrpc": [0], "stsb": [0]}
MAIN_METRIC = {"rte": "eval_accuracy", "mrpc": "eval_f1", "stsb": "eval_pearson"}
# What a constant answer scores on the dev sets: read every number against it
# (RTE: 146 of 277 are `entailment`; MRPC: 279 of 408 are paraphrases, so F1 = 2*279/(279+408))
CONSTANT_ANSWER = {"rte": ("majority class (`entailment`)", 146 / 277),
                   "mrpc": ("always `equivalent`", 2 * 279 / (279 + 408))}


def run_name(task: str, method: str, lr: float, seed: int) -> str:
    return f"{task}_{method}_lr{lr:g}_seed{seed}"


def run_one(task: str, method: str, lr: float, seed: int) -> None:
    name = run_name(task, method, lr, seed)
    record = RECORDS / f"{name}.json"
    if record.exists():
        print(f"[skip] {name}: recorded")
        return
    model_kind, recipe, _ = METHODS[method]
    model = dense_model() if model_kind == "dense" else sparse_model()
    print(f"[run] {name}", flush=True)
    measured = glue_run(task, model, recipe, lr, seed, WORK / name)
    RECORDS.mkdir(parents=True, exist_ok=True)
    entry = {"task": task, "method": method, "learning_rate": lr, "seed": seed, "recipe": recipe,
             "model": model_kind, **measured}
    write_json_atomic(record, entry)  # a record exists only for a finished run


def load_records() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))]


def chosen_runs(records: list[dict]) -> dict:
    """(task, method, seed) -> the run at the LR with the better best-epoch score."""
    chosen = {}
    for r in records:
        key = (r["task"], r["method"], r["seed"])
        metric = MAIN_METRIC[r["task"]]
        if key not in chosen or r["best"][metric] > chosen[key]["best"][metric]:
            chosen[key] = r
    return chosen


def step_time_lines() -> list[str]:
    """The step-time ratios of `benchmarks/step_time.py` on this model, one column per sequence length."""
    measured = [json.loads(p.read_text()) for p in sorted(STEP_TIMES.glob("step_time_cpu*.json"))]
    measured = sorted((m for m in measured if "stage_ratios" in m), key=lambda m: -m["length"])
    if not measured:
        return ["Step time per stage: not measured yet "
                "(`python benchmarks/step_time.py --json benchmarks/results/step_time_cpu.json`)."]
    rows = {"stage 0 step": "stage0_ratio", "final stage step": "final_stage_ratio",
            f"mean step over the {len(measured[0]['stage_ratios'])} stages": "recipe_mean_step_ratio"}
    lines = ["| gradual unfreezing / dense fine-tuning (`step_time.py`) | "
             + " | ".join(f"length {m['length']}" for m in measured) + " |",
             "|---|" + "---|" * len(measured)]
    lines += [f"| {name} | " + " | ".join(f"{m[key]:.3f}" for m in measured) + " |" for name, key in rows.items()]
    return lines + [""]


def report() -> str:
    records = load_records()
    chosen = chosen_runs(records)
    lines = []
    for task in SEEDS:
        metric = MAIN_METRIC[task]
        lines += [f"### {task.upper()} ({metric.removeprefix('eval_')}, dev set)", "",
                  "| method | LR chosen (per seed) | seeds | best epoch score | final epoch score | "
                  "% of dense (best) | sparsity | violations | wall time / run |",
                  "|---|---|---|---|---|---|---|---|---|"]
        dense = [chosen[(task, "dense_reference", s)]["best"][metric] for s in SEEDS[task]
                 if (task, "dense_reference", s) in chosen]
        dense_mean = statistics.mean(dense) if dense else None
        for method in METHODS:
            runs = [chosen[(task, method, s)] for s in SEEDS[task] if (task, method, s) in chosen]
            tried = sum(1 for r in records if r["task"] == task and r["method"] == method)
            if not runs:
                lines.append(f"| {method} | not run yet | 0/{len(SEEDS[task])} | | | | | | |")
                continue
            best = statistics.mean(r["best"][metric] for r in runs)
            final = statistics.mean(r["final"][metric] for r in runs)
            recovered = f"{100 * best / dense_mean:.1f}%" if dense_mean else "n/a"
            lrs = ", ".join(f"{r['learning_rate']:g}" for r in runs)
            wall = statistics.mean(r["train_runtime_s"] for r in runs)
            lines.append(
                f"| {method} | {lrs} ({tried} runs) | {len(runs)}/{len(SEEDS[task])} | {100 * best:.1f} | "
                f"{100 * final:.1f} | {recovered} | {100 * runs[0]['sparsity']:.2f}% | "
                f"{sum(r['mask_violations'] for r in runs)} | {wall / 60:.1f} min |"
            )
        if task in CONSTANT_ANSWER:
            name, score = CONSTANT_ANSWER[task]
            lines.append(f"| {name} | | | {100 * score:.1f} | {100 * score:.1f} | | | | |")
        lines.append("")
    lines += step_time_lines()
    ratios = []
    for r in records:
        if r["method"] == "gradual_unfreeze":
            twin = next((q for q in records if q["method"] == "extended_dense" and
                         (q["task"], q["learning_rate"], q["seed"]) == (r["task"], r["learning_rate"], r["seed"])), None)
            if twin:
                ratios.append(r["train_runtime_s"] / twin["train_runtime_s"])
    if ratios:
        lines.append(f"Wall-time ratio gradual unfreezing / extended dense transfer (both 8 epochs, same task, LR "
                     f"and seed; {len(ratios)} pairs): mean {statistics.mean(ratios):.3f}, "
                     f"min {min(ratios):.3f}, max {max(ratios):.3f} (target <= 0.85).")
    else:
        lines.append("Wall-time ratio gradual / extended: no matched pair recorded yet.")
    # the LR does not change the work, so the two LRs of one (task, method, seed) measure the machine's noise
    slowdowns = [max(a["train_runtime_s"], b["train_runtime_s"]) / min(a["train_runtime_s"], b["train_runtime_s"]) - 1
                 for a in records for b in records
                 if (a["task"], a["method"], a["seed"]) == (b["task"], b["method"], b["seed"])
                 and a["learning_rate"] < b["learning_rate"]]
    if slowdowns:
        lines.append(f"Noise: of two runs doing identical work (same task, method and seed at its two LRs), the "
                     f"slower took {100 * statistics.mean(slowdowns):.1f}% longer on average, at most "
                     f"{100 * max(slowdowns):.1f}% ({len(slowdowns)} pairs).")
    text = "\n".join(lines) + "\n"
    write_text_atomic(TABLES, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--tasks", nargs="+", default=list(SEEDS), choices=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 2 for RTE, 1 otherwise")
    options = parser.parse_args()
    if options.action == "run":
        for seed in sorted({s for t in options.tasks for s in (options.seeds or SEEDS[t])}):
            for task in options.tasks:
                if seed not in (options.seeds or SEEDS[task]):
                    continue
                for lr_index in range(2):  # first LR of every method, then the second
                    for method in options.methods:
                        run_one(task, method, METHODS[method][2][lr_index], seed)
    print(report())


if __name__ == "__main__":
    main()
