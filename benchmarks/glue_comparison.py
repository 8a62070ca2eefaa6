#!/usr/bin/env python
"""The paper's sparse-transfer comparison (2308.02060, Tables 6-7) from an upstream-pruned
MiniLM, on the tasks where MiniLM's scores move: CoLA (MCC), STS-B (Pearson) and SST-2
(accuracy, a fixed 16k-example sample of train, full dev).

Models: the dense MiniLM (reference); the MiniLM pruned upstream to 90% with oBS and
distillation (`upstream_minilm.py`, every sparse row); the one-shot 90% rows of
`sparse_transfer_glue.py` are shown beside them as the "no upstream pruning" line.
Methods on the sparse model, each through `run_glue.py` and a recipe:

  dense_transfer            the dense_transfer recipe (3 epochs)
  extended_dense_transfer   the extended_dense_transfer recipe (8 epochs)
  gradual_unfreeze          the gradual_unfreeze recipe (1 + 6 + 1 epochs)
  gradual_unfreeze_distill  the same, distilled from the dense reference's best run on the task
  dense_transfer_{1..7}ep   CoLA only: the dense-transfer recipe rescaled (Table 6's third row),
                            at the dense-transfer recipe's best grid configuration

Protocol: CoLA and STS-B every method over the paper's grid LR {1e-4, 2e-4, 3e-4} x dropout
{0.05, 0.1}; SST-2 LR {1e-4, 2e-4} at dropout 0.1; the dense reference at LR {2e-5, 5e-5, 1e-4}
(dropout 0.1). Reported: the mean of the two best runs (best epoch, as the paper) and their
final-epoch mean. Resumable: every finished run is a record under
benchmarks/results/glue_comparison/; runs go in an order where an unfinished matrix still
compares every method at the same configurations. Several workers may share the matrix (each
claims a run before training it; a dead worker's claim is taken over), e.g. two with one torch
thread each on the 2-core machine:

    OMP_NUM_THREADS=1 python benchmarks/glue_comparison.py run [--tasks cola sst2 stsb] [--methods ...] [--limit N]
        [--learning_rates 3e-4]   # a partial matrix: the sparse methods at these grid LRs only
    python benchmarks/glue_comparison.py report    # tables, curves: benchmarks/results/glue_comparison.md

`--sparse_model NAME` (an upstream model of `upstream_minilm.py`, e.g. upstream-80-magnitude) runs
the sparse rows from another model: the fallback where 90% fails on a task. Its runs are
named after it and get tables of their own, against the same dense reference.

A model rebuilt on another machine is other weights (each record names its build, `model_sha256`).
`--rerun_build SHA` runs again, from this checkout's build, the configurations recorded from build
SHA, each under a name that carries this build; records are never overwritten. The tables keep one run
per configuration (the first recorded) and add, where the runs span builds, the same comparison within
each build.

Trained models are not committed: a distilled run whose teacher (the best dense reference) is
recorded but not in the checkout trains it again first, at its recorded configuration and seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

from common import COMPARISON_RECORDS as RECORDS
from common import (
    ROOT,
    UPSTREAM,
    UPSTREAM_MODEL,
    WORK,
    glue_run,
    model_path,
    run_name,
    sst2_files,
    weights_fingerprint,
)
from common import GLUE_RECORDS as ONE_SHOT_RECORDS

from sparse_transfer.utils.io import read_csv, write_json_atomic, write_text_atomic
from sparse_transfer.utils.reports import plot_curves

TABLES = ROOT / "benchmarks" / "results" / "glue_comparison.md"
MAIN_METRIC = {"cola": "eval_matthews_correlation", "stsb": "eval_pearson", "sst2": "eval_accuracy"}
SPARSE_METHODS = {"dense_transfer": "dense_transfer", "extended_dense_transfer": "extended_dense_transfer",
                  "gradual_unfreeze": "gradual_unfreeze", "gradual_unfreeze_distill": "gradual_unfreeze_distill"}
RESCALED_EPOCHS = [1, 2, 4, 5, 6, 7]  # with 3 (dense_transfer itself): Table 6's sweep, CoLA only
GRID = {"cola": list(itertools.product([1e-4, 2e-4, 3e-4], [0.05, 0.1])),
        "stsb": list(itertools.product([1e-4, 2e-4, 3e-4], [0.05, 0.1])),
        "sst2": [(1e-4, 0.1), (2e-4, 0.1)]}
DENSE_GRID = [(2e-5, 0.1), (5e-5, 0.1), (1e-4, 0.1)]
TOP_K = 2
# plus1200's first build did not record its hash; rebuilt on the same kind of CPU it ended at the first
# build's recorded loss terms to every digit (RESULTS_upstream.md), so its runs are read as that build's
UNRECORDED_BUILDS = {"upstream-90-obs-cls4-cosine1-long-plus1200": "685faa2fdf121a41"}


def build_of(record: dict) -> str:
    """The build of the sparse model that a run started from (SHA-256 of its weights, 16 hex digits)."""
    return record.get("model_sha256") or UNRECORDED_BUILDS.get(record["model"], "not recorded")


def load_records() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(RECORDS.glob("*.json"))]


def claim_path(name: str) -> Path:
    return WORK / "glue_comparison" / f"{name}.claim"


def claim(name: str) -> bool:
    """Take run `name` for this process; False while another live process has it."""
    path = claim_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = path.read_text().strip()
        if not owner or owner_alive(int(owner)):  # empty: its owner is writing its pid right now
            return False
        path.unlink(missing_ok=True)  # a killed worker's claim: its run starts over here
        return claim(name)
    with os.fdopen(handle, "w") as file:
        file.write(str(os.getpid()))
    return True


def owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return True


def teacher_ready(records: list[dict], task: str) -> bool:
    """The distilled runs' teacher is the best dense reference, chosen once all of them are recorded."""
    done = {(r["learning_rate"], r["dropout"]) for r in records if r["task"] == task and r["method"] == "dense_reference"}
    return all(configuration in done for configuration in DENSE_GRID)


def best_record(records: list[dict], task: str, method: str, model: str | None = None) -> dict | None:
    """The method's best run, of the first-recorded runs as the tables read them: a run again from another build
    (`--rerun_build`) must not move the configuration that the rescaled sweep runs at."""
    runs = [r for r in records if r["task"] == task and r["method"] == method and model in (None, r["model"])
            and "rerun_of" not in r]
    return max(runs, key=lambda r: r["best"][MAIN_METRIC[task]]) if runs else None


def planned_runs(task: str, methods: list[str], records: list[dict], model: str = UPSTREAM_MODEL,
                 learning_rates: list[float] | None = None) -> list[tuple[str, float, float]]:
    """(method, lr, dropout) in the order to run: the dense reference first (the teacher of the
    distilled runs), then every method at one grid configuration before the next configuration.
    `learning_rates` keeps the sparse methods to those of the grid (the dense reference keeps its own)."""
    plan = [("dense_reference", lr, dropout) for lr, dropout in DENSE_GRID] if "dense_reference" in methods else []
    plan += [(method, lr, dropout) for lr, dropout in GRID[task] for method in SPARSE_METHODS
             if method in methods and (learning_rates is None or lr in learning_rates)]
    dense_transfer = best_record(records, task, "dense_transfer", model)
    grid_done = {(r["learning_rate"], r["dropout"]) for r in records
                 if r["task"] == task and r["method"] == "dense_transfer" and r["model"] == model}
    # the sweep runs at the best configuration of the whole grid, so it waits for all of it
    if task == "cola" and "rescaled_dense" in methods and grid_done >= set(GRID[task]):
        plan += [(f"dense_transfer_{epochs}ep", dense_transfer["learning_rate"], dense_transfer["dropout"])
                 for epochs in RESCALED_EPOCHS]
    return plan


def run_one(task: str, method: str, lr: float, dropout: float, records: list[dict],
            model: str = UPSTREAM_MODEL, build: str | None = None) -> bool:
    """Train and record one run; False when it is recorded already, another worker has it, or
    (a distilled run) its teacher is not chosen yet. `build`: a run again, from this build of the model,
    of a configuration recorded from another build."""
    name = run_name(task, method, lr, dropout, model, build)
    if (RECORDS / f"{name}.json").exists():
        return False
    if method == "gradual_unfreeze_distill" and not teacher_ready(records, task):
        return False
    if not claim(name):
        return False
    try:
        return train_and_record(name, task, method, lr, dropout, records, model,
                                rerun_of=run_name(task, method, lr, dropout, model) if build else None)
    finally:
        claim_path(name).unlink(missing_ok=True)


def train_and_record(name: str, task: str, method: str, lr: float, dropout: float, records: list[dict],
                     model: str, rerun_of: str | None = None) -> bool:
    extra = []
    recipe = SPARSE_METHODS.get(method, "dense_transfer")
    if method.startswith("dense_transfer_") and method.endswith("ep"):
        extra += ["--num_train_epochs", method.removeprefix("dense_transfer_").removesuffix("ep")]
    used_teacher = teacher(records, task) if method == "gradual_unfreeze_distill" else None
    if used_teacher:
        extra += ["--teacher", str(ROOT / used_teacher["output_dir"])]
    if method == "dense_reference":
        model = "dense"
    print(f"[run] {name}", flush=True)
    out = WORK / "glue_comparison" / name
    measured = train(task, model, recipe, lr, dropout, out, tuple(extra))
    curve = read_csv(out / "epoch_metrics.csv")
    write_json_atomic(RECORDS / f"{name}.json", {
        "task": task, "method": method, "learning_rate": lr, "dropout": dropout, "recipe": recipe,
        "model": model,
        "output_dir": str(out.relative_to(ROOT)), "epochs": curve, **measured,
        **({"teacher": used_teacher} if used_teacher else {}), **({"rerun_of": rerun_of} if rerun_of else {})})
    return True


def train(task: str, model: str, recipe: str, lr: float, dropout: float, out: Path, extra: tuple = ()) -> dict:
    """One run of the comparison (seed 0; for SST-2 the fixed sample) and what it measured: the one
    command a recorded run and a teacher trained again both go through."""
    flags = ("--dropout", f"{dropout:g}")
    if task == "sst2":
        train_file, dev_file = sst2_files()
        flags += ("--train_file", train_file, "--validation_file", dev_file)
    return glue_run(task, model_path(model), recipe, lr, 0, out, (*flags, *extra))


def teacher(records: list[dict], task: str) -> dict:
    """The distilled runs' teacher: the best dense reference's saved model, and its best score.
    Trained models are not committed, so a checkout that has the record but not the model trains it
    again, at the recorded configuration and seed; the distilled run's record then gives the score of
    the model it was distilled from beside the recorded one (which stays the reference's record)."""
    reference = best_record(records, task, "dense_reference")
    out = ROOT / reference["output_dir"]

    def trained() -> bool:
        return (out / "model.safetensors").exists() and (out / "eval_results.json").exists()

    if not trained():
        while not claim(out.name):  # another worker is training it: wait for it rather than train it twice
            time.sleep(30)
        try:
            if not trained():
                print(f"[teacher] {out.name}: recorded but not in this checkout, training it again", flush=True)
                train(task, "dense", reference["recipe"], reference["learning_rate"], reference["dropout"], out)
        finally:
            claim_path(out.name).unlink(missing_ok=True)
    metric = MAIN_METRIC[task]
    return {"output_dir": reference["output_dir"], "metric": metric,
            "best": json.loads((out / "eval_results.json").read_text())["best"][metric],
            "recorded_best": reference["best"][metric]}


def top_k(runs: list[dict], metric: str) -> tuple[list[dict], float, float, float]:
    """The k best runs by best-epoch score, their mean and std, and the mean of their final epochs."""
    best = sorted(runs, key=lambda r: -r["best"][metric])[:TOP_K]
    scores = [r["best"][metric] for r in best]
    return best, statistics.mean(scores), statistics.pstdev(scores), statistics.mean(r["final"][metric] for r in best)


def one_shot_line(task: str) -> str | None:
    """STS-B from the one-shot 90% model (sparse_transfer_glue.py's records), its better LR per method."""
    runs = [json.loads(p.read_text()) for p in sorted(ONE_SHOT_RECORDS.glob(f"{task}_*.json"))]
    runs = [r for r in runs if r["method"] != "dense_reference"]
    if not runs:
        return None
    metric = MAIN_METRIC[task]
    per_method = {}
    for r in runs:
        if r["method"] not in per_method or r["best"][metric] > per_method[r["method"]]["best"][metric]:
            per_method[r["method"]] = r
    return ("One-shot 90% MiniLM, no upstream pruning (`sparse_transfer_glue.py`, best of LR 1e-4 / 2e-4, "
            "model dropout): " + ", ".join(f"{method} {100 * r['best'][metric]:.1f}" for method, r in
                                            sorted(per_method.items())) + ".")


def runs_from_build(records: list[dict], model: str, build: str) -> list[dict]:
    """The first-recorded runs of `model` that started from `build`: what `--rerun_build build` can run again."""
    return [r for r in records if r["model"] == model and "rerun_of" not in r and build_of(r) == build]


def planned_reruns(task: str, methods: list[str], records: list[dict], model: str, other_build: str,
                   learning_rates: list[float] | None = None) -> list[tuple[str, float, float]]:
    """The planned runs whose record started from `other_build` of `model`: what `--rerun_build` runs again."""
    recorded = {(r["method"], r["learning_rate"], r["dropout"]) for r in runs_from_build(records, model, other_build)
                if r["task"] == task}
    return [run for run in planned_runs(task, methods, records, model, learning_rates) if run in recorded]


def task_report(task: str, records: list[dict], model: str = UPSTREAM_MODEL) -> list[str]:
    """The table, reading and curves of one task's sparse runs from `model`, against the dense reference;
    then the same comparison within each build of the model, where the runs span builds."""
    metric = MAIN_METRIC[task]
    every_run = [r for r in records if r["task"] == task and r["model"] in ("dense", model)]
    runs = [r for r in every_run if "rerun_of" not in r]  # one run per configuration: the first recorded
    methods = ["dense_reference", *SPARSE_METHODS, *(f"dense_transfer_{e}ep" for e in RESCALED_EPOCHS)]
    source = "" if model == UPSTREAM_MODEL else f" from {model}"
    lines = [f"### {task.upper()}{source} ({metric.removeprefix('eval_')}, dev set)", "",
             f"| method | runs | mean of {TOP_K} best ± std (best epoch) | their final epoch | % of dense | "
             "best configuration | sparsity | violations | wall time / run | verdicts |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    dense = [r for r in runs if r["method"] == "dense_reference"]
    dense_mean = top_k(dense, metric)[1] if dense else None
    summary, curves = {}, {}
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        best, mean, std, final = top_k(mine, metric)
        summary[method] = (mean, std, len(mine))
        curves[method] = best[0]["epochs"]
        verdicts = ", ".join(f"{v} {sum(1 for r in mine if (r.get('verdict') or {}).get('verdict') == v)}"
                             for v in sorted({(r.get("verdict") or {}).get("verdict") for r in mine} - {None}))
        lines.append(
            f"| {method} | {len(mine)} | {100 * mean:.1f} ± {100 * std:.1f} | {100 * final:.1f} | "
            f"{f'{100 * mean / dense_mean:.1f}%' if dense_mean else 'n/a'} | LR {best[0]['learning_rate']:g}, "
            f"dropout {best[0]['dropout']:g} | {100 * best[0]['sparsity']:.2f}% | "
            f"{sum(r['mask_violations'] for r in mine)} | "
            f"{wall_times(mine)} | {verdicts} |")
    if not summary:
        return lines[:1] + ["", "Not run yet.", ""]
    for paragraph in (one_shot_line(task), starting_weights(runs)):
        if paragraph:
            lines += ["", paragraph]
    lines += ["", reading(summary, gradual_at_distilled_configurations(runs, metric)), ""]
    lines += within_builds(every_run, metric)
    if curves:
        suffix = "" if model == UPSTREAM_MODEL else f"_{model}"
        plot = plot_curves(curves, metric, TABLES.parent / f"glue_comparison_{task}{suffix}.png",
                           f"{task}{source}: best run of each method")
        lines += [f"![{task} curves]({plot.name})", ""]
    return lines


def starting_weights(runs: list[dict]) -> str | None:
    """Which builds of the sparse model the runs started from, where they are more than one: an upstream
    model rebuilt in a new checkout is other weights (the same recipe and seed on another machine)."""
    sparse = [r for r in runs if r["model"] != "dense"]
    builds = Counter(build_of(r) for r in sparse)
    if len(builds) < 2:
        return None
    unrecorded = Counter(build_of(r) for r in sparse if "model_sha256" not in r and r["model"] in UNRECORDED_BUILDS)
    return ("Starting weights (SHA-256 of `model.safetensors`, runs): " +
            ", ".join(f"{build} {count}" + (f" ({unrecorded[build]} of them not recorded, read as it)"
                                            if unrecorded[build] else "") for build, count in sorted(builds.items())) +
            ". The runs come from more than one build of the sparse model; the spread includes the build.")


def within_builds(runs: list[dict], metric: str) -> list[str]:
    """Each build's mean of the two best per method (its reruns included) and its reading, where the
    sparse runs span builds: methods compared on the same starting weights."""
    dense = [r for r in runs if r["method"] == "dense_reference"]
    by_build: dict[str, list[dict]] = {}
    for r in runs:
        if r["model"] != "dense":
            by_build.setdefault(build_of(r), []).append(r)
    if len(by_build) < 2:
        return []
    unrecorded = {UNRECORDED_BUILDS[r["model"]] for r in runs if r["model"] in UNRECORDED_BUILDS and
                  "model_sha256" not in r}
    lines = ["Within one build (runs again from another build included" +
             "".join(f"; runs that did not record their build are read as {build}" for build in unrecorded) + "):", "",
             f"| build | method | runs | mean of {TOP_K} best ± std | their final epoch |", "|---|---|---|---|---|"]
    readings = []
    for build, mine in sorted(by_build.items()):
        summary = {"dense_reference": (top_k(dense, metric)[1], 0.0, len(dense))} if dense else {}
        for method in dict.fromkeys(r["method"] for r in sorted(mine, key=lambda r: r["method"])):
            _, mean, std, final = top_k([r for r in mine if r["method"] == method], metric)
            summary[method] = (mean, std, sum(r["method"] == method for r in mine))
            lines.append(f"| {build} | {method} | {summary[method][2]} | {100 * mean:.1f} ± {100 * std:.1f} | "
                         f"{100 * final:.1f} |")
        readings.append(reading(summary, gradual_at_distilled_configurations(mine, metric))
                        .replace("Reading:", f"Reading within build {build}:", 1))
    return lines + [""] + [line for text in readings for line in (text, "")]


def wall_times(runs: list[dict]) -> str:
    """Mean wall time per run on each machine: CPU runs and GPU runs are not comparable."""
    by_machine: dict[str, list[float]] = {}
    for r in runs:
        accelerator = r.get("accelerator", "none")  # records from before the field were all CPU runs
        by_machine.setdefault("CPU" if accelerator == "none" else accelerator, []).append(r["train_runtime_s"])
    return "; ".join(f"{machine} {statistics.mean(times) / 60:.1f} min" for machine, times in sorted(by_machine.items()))


def gradual_at_distilled_configurations(runs: list[dict], metric: str) -> float | None:
    """Gradual unfreezing's mean of the two best among the configurations the distilled runs used:
    what distillation changed, like for like, while it covers fewer configurations."""
    distilled = {(r["learning_rate"], r["dropout"]) for r in runs if r["method"] == "gradual_unfreeze_distill"}
    gradual = [r for r in runs if r["method"] == "gradual_unfreeze" and (r["learning_rate"], r["dropout"]) in distilled]
    return top_k(gradual, metric)[1] if gradual else None


def reading(summary: dict[str, tuple[float, float, int]], gradual_matched: float | None = None) -> str:
    """Does gradual unfreezing beat the best dense-transfer recipe, by more than the spread?
    `summary`: method -> (mean of the two best, their std, number of runs); `gradual_matched`:
    gradual unfreezing at the distilled runs' configurations, the baseline that distillation is read against."""
    gradual = summary.get("gradual_unfreeze")
    dense_recipes = {m: v for m, v in summary.items() if m.startswith(("dense_transfer", "extended_dense"))}
    if not gradual or not dense_recipes:
        return "Reading: not enough runs yet to compare gradual unfreezing with the dense-transfer recipes."
    method, (mean, std, runs) = max(dense_recipes.items(), key=lambda item: item[1][0])
    gap = gradual[0] - mean
    verdict = "beats" if gap > 0 else "does not beat"
    text = f"Reading: gradual unfreezing {verdict} the best dense-transfer recipe ({method}): {100 * gap:+.1f} points"
    if min(gradual[2], runs) < TOP_K:
        text += f", from fewer than {TOP_K} grid configurations each, so the spread between configurations is not known yet."
    else:
        spread = max(gradual[1], std)
        size = "larger" if abs(gap) > spread else "not larger"
        text += f", {size} than the spread between their two best configurations ({100 * spread:.1f})."
    distilled = summary.get("gradual_unfreeze_distill")
    dense = summary.get("dense_reference")
    baseline = gradual[0] if gradual_matched is None else gradual_matched
    if distilled and dense and dense[0] > baseline:
        closed = (distilled[0] - baseline) / (dense[0] - baseline)
        text += (f" Distillation closes {100 * closed:.0f}% of the gap from gradual unfreezing to dense" if closed >= 0
                 else f" Distillation widens the gap from gradual unfreezing to dense by {-100 * closed:.0f}%")
        text += (f" (gradual unfreezing at the distilled runs' {distilled[2]} configuration(s): {100 * baseline:.1f})."
                 if gradual_matched is not None and distilled[2] < gradual[2] else ".")
    return text


def report() -> str:
    records = load_records()
    lines = ["Machine: the project's CPU machine (x86_64, 2 cores), unless a record names a GPU (`accelerator`). "
             "Each record says how many torch threads its run had (`torch_threads`); runs that shared the machine "
             "have wall times not comparable to lone runs.", ""]
    for task in GRID:
        others = sorted({r["model"] for r in records if r["task"] == task} - {"dense", UPSTREAM_MODEL})
        for model in [UPSTREAM_MODEL, *others]:
            lines += task_report(task, records, model)
    text = "\n".join(lines) + "\n"
    write_text_atomic(TABLES, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--tasks", nargs="+", default=["cola", "sst2", "stsb"], choices=list(GRID))
    parser.add_argument("--methods", nargs="+", default=["dense_reference", *SPARSE_METHODS, "rescaled_dense"],
                        choices=["dense_reference", *SPARSE_METHODS, "rescaled_dense"])
    parser.add_argument("--sparse_model", default=UPSTREAM_MODEL,
                        help="the upstream model of upstream_minilm.py that the sparse rows start from")
    parser.add_argument("--learning_rates", nargs="+", type=float, default=None,
                        help="run the sparse methods only at these learning rates of the grid (a partial matrix "
                             "that starts where the methods do best; the dense reference keeps its own)")
    parser.add_argument("--rerun_build", default=None,
                        help="run again, from this checkout's build of --sparse_model, the configurations recorded "
                             "from this build (SHA-256 of model.safetensors, 16 hex digits): a grid within one build")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many new runs")
    options = parser.parse_args()
    if options.sparse_model not in UPSTREAM:
        parser.error(f"unknown --sparse_model {options.sparse_model}: give one of upstream_minilm.py's models "
                     f"({', '.join(sorted(UPSTREAM))})")
    grid_rates = {lr for task in options.tasks for lr, _ in GRID[task]}
    for lr in set(options.learning_rates or ()) - grid_rates:
        parser.error(f"--learning_rates {lr:g} is not in the grid of {' '.join(options.tasks)}: give some of "
                     f"{', '.join(f'{rate:g}' for rate in sorted(grid_rates))}")
    build = None
    if options.action == "run" and options.rerun_build:
        records = load_records()
        recorded = sorted({build_of(r) for r in records if r["model"] == options.sparse_model})
        if options.rerun_build not in recorded:
            parser.error(f"--rerun_build {options.rerun_build}: no run of {options.sparse_model} is recorded from "
                         f"that build; give one of {', '.join(recorded) or 'its recorded builds (none yet)'}")
        build = weights_fingerprint(model_path(options.sparse_model))
        if build == options.rerun_build:
            parser.error(f"--rerun_build {build} is this checkout's build of {options.sparse_model}: give the build "
                         "whose runs to repeat from this one (a record's model_sha256)")
        if not any(planned_reruns(task, options.methods, records, options.sparse_model, options.rerun_build,
                                  options.learning_rates) for task in options.tasks):
            theirs = sorted({f"{r['task']} {r['method']}" for r in runs_from_build(records, options.sparse_model,
                                                                                    options.rerun_build)})
            parser.error(f"--rerun_build {options.rerun_build}: none of its runs is planned by --tasks "
                         f"{' '.join(options.tasks)} --methods {' '.join(options.methods)} (at the planned "
                         f"configurations); that build has {', '.join(theirs)}")
    if options.action == "run":
        done, started = 0, True
        while started:  # again until a pass starts nothing: runs skipped for a teacher or another worker
            started = False
            for task in options.tasks:
                records = load_records()
                plan = (planned_reruns(task, options.methods, records, options.sparse_model, options.rerun_build,
                                       options.learning_rates) if build else
                        planned_runs(task, options.methods, records, options.sparse_model, options.learning_rates))
                for method, lr, dropout in plan:
                    if options.limit is not None and done >= options.limit:
                        break
                    if run_one(task, method, lr, dropout, load_records(), options.sparse_model, build):
                        done, started = done + 1, True
    print(report())


if __name__ == "__main__":
    main()
