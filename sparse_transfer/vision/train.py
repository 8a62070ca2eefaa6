"""Entry point: `accelerate launch -m sparse_transfer.vision.train --recipe R.yaml [k=v ...]`
(or plain `python -m ...`). Accelerate handles devices, data parallelism and mixed
precision; masks are enforced by hooks on the unwrapped model, so every process and
precision sees the same exact zeros.

Each epoch writes `checkpoint.pt` (model, optimizer, LR position, masks and phase,
RNG state, history); `--resume` continues from it, mid-phase included. The run keeps
`best_dense.pt` (the best model of a dense epoch; AC/DC co-trains it) and the final
model `final.pt`, plus `log.jsonl`, `phases.json`, `recipe.yaml` and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from ..distributed import process_group_released
from . import analysis
from .acdc import ACDC
from .data import build_datasets
from .gmp import GMP
from .masked_training import MaskedTraining
from .models import build_model
from .recipe import Recipe, load_recipe
from .rigl import RigL
from .schedule import acdc_phases, as_json, describe, phase_at
from .sparsity import prunable_weights
from .training_schedules import resolution_at, warmup_linear_decay


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


def build_method(recipe: Recipe, model, optimizer, dense_gradients) -> MaskedTraining | None:
    c = recipe.sparsity
    if c.method == "dense":
        return None
    weights = prunable_weights(model, c.first_last_dense)
    epochs = recipe.total_epochs
    if c.method == "acdc":
        phases = phases_of(recipe)
        return ACDC(
            model, optimizer, weights, phases, c.target, c.distribution,
            c.decompression_sparsity, c.reset_momentum, c.ramp_from,
        )
    if c.method == "gmp":
        return GMP(model, optimizer, weights, epochs, c.target, c.distribution, c.prune_every, c.fixed_fraction)
    if c.method == "rigl":
        return RigL(
            model, optimizer, weights, epochs, c.target, dense_gradients, c.distribution,
            c.alpha, c.update_every, c.fixed_fraction, recipe.seed,
        )
    raise ValueError(f"unknown sparsity method {c.method!r}; use dense, acdc, gmp or rigl")


def phases_of(recipe: Recipe):
    c = recipe.sparsity
    return acdc_phases(recipe.epochs, c.warmup_fraction, c.phase_length, c.final_dense, c.final_sparse, recipe.scale)


def train(recipe: Recipe, resume: bool = False) -> TrainResult:
    if recipe.sparsity.method == "pipeline":  # three stages, each with its own optimizer (pipeline.py)
        from .pipeline import train_pipeline  # imported here: pipeline.py imports this module

        return train_pipeline(recipe, resume)
    accelerator = Accelerator(
        mixed_precision=recipe.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=recipe.seed),
    )
    set_seed(recipe.seed)
    run_dir = recipe.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    d = recipe.data
    data = build_datasets(d.dataset, d.root, d.train_subset, d.val_subset, d.train_size, d.download)
    model = build_model(recipe.model.name, data.num_classes, data.in_channels, recipe.model.width)

    o = recipe.optim
    lr = o.lr * d.batch_size * accelerator.num_processes / o.reference_batch  # linear scaling
    groups = parameter_groups(model, o.weight_decay)
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=o.momentum, nesterov=o.nesterov)
    train_loader = DataLoader(data.train, d.batch_size, shuffle=True, drop_last=True, num_workers=d.workers)
    val_loader = DataLoader(data.val, 2 * d.batch_size, num_workers=d.workers)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    # Stepped by hand once per optimizer step: accelerate's wrapper would step it once
    # per process.
    epochs, steps_per_epoch = recipe.total_epochs, len(train_loader)
    factor = warmup_linear_decay(round(o.warmup_epochs * steps_per_epoch), epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=o.label_smoothing)
    bare = accelerator.unwrap_model(model)

    def dense_gradients():  # RigL's growth criterion, on one random training batch
        indices = torch.randperm(len(data.train))[: d.batch_size].tolist()
        images, labels = (t.to(accelerator.device) for t in default_collate([data.train[i] for i in indices]))
        with accelerator.autocast():
            accelerator.backward(loss_fn(model(images), labels))

    method = build_method(recipe, bare, optimizer, dense_gradients)
    phases = phases_of(recipe) if recipe.sparsity.method == "acdc" else None
    progress = {"epoch": -1, "history": [], "best_dense": -1.0, "train_flops": 0.0}
    checkpoint_path = run_dir / "checkpoint.pt"
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        bare.load_state_dict(state.pop("model"))
        optimizer.load_state_dict(state.pop("optimizer"))
        scheduler.load_state_dict(state.pop("scheduler"))
        method_state = state.pop("method")
        if method is not None:
            method.load_state_dict(method_state)
        torch.set_rng_state(state.pop("rng"))
        progress = state
    if accelerator.is_main_process:
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        if phases:
            (run_dir / "phases.json").write_text(json.dumps(as_json(phases), indent=1))
            accelerator.print(f"AC/DC phases: {describe(phases)}")
        if progress["epoch"] < 0:
            (run_dir / "log.jsonl").unlink(missing_ok=True)
    example = data.val[0][0].unsqueeze(0).to(accelerator.device)

    start_epoch = progress["epoch"] + 1
    last_epoch = min(epochs, start_epoch + recipe.epochs_per_job) if recipe.epochs_per_job else epochs
    for epoch in range(start_epoch, last_epoch):
        started = time.perf_counter()
        if method is not None:
            method.on_epoch_start(epoch)
        train_loader.set_epoch(epoch)
        r = recipe.resize
        size = resolution_at(epoch, epochs, r.low, r.high, r.ramp_start, r.ramp_end, r.step) if r.low else 0
        loss_sum = train_epoch(model, train_loader, optimizer, scheduler, loss_fn, accelerator, size, epoch)
        train_loss = accelerator.reduce(loss_sum, "mean").item() / steps_per_epoch
        correct, entropy = evaluate(model, val_loader, accelerator)
        record = epoch_record(epoch, bare, method, example, recipe, phases)
        masked = method is not None and method.masked.attached
        progress["train_flops"] += len(data.train) * analysis.training_flops_per_sample(
            record["inference_flops"], record["dense_inference_flops"], masked
        )
        record.update(
            train_loss=train_loss, val_top1=correct, val_entropy=entropy, train_flops=progress["train_flops"],
            lr=scheduler.get_last_lr()[0], resolution=size or None, seconds=time.perf_counter() - started,
        )
        progress["history"].append(record)
        progress["epoch"] = epoch
        if accelerator.is_main_process:
            if (method is None or method.dense_phase(epoch)) and correct > progress["best_dense"]:
                progress["best_dense"] = correct
                torch.save(bare.state_dict(), run_dir / "best_dense.pt")
            analysis.append_json_line(run_dir / "log.jsonl", record)
            torch.save(
                {
                    "model": bare.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "method": method.state_dict() if method is not None else None,
                    "rng": torch.get_rng_state(),
                    **progress,
                },
                checkpoint_path,
            )
        accelerator.wait_for_everyone()
        accelerator.print(
            f"epoch {epoch} {record['phase']}: loss {train_loss:.4f} top1 {correct:.4f} entropy {entropy:.3f} "
            f"sparsity {record['sparsity']:.4f} ({record['seconds']:.1f}s)"
        )
    if accelerator.is_main_process and last_epoch == epochs:
        torch.save(bare.state_dict(), run_dir / "final.pt")
        analysis.plot_history(progress["history"], run_dir)
    best_path = run_dir / "best_dense.pt"
    return TrainResult(bare, best_path if best_path.exists() else None, progress["history"])


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


def epoch_record(epoch, model, method, example, recipe, phases) -> dict:
    weights = prunable_weights(model, recipe.sparsity.first_last_dense)
    global_sparsity, per_layer = analysis.sparsity(weights)
    flops = analysis.inference_flops(model, example)
    if phases:
        phase = phase_at(phases, epoch).kind
    else:
        phase = "sparse" if method is not None and method.masked.attached else "dense"
    return {
        "epoch": epoch,
        "phase": phase,
        "sparsity": global_sparsity,
        "layer_sparsity": per_layer,
        "mask_sparsity": method.masked.mask_sparsity() if method is not None else 0.0,
        "mask_iou": method.last_iou if method is not None else None,
        "zero_channels": analysis.zero_channel_fraction(weights),
        "inference_flops": flops["sparse"],
        "dense_inference_flops": flops["dense"],
    }


def main(argv: list[str] | None = None) -> TrainResult:
    parser = argparse.ArgumentParser(
        prog="python -m sparse_transfer.vision.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--recipe", required=True, help="YAML recipe, e.g. recipes/vision/fashion_mnist_acdc.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoint.pt")
    parser.add_argument("overrides", nargs="*", help="key=value, dotted for sections: sparsity.target=0.95")
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except ValueError as error:
        sys.exit(f"error: {error}")
    with process_group_released():
        return train(recipe, resume=args.resume)


if __name__ == "__main__":
    main()
