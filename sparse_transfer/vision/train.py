"""A vision training run with AC/DC(++), GMP, RigL or dense training (the end-to-end
pruning pipeline is `sparse_transfer.vision.pipeline`): masks are enforced by hooks on the
unwrapped model, so every process and precision sees the same exact zeros.

A recipe's `kind` picks how the run starts (KINDS): `train` builds the model (from
`model.weights` when given), `transfer` loads a sparse checkpoint under a new classifier
(transfer.py). Data and model are built, and bad input refused, before anything is written.

Each epoch writes `checkpoint.pt` (model, optimizer, LR position, masks and phase,
RNG state, history); `resume=True` continues from it, mid-phase included. The run keeps
`best_dense.pt` (the best model of a dense epoch; AC/DC co-trains it) and the final
model `final.pt`, plus `log.jsonl`, `phases.json`, `recipe.yaml`, `data.json` (own images: the classes and the
normalisation used) and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader, default_collate

from sparse_transfer.schedules import warmup_linear_decay
from sparse_transfer.utils.errors import exit_status
from sparse_transfer.utils.typed_config import RecipeError
from sparse_transfer.vision import analysis
from sparse_transfer.vision.acdc import ACDC
from sparse_transfer.vision.data import build_datasets
from sparse_transfer.vision.gmp import GMP
from sparse_transfer.vision.loop import (
    TrainResult,
    evaluate,
    parameter_groups,
    train_epoch,
)
from sparse_transfer.vision.masked_training import MaskedTraining
from sparse_transfer.vision.models import classifier_name, model_for
from sparse_transfer.vision.pipeline.run import train_pipeline
from sparse_transfer.vision.recipe import VisionRecipe, load_recipe
from sparse_transfer.vision.rigl import RigL
from sparse_transfer.vision.schedules import (
    acdc_phases,
    as_json,
    describe,
    phase_at,
    resolution_at,
)
from sparse_transfer.vision.sparsity import prunable_weights
from sparse_transfer.vision.transfer import FixedMask, body_weights, start_transfer
from sparse_transfer.vision.weights import load_weights, read_state_dict


def _acdc(recipe: VisionRecipe, model, optimizer, weights, dense_gradients) -> ACDC:
    c = recipe.sparsity
    return ACDC(model, optimizer, weights, phases_of(recipe), c.target, c.distribution,
                c.decompression_sparsity, c.reset_momentum, c.ramp_from)


def _gmp(recipe: VisionRecipe, model, optimizer, weights, dense_gradients) -> GMP:
    c = recipe.sparsity
    return GMP(model, optimizer, weights, recipe.total_epochs, c.target, c.distribution, c.prune_every,
               c.fixed_fraction)


def _rigl(recipe: VisionRecipe, model, optimizer, weights, dense_gradients) -> RigL:
    c = recipe.sparsity
    return RigL(model, optimizer, weights, recipe.total_epochs, c.target, dense_gradients, c.distribution,
                c.alpha, c.update_every, c.fixed_fraction, recipe.seed)


def _transfer(recipe: VisionRecipe, model, optimizer, weights, dense_gradients) -> FixedMask | None:
    if not recipe.transfer.sparse:
        return None
    return FixedMask(model, optimizer, body_weights(model, recipe.sparsity.first_last_dense),
                     trains_weights=recipe.transfer.mode == "full")


# The registry of sparse-training methods (`sparsity.method`): each builds its MaskedTraining
# from the recipe; "dense" trains without masks, "pipeline" runs vision.pipeline instead;
# "transfer" is the fixed mask of `kind: transfer`.
METHODS = {"acdc": _acdc, "gmp": _gmp, "rigl": _rigl, "transfer": _transfer}


def _start_training(recipe: VisionRecipe, data) -> tuple[nn.Module, nn.Module]:
    model = model_for(recipe.model, data)
    if recipe.model.weights:  # the classifier is kept where it fits the classes, else new
        load_weights(model, read_state_dict(recipe.model.weights), recipe.model.weights, classifier_name(model))
    return model, model


# The registry of recipe kinds (`kind`): each returns the model to train and the module whose
# parameters the optimizer trains.
KINDS = {"train": _start_training, "transfer": start_transfer}


def build_method(recipe: VisionRecipe, model, optimizer, dense_gradients) -> MaskedTraining | None:
    method = "transfer" if recipe.kind == "transfer" else recipe.sparsity.method
    if method == "dense":
        return None
    if method not in METHODS:
        raise RecipeError(f"unknown sparsity.method {method!r}; use dense, pipeline or one of {', '.join(METHODS)}")
    weights = prunable_weights(model, recipe.sparsity.first_last_dense)
    return METHODS[method](recipe, model, optimizer, weights, dense_gradients)


def phases_of(recipe: VisionRecipe):
    c = recipe.sparsity
    return acdc_phases(recipe.epochs, c.warmup_fraction, c.phase_length, c.final_dense, c.final_sparse, recipe.scale)


def train(recipe: VisionRecipe, resume: bool = False) -> TrainResult:
    if recipe.kind not in KINDS:
        raise RecipeError(f"unknown kind {recipe.kind!r}; use one of {', '.join(KINDS)}")
    if recipe.sparsity.method == "pipeline":  # three stages, each with its own optimizer (pipeline.py)
        return train_pipeline(recipe, resume)
    accelerator = Accelerator(
        mixed_precision=recipe.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=recipe.seed),
    )
    set_seed(recipe.seed)
    d = recipe.data
    data = build_datasets(d, recipe.seed)
    model, trained = KINDS[recipe.kind](recipe, data)
    run_dir = recipe.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    o = recipe.optim
    lr = o.lr * d.batch_size * accelerator.num_processes / o.reference_batch  # linear scaling
    groups = parameter_groups(trained, o.weight_decay)
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
        if data.classes is not None:
            used = {"classes": data.classes, "channels": data.in_channels, "image_size": data.image_size,
                    "mean": data.mean, "std": data.std}
            (run_dir / "data.json").write_text(json.dumps(used, indent=1))
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


def epoch_record(epoch, model, method, example, recipe, phases) -> dict:
    # the method's weights: the prunable ones, less a transfer's new classifier
    if method is not None:
        weights = method.masked.weights()
    else:
        weights = prunable_weights(model, recipe.sparsity.first_last_dense)
    global_sparsity, per_layer = analysis.sparsity(weights)
    flops = analysis.inference_flops(model, example)
    if phases:
        phase = phase_at(phases, epoch).kind
    elif recipe.kind == "transfer":
        phase = f"{recipe.transfer.mode} transfer"
    else:
        phase = "sparse" if method is not None and method.masked.attached else "dense"
    return {
        "epoch": epoch,
        "phase": phase,
        "sparsity": global_sparsity,
        "layer_sparsity": per_layer,
        "mask_sparsity": method.masked.mask_sparsity() if method is not None else 0.0,
        "mask_iou": method.last_iou if method is not None else None,
        "mask_violations": method.masked.verify() if method is not None else None,
        "zero_channels": analysis.zero_channel_fraction(weights),
        "inference_flops": flops["sparse"],
        "dense_inference_flops": flops["dense"],
    }


def main(argv: list[str] | None = None) -> int:
    """`sparse-transfer vision --recipe NAME_OR_YAML [--resume] [key=value ...]`."""
    parser = argparse.ArgumentParser(prog="sparse-transfer vision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True, help="a shipped vision recipe's name (fashion_mnist_acdc, "
                        "resnet50_imagenet_acdc_5x, ...) or a YAML file")
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoint.pt")
    parser.add_argument("overrides", nargs="*", help="key=value, dotted for sections: sparsity.target=0.95")
    args = parser.parse_args(argv)
    return exit_status(parser.prog, lambda: train(load_recipe(args.recipe, args.overrides), resume=args.resume))
