"""What every vision training loop shares: the run's result, weight decay on weights only,
one pass over the training data and the validation top-1 (accelerate handles devices,
data parallelism and mixed precision)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from sparse_transfer.vision import analysis


@dataclass
class TrainResult:
    model: nn.Module  # the final (sparse, unless dense) model
    best_dense_path: Path | None
    history: list[dict]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: BatchNorm parameters and biases are 1-D."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_epoch(model, loader, optimizer, scheduler, loss_fn, accelerator, size: int, epoch: int) -> torch.Tensor:
    """One pass over the training data (resized to `size` when progressive resizing is
    on); returns the summed loss of this process."""
    model.train()
    loss_sum = torch.zeros((), device=accelerator.device)
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not accelerator.is_local_main_process)
    for images, labels in bar:
        if size:
            images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        with accelerator.autocast():
            loss = loss_fn(model(images), labels)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
    return loss_sum


@torch.no_grad()
def evaluate(model, loader, accelerator) -> tuple[float, float]:
    """Validation top-1 and mean prediction entropy over every process's samples."""
    model.eval()
    correct, entropies = [], []
    for images, labels in loader:
        with accelerator.autocast():
            logits = model(images)
        per_sample = (analysis.top1_correct(logits, labels), analysis.prediction_entropies(logits))
        c, e = accelerator.gather_for_metrics(per_sample)
        correct.append(c)
        entropies.append(e)
    return torch.cat(correct).float().mean().item(), torch.cat(entropies).mean().item()
