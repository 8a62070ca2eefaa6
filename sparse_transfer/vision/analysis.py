"""Per-epoch analysis: accuracy, prediction entropy (AC/DC++'s undertraining signal),
sparsity, mask exploration (IoU of consecutive masks), dead output channels, and
inference / training FLOPs with the sparsity. Logged as JSON lines, plotted as PNGs.

FLOPs follow the papers' convention: one multiply-accumulate counts as one FLOP
(ResNet-50 is "4.1 GFLOPs"), and only Conv2d / Linear layers are counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

# Per-sample values, so that a data-parallel run can gather them before averaging.


def top1_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=1) == targets


def prediction_entropies(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each softmax prediction."""
    log_probs = torch.log_softmax(logits.float(), dim=1)
    return -(log_probs.exp() * log_probs).sum(dim=1)


def mask_iou(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Intersection over union of the kept positions of two masks (all layers)."""
    intersection = sum(int((before[n].cpu() & after[n].cpu()).sum()) for n in after)
    union = sum(int((before[n].cpu() | after[n].cpu()).sum()) for n in after)
    return intersection / union if union else 1.0


@torch.no_grad()
def sparsity(weights: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """Fraction of exactly-zero values: global, and per layer."""
    zeros = {name: w.numel() - int(torch.count_nonzero(w)) for name, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    return sum(zeros.values()) / total, {name: zeros[name] / w.numel() for name, w in weights.items()}


@torch.no_grad()
def zero_channel_fraction(weights: dict[str, torch.Tensor]) -> float:
    """Fraction of output channels (rows of dim 0) whose weights are all zero: the
    structured sparsity AC/DC induces (AC/DC paper, table 8)."""
    dead = sum(int((w.flatten(1) == 0).all(dim=1).sum()) for w in weights.values())
    return dead / sum(w.shape[0] for w in weights.values())


@torch.no_grad()
def inference_flops(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Per-sample FLOPs of the Conv2d and Linear layers on `example` (a batch of one):
    `dense` as if every weight were non-zero, `sparse` scaling each layer by its density."""
    totals = {"dense": 0.0, "sparse": 0.0}

    def count(module, inputs, output):
        weight = module.weight
        per_output = weight[0].numel()  # in_channels / groups * kernel area, or in_features
        macs = output.numel() / output.shape[0] * per_output
        totals["dense"] += macs
        totals["sparse"] += macs * int(torch.count_nonzero(weight)) / weight.numel()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return totals


def training_flops_per_sample(forward: float, dense_forward: float, masked: bool) -> float:
    """AC/DC paper appendix: a masked step costs forward + 2x forward (sparse backward);
    an unmasked one forward + forward (error back-propagation) + a dense weight gradient."""
    return 3 * forward if masked else 2 * forward + dense_forward


def append_json_line(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


PLOTS = {
    "accuracy.png": ("val_top1", "validation top-1"),
    "train_loss.png": ("train_loss", "training loss"),
    "entropy.png": ("val_entropy", "validation prediction entropy (nats)"),
    "sparsity.png": ("sparsity", "global sparsity"),
    "mask_iou.png": ("mask_iou", "IoU with the previous compression mask"),
    "zero_channels.png": ("zero_channels", "all-zero output channels (fraction)"),
    "inference_flops.png": ("inference_flops", "inference FLOPs per sample"),
}


def plot_history(records: list[dict], out_dir: Path) -> list[Path]:
    """One PNG per metric against the epoch; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    for filename, (key, label) in PLOTS.items():
        points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(Path(out_dir) / filename, dpi=100)
        plt.close(fig)
        written.append(Path(out_dir) / filename)
    return written
