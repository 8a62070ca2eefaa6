"""Fashion-MNIST benchmark of the end-to-end pruning pipeline: the LeNet-300-100 MLP at
90%, 99% and 99.9% global sparsity, on the real idx files. For each sparsity: the full
pipeline, its ablations (no ZerO init, no learned mask, no smoothing), one-shot
magnitude pruning plus fine-tuning (all three off) and AC/DC, all for the same total
number of epochs. Writes a markdown table (top-1, exact final sparsity, collapses,
wall time) to benchmarks/results/fashion_mnist_pipeline.md and prints it.

Default sizes (about 25 minutes on 2 CPU cores): 20 epochs (pipeline: 10 + 10), a
12 000-image training subset, the first 5 000 test images. `--quick` runs 4 epochs
(2 + 2) on 2 000 / 1 000 images in a few minutes: a smoke test of the script, not a
comparison.

    python benchmarks/fashion_mnist_pipeline.py [--quick] [--epochs 20] [--train-subset 12000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sparse_transfer.utils.typed_config import RECIPE_DIR
from sparse_transfer.vision import analysis
from sparse_transfer.vision.pipeline.run import collapse_reason
from sparse_transfer.vision.recipe import load_recipe
from sparse_transfer.vision.sparsity import prunable_weights
from sparse_transfer.vision.train import train

RECIPES = RECIPE_DIR / "vision"
TARGETS = (0.9, 0.99, 0.999)
NO_SMOOTHING = ["pipeline.label_smoothing=0.0", "pipeline.soft_activation=false", "pipeline.skip_weight=0.0"]
VARIANTS = {
    "full pipeline": [],
    "no ZerO init": ["pipeline.zero_init=false"],
    "no learned mask": ["pipeline.learned_mask=false"],
    "no smoothing": NO_SMOOTHING,
    "one-shot magnitude + fine-tune": ["pipeline.zero_init=false", "pipeline.learned_mask=false", *NO_SMOOTHING],
}


def acdc_overrides(epochs: int) -> list[str]:
    """AC/DC on the same MLP, optimizer settings and epochs as the pipeline recipe;
    its phases scaled down for short runs (the recipe's are for 20 epochs)."""
    schedule = ["sparsity.phase_length=2", "sparsity.final_dense=2", "sparsity.final_sparse=3"]
    if epochs < 12:
        schedule = ["sparsity.warmup_fraction=0.25", "sparsity.phase_length=1", "sparsity.final_dense=0",
                    "sparsity.final_sparse=1"]  # fmt: skip
    return ["model.name=mlp", "optim.lr=0.1", "optim.warmup_epochs=1", *schedule]


def run(name: str, target: float, args) -> dict:
    output_dir = args.work / f"{name}_{target}".replace(" ", "_").replace("/", "")
    common = [f"epochs={args.epochs}", f"sparsity.target={target}", f"data.train_subset={args.train_subset}",
              f"data.val_subset={args.val_subset}", f"output_dir={output_dir}"]  # fmt: skip
    if name == "AC/DC":
        recipe = load_recipe(RECIPES / "fashion_mnist_acdc.yaml", [*common, *acdc_overrides(args.epochs)])
    else:
        pipeline = [f"pipeline.pre_pruning_epochs={args.epochs // 2}", *VARIANTS[name]]
        recipe = load_recipe(RECIPES / "fashion_mnist_pipeline_mlp.yaml", [*common, *pipeline])
    started = time.perf_counter()
    result = train(recipe)
    sparsity, _ = analysis.sparsity(prunable_weights(result.model))
    # one criterion for every method, AC/DC included
    collapsed = [r for r in result.history if collapse_reason(r["train_loss"], r["val_top1"], 10)]
    collapses = [f"{r['phase']} epoch {r['epoch']}" for r in collapsed]
    return {
        "method": name,
        "target": target,
        "top1": result.history[-1]["val_top1"],
        "sparsity": sparsity,
        "collapses": ", ".join(collapses) or "-",
        "wall": time.perf_counter() - started,
    }


def table(rows: list[dict], args) -> str:
    lines = [
        "# Fashion-MNIST: end-to-end pruning pipeline" + (" (--quick: smoke-test sizes, not a comparison)" if args.quick else ""),
        "",
        f"LeNet-300-100 MLP (266 200 prunable weights), {args.epochs} epochs in total (pipeline: {args.epochs // 2} "
        f"pre-pruning + {args.epochs - args.epochs // 2} post-pruning), {args.train_subset} training images, first "
        f"{args.val_subset} test images, {torch.get_num_threads()} threads. Top-1 of the final (sparse) model; "
        "sparsity = exact zeros / prunable weights of the final model; collapses = epochs flagged at chance level "
        "or with a non-finite loss.",
        "",
        "| method | target | top-1 | final sparsity | collapses | wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['target']:.1%} | {r['top1']:.4f} | {r['sparsity']:.4f} | {r['collapses']} "
                     f"| {r['wall']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 epochs on 2 000 / 1 000 images: checks the script runs")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-subset", type=int, default=12000)
    parser.add_argument("--val-subset", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "fashion_mnist_pipeline")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fashion_mnist_pipeline.md")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.train_subset, args.val_subset = 4, 2000, 1000
    rows = [run(name, target, args) for target in TARGETS for name in [*VARIANTS, "AC/DC"]]
    text = table(rows, args)
    args.out.write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
