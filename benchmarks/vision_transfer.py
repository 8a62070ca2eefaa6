"""Sparse transfer of small vision models: pre-train on Fashion-MNIST's classes 0-4 (dense, and
AC/DC at 90%, each for a short and a 2x longer schedule), then transfer every checkpoint to
classes 5-9 in two regimes (linear: only a new classifier trains; full: every weight, the mask
fixed), against training classes 5-9 from scratch (dense and AC/DC 90%, for as many epochs as a
transfer and for twice as many).

Both tasks are written out as image folders by `sparse-transfer vision-images` and read back
through `data.dataset: imagefolder` (mean/std and size computed from the images). The target
task is small on purpose (400 training images per class; the whole test set of classes 5-9,
5000 images, for validation), where pre-training matters.

Transfer and from-scratch runs repeat with `--seeds` (default 0 1: the new classifier's
initialisation and the data order; the checkpoints are the same), to show the spread.

Each run records one JSON in benchmarks/results/vision_transfer/ and is skipped when its record
exists (rerun the script to continue after an interruption); the script then writes the table
between the markers in benchmarks/RESULTS_vision.md. One torch thread: 27 minutes on a shared
2-core CPU (7 of them pre-training; `--seeds 0` does one seed).

    PYTHONPATH=. python benchmarks/vision_transfer.py [--epochs 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's package, whatever is installed

import torch  # noqa: E402

from sparse_transfer.vision.models import build_model, classifier_name  # noqa: E402
from sparse_transfer.vision.recipe import load_recipe  # noqa: E402
from sparse_transfer.vision.sparsity import prunable_weights  # noqa: E402
from sparse_transfer.vision.train import train  # noqa: E402

RECORDS = ROOT / "benchmarks" / "results" / "vision_transfer"
WORK = ROOT / "benchmarks" / "work" / "vision_transfer"
RESULTS = ROOT / "benchmarks" / "RESULTS_vision.md"
BEGIN, END = "<!-- vision_transfer table: begin -->", "<!-- vision_transfer table: end -->"
MODEL = "cifar_resnet8"
COMMON = [f"model.name={MODEL}", "data.dataset=imagefolder", "data.augment=none", "data.batch_size=64"]
ACDC = ["sparsity.target=0.9", "sparsity.ramp_from=0.8", "sparsity.phase_length=2", "sparsity.final_dense=1",
        "sparsity.final_sparse=2"]
PRETRAINED = [("dense", 1), ("dense", 2), ("acdc90", 1), ("acdc90", 2)]  # (method, schedule scale)


def write_tasks() -> tuple[Path, Path]:
    """Classes 0-4 (1000 training, 200 validation images each) and 5-9 (400 training, all 1000
    test images each), by the command a user would run."""
    source, target = WORK / "fashion_mnist_0-4", WORK / "fashion_mnist_5-9"
    for folder, classes, train_n, val_n in ((source, "0-4", 1000, 200), (target, "5-9", 400, 0)):
        if not (folder / "val").exists():
            subprocess.run([sys.executable, "-m", "sparse_transfer", "vision-images", "fashion_mnist", str(folder),
                            "--classes", classes, "--train-per-class", str(train_n), "--val-per-class", str(val_n)],
                           check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return source, target


def recorded(name: str, run) -> dict:
    path = RECORDS / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    record = run()
    record.update(name=name, wall_s=round(time.perf_counter() - started, 1), threads=torch.get_num_threads(),
                  machine=f"{platform.machine()}, {os.cpu_count()} cores", commit=commit(), torch=torch.__version__)
    RECORDS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "sparse_transfer"], cwd=ROOT).returncode
    return head.strip() + ("+changes" if changed else "")


def body_zeros(state: dict) -> dict[str, torch.Tensor]:
    """The zero positions of the prunable weights outside the classifier."""
    model = build_model(MODEL, 5, 1)
    head = f"{classifier_name(model)}."
    return {name: state[name] == 0 for name in prunable_weights(model) if not name.startswith(head)}


def summary(result, out: Path) -> dict:
    last = result.history[-1]
    return {"top1": last["val_top1"], "best_top1": max(r["val_top1"] for r in result.history),
            "sparsity": last["sparsity"], "epochs": len(result.history), "run_dir": str(out.relative_to(ROOT))}


def pretrain(method: str, scale: int, source: Path, epochs: int) -> dict:
    out = WORK / f"pretrain_{method}_x{scale}"
    recipe = "fashion_mnist_acdc" if method == "acdc90" else "fashion_mnist_dense"
    overrides = [*COMMON, f"data.root={source}", f"epochs={epochs}", f"scale={scale}", "optim.lr=0.4",
                 f"output_dir={out}", *(ACDC if method == "acdc90" else [])]
    return {"stage": "pretrain", "method": method, "scale": scale,
            **summary(train(load_recipe(recipe, overrides)), out)}


def seeded(name: str, seed: int) -> str:
    return f"{name}_seed{seed}" if seed else name


def transfer(method: str, scale: int, mode: str, target: Path, epochs: int, seed: int) -> dict:
    checkpoint = WORK / f"pretrain_{method}_x{scale}" / "final.pt"
    out = WORK / seeded(f"transfer_{method}_x{scale}_{mode}", seed)
    overrides = [*COMMON, f"data.root={target}", f"epochs={epochs}", f"model.weights={checkpoint}",
                 f"output_dir={out}", f"transfer.sparse={method != 'dense'}", f"seed={seed}"]
    result = train(load_recipe(f"fashion_mnist_transfer_{mode}", overrides))
    before = body_zeros(torch.load(checkpoint, weights_only=True))
    after = body_zeros(result.model.state_dict())
    return {"stage": "transfer", "method": method, "scale": scale, "mode": mode, "seed": seed,
            "zeros_before": sum(int(z.sum()) for z in before.values()),
            "zeros_after": sum(int(z.sum()) for z in after.values()),
            "same_zero_positions": all(torch.equal(before[n], after[n]) for n in before),
            "body_weights": sum(z.numel() for z in before.values()), **summary(result, out)}


def scratch(method: str, target: Path, epochs: int, seed: int) -> dict:
    out = WORK / seeded(f"scratch_{method}_{epochs}ep", seed)
    recipe = "fashion_mnist_acdc" if method == "acdc90" else "fashion_mnist_dense"
    overrides = [*COMMON, f"data.root={target}", f"epochs={epochs}", "optim.lr=0.4", f"output_dir={out}",
                 f"seed={seed}", *(ACDC if method == "acdc90" else [])]
    return {"stage": "scratch", "method": method, "seed": seed,
            **summary(train(load_recipe(recipe, overrides)), out)}


def top1s(runs: list[dict]) -> str:
    """Each seed's top-1 and, for several, their mean."""
    values = [r["top1"] for r in sorted(runs, key=lambda r: r.get("seed", 0))]
    each = " / ".join(f"{v:.4f}" for v in values)
    return f"{each} (mean {sum(values) / len(values):.4f})" if len(values) > 1 else each


def table(records: dict[str, dict], epochs: int) -> str:
    pre = {(r["method"], r["scale"]): r for r in records.values() if r["stage"] == "pretrain"}
    lines = [
        f"Pre-training on classes 0-4 (5,000 images; validation: 1,000 test images of classes 0-4), then {epochs} "
        "epochs on classes 5-9 (2,000 images; validation: their 5,000 test images). Top-1 is the last epoch's, "
        "one value per seed; zeros are the exact zero weights outside the classifier, in the checkpoint and after "
        "transfer (every seed).",
        "",
        "| start | pre-training epochs | pre-train top-1 (0-4) | transfer | top-1 (5-9), per seed | "
        "zeros before -> after | same positions | wall per run (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in records.values():
        if r["stage"] != "pretrain":
            key = (r["stage"] != "transfer", r.get("mode", ""), r["method"], r.get("scale", 0), r["epochs"])
            groups.setdefault(key, []).append(r)
    order = sorted(groups, key=lambda key: (key[0], key[1] != "linear", key[2] != "dense", key[3], key[4]))
    for (is_scratch, mode, method, scale, _), runs in ((key, groups[key]) for key in order):
        start = "AC/DC 90%" if method == "acdc90" else "dense"
        wall = max(r["wall_s"] for r in runs)
        if is_scratch:
            lines.append(f"| from scratch ({start}) | - | - | {runs[0]['epochs']} epochs on 5-9 | {top1s(runs)} | "
                         f"sparsity {runs[0]['sparsity']:.4f} | - | {wall:.0f} |")
            continue
        p, r = pre[(method, scale)], runs[0]
        zeros = {(x["zeros_before"], x["zeros_after"]) for x in runs}
        kept = "yes" if all(x["same_zero_positions"] for x in runs) and len(zeros) == 1 else "NO"
        lines.append(f"| {start} | {p['epochs']} | {p['top1']:.4f} | {mode} | {top1s(runs)} | "
                     f"{r['zeros_before']:,} -> {r['zeros_after']:,} of {r['body_weights']:,} | {kept} | {wall:.0f} |")
    pre_wall = ", ".join(f"{m} x{s}: {p['wall_s']:.0f} s" for (m, s), p in sorted(pre.items()))
    lines += ["", f"Pre-training wall time: {pre_wall}."]
    return "\n".join(lines)


def write_table(text: str) -> None:
    document = RESULTS.read_text()
    if BEGIN not in document:
        raise SystemExit(f"{RESULTS} has no {BEGIN} marker; add the section first")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    RESULTS.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8, help="the short pre-training; transfer runs as many")
    parser.add_argument("--scratch-epochs", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="of the transfer and scratch runs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source, target = write_tasks()
    records = {}
    for method, scale in PRETRAINED:
        records[f"pretrain_{method}_x{scale}"] = recorded(f"pretrain_{method}_x{scale}",
                                                          lambda: pretrain(method, scale, source, args.epochs))
    for seed in args.seeds:
        for mode in ("linear", "full"):
            for method, scale in PRETRAINED:
                name = seeded(f"transfer_{method}_x{scale}_{mode}", seed)
                records[name] = recorded(name, lambda: transfer(method, scale, mode, target, args.epochs, seed))
        for method in ("dense", "acdc90"):
            for epochs in (args.epochs, args.scratch_epochs):  # as long as a transfer, and longer
                name = seeded(f"scratch_{method}_{epochs}ep", seed)
                records[name] = recorded(name, lambda: scratch(method, target, epochs, seed))
    text = table(records, args.epochs)
    print(text)
    write_table(text)


if __name__ == "__main__":
    main()
