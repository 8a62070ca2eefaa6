"""The end-to-end pruning pipeline with sparsity enforcement (arXiv 2312.01653), run by
a vision recipe with `sparsity.method: pipeline` through the usual entry point:

1. pre-pruning training for `pipeline.pre_pruning_epochs`: ZerO initialization
   (zero_init.py) and learnable masks (learnable_masks.py), each switchable;
2. pruning: magnitude masks of the effective weights (weight x keep probability;
   the raw weights without learned masks) at exactly `sparsity.target`, with the
   recipe's distribution (`global`, `uniform` = per layer, `erk`, ...);
3. post-pruning training for the remaining epochs with the mask enforced
   (MaskedWeights: exact zeros) and the ToST smoothing of smoothing.py.

Every epoch logs what AC/DC logs (top-1, training loss, prediction entropy, exact
sparsity, mask IoU) to `log.jsonl`, plus the expected mask density in stage 1 and the
mask violations (non-zeros at pruned positions, always 0) in stage 3.

ZerO init together with learned masks can collapse training (the paper reports it):
an epoch with a non-finite loss or chance-level accuracy is flagged in its `collapse`
field and printed as a warning naming the switches to try; the run goes on, so the
collapse shows in the results instead of being hidden.
"""

from __future__ import annotations

import math
import time

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader

from sparse_transfer.masks import MaskedWeights
from sparse_transfer.schedules import warmup_linear_decay
from sparse_transfer.vision import analysis
from sparse_transfer.vision.data import build_datasets
from sparse_transfer.vision.loop import TrainResult, evaluate, parameter_groups
from sparse_transfer.vision.models import model_for
from sparse_transfer.vision.pipeline.learnable_masks import LearnableMasks
from sparse_transfer.vision.pipeline.smoothing import Smoothing
from sparse_transfer.vision.pipeline.zero_init import zero_init_
from sparse_transfer.vision.recipe import VisionRecipe
from sparse_transfer.vision.sparsity import prunable_weights, target_masks

PRE_PRUNING, POST_PRUNING = "pre-pruning", "post-pruning"


def collapse_reason(train_loss: float, val_top1: float, num_classes: int) -> str | None:
    """Why an epoch counts as collapsed (None when it does not)."""
    if not math.isfinite(train_loss):
        return f"training loss is {train_loss}"
    if val_top1 <= 1.5 / num_classes:
        return f"validation top-1 {val_top1:.3f} is at chance level (1/{num_classes})"
    return None


def collapse_hint(recipe: VisionRecipe, stage: str) -> str:
    """What to try after a collapse, naming the switches that are on."""
    if stage == POST_PRUNING:
        return "; try a lower optim.lr or sparsity.target"
    switches = [f"pipeline.{name}=false" for name in ("zero_init", "learned_mask") if getattr(recipe.pipeline, name)]
    both = " (the paper reports that ZerO init and learned masks together can collapse)" if len(switches) == 2 else ""
    return f"{both}; try {' or '.join(switches + ['a lower optim.lr'])}"


def train_pipeline(recipe: VisionRecipe, resume: bool = False) -> TrainResult:
    if resume:
        raise ValueError("--resume is not supported by sparsity.method=pipeline; rerun the recipe without --resume")
    recipe.pipeline.check(recipe.total_epochs)  # load_recipe checks too; a VisionRecipe built in code may not be
    config, sparsity = recipe.pipeline, recipe.sparsity
    accelerator = Accelerator(
        mixed_precision=recipe.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=recipe.seed),
    )
    if accelerator.num_processes > 1:  # stage 2 removes parameters that DDP has registered
        raise ValueError("sparsity.method=pipeline runs in one process only; launch it without data parallelism")
    set_seed(recipe.seed)
    d = recipe.data
    data = build_datasets(d, recipe.seed)
    model = model_for(recipe.model, data)
    run_dir = recipe.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    (run_dir / "log.jsonl").unlink(missing_ok=True)
    if config.zero_init:
        zero_init_(model)
    names = list(prunable_weights(model, sparsity.first_last_dense))
    every_layer = list(prunable_weights(model))  # the identity paths leave out the first and the last
    train_loader = DataLoader(data.train, d.batch_size, shuffle=True, drop_last=True, num_workers=d.workers)
    val_loader = DataLoader(data.val, 2 * d.batch_size, num_workers=d.workers)
    # The weights' optimizer is built before the masks exist, so the logits stay out of it.
    optimizers = [sgd(model, recipe)]
    masks = None
    if config.learned_mask:
        masks = LearnableMasks(model, names, config.mask_init, config.estimator, config.temperature)
        optimizers.append(torch.optim.Adam(masks.logits(), lr=config.mask_lr))
    model, train_loader, val_loader, *optimizers = accelerator.prepare(model, train_loader, val_loader, *optimizers)
    run = EpochRunner(recipe, model, train_loader, val_loader, accelerator, data.num_classes)
    bare = accelerator.unwrap_model(model)

    pre_pruning(run, recipe, optimizers, masks, names)
    masked = prune(bare, names, masks, sparsity.target, sparsity.distribution)
    post_pruning(run, recipe, masked, every_layer)
    if accelerator.is_main_process:
        torch.save(bare.state_dict(), run_dir / "final.pt")
        analysis.plot_history(run.history, run_dir)
    return TrainResult(bare, None, run.history)


def pre_pruning(run: EpochRunner, recipe: VisionRecipe, optimizers, masks: LearnableMasks | None, names: list[str]) -> None:
    """Stage 1: dense training, with the learned masks' regularizer when there are masks;
    logs the expected density and the IoU of consecutive top-k masks."""
    config, sparsity = recipe.pipeline, recipe.sparsity
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.optim.label_smoothing)

    def loss_with_regularizer(logits, labels):
        regularizer = masks.regularizer(1 - sparsity.target, config.density_weight, config.polarization_weight)
        return loss_fn(logits, labels) + regularizer

    scheduler = run.lr_schedule(optimizers[0], config.pre_pruning_epochs)
    model, previous_mask = run.accelerator.unwrap_model(run.model), None
    for epoch in range(config.pre_pruning_epochs):
        record = run.epoch(epoch, PRE_PRUNING, optimizers, scheduler, loss_with_regularizer if masks else loss_fn)
        weights = masks.effective_weights() if masks else {name: model.get_parameter(name) for name in names}
        mask = target_masks(weights, sparsity.target, sparsity.distribution)
        record.update(sparsity_record(weights), expected_density=masks.expected_density().item() if masks else None)
        record["mask_iou"] = analysis.mask_iou(previous_mask, mask) if previous_mask else None
        previous_mask = mask
        run.log(record)


def post_pruning(run: EpochRunner, recipe: VisionRecipe, masked: MaskedWeights, every_layer: list[str]) -> None:
    """Stage 3: a fresh optimizer and LR schedule, the mask enforced, the smoothing
    annealed to the plain network; ends with the smoothing and the hooks removed."""
    config = recipe.pipeline
    epochs = recipe.total_epochs - config.pre_pruning_epochs
    model = run.accelerator.unwrap_model(run.model)
    optimizer = run.accelerator.prepare(sgd(model, recipe))
    masked.attach(optimizer)
    scheduler = run.lr_schedule(optimizer, epochs)
    loss_fn = nn.CrossEntropyLoss()
    smoothing = Smoothing(model, loss_fn, every_layer, epochs, config.label_smoothing, config.soft_activation,
                          config.skip_weight).attach()  # fmt: skip
    for index in range(epochs):
        smoothing.set_epoch(index)
        record = run.epoch(config.pre_pruning_epochs + index, POST_PRUNING, [optimizer], scheduler, loss_fn)
        record.update(sparsity_record(masked.weights()), mask_sparsity=masked.mask_sparsity(),
                      mask_violations=masked.verify(), relu_weight=smoothing.relu_weight,
                      skip_weight=smoothing.skip_weight, label_smoothing=loss_fn.label_smoothing)  # fmt: skip
        run.log(record)
    smoothing.remove()
    masked.detach()


def prune(
    model: nn.Module, names: list[str], masks: LearnableMasks | None, target: float, distribution: str = "global"
) -> MaskedWeights:
    """Stage 2: magnitude masks of the effective weights at exactly `target` sparsity
    (`distribution` as in sparsity.target_masks: global, uniform = per layer, erk, ...).
    Learned masks are removed first, leaving plain weights equal to the effective
    ones. The returned masks are applied but not yet attached."""
    weights = masks.remove() if masks else {name: model.get_parameter(name) for name in names}
    masked = MaskedWeights(model, target_masks(weights, target, distribution))
    masked.apply_()
    return masked


def sgd(model: nn.Module, recipe: VisionRecipe) -> torch.optim.SGD:
    o = recipe.optim
    lr = o.lr * recipe.data.batch_size / o.reference_batch  # linear scaling, as in train.py (one process)
    return torch.optim.SGD(parameter_groups(model, o.weight_decay), lr=lr, momentum=o.momentum, nesterov=o.nesterov)


def sparsity_record(weights: dict[str, torch.Tensor]) -> dict:
    global_sparsity, per_layer = analysis.sparsity(weights)
    return {"sparsity": global_sparsity, "layer_sparsity": per_layer}


class EpochRunner:
    """One training epoch plus validation, and the run's log."""

    def __init__(self, recipe, model, train_loader, val_loader, accelerator, num_classes: int):
        self.recipe, self.model, self.accelerator, self.num_classes = recipe, model, accelerator, num_classes
        self.train_loader, self.val_loader = train_loader, val_loader
        self.history: list[dict] = []

    def lr_schedule(self, optimizer, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
        """Each training stage warms up and decays on its own."""
        steps = len(self.train_loader)
        warmup = min(round(self.recipe.optim.warmup_epochs * steps), epochs * steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(warmup, epochs * steps))

    def epoch(self, epoch: int, stage: str, optimizers, scheduler, loss_of) -> dict:
        started = time.perf_counter()
        self.model.train()
        loss_sum = torch.zeros((), device=self.accelerator.device)
        for images, labels in self.train_loader:
            with self.accelerator.autocast():
                loss = loss_of(self.model(images), labels)
            self.accelerator.backward(loss)
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            loss_sum += loss.detach()
        train_loss = self.accelerator.reduce(loss_sum, "mean").item() / len(self.train_loader)
        top1, entropy = evaluate(self.model, self.val_loader, self.accelerator)
        return {"epoch": epoch, "phase": stage, "train_loss": train_loss, "val_top1": top1, "val_entropy": entropy,
                "collapse": collapse_reason(train_loss, top1, self.num_classes), "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - started}  # fmt: skip

    def log(self, record: dict) -> None:
        """Keep, write and print the record; a collapse is printed as a warning."""
        self.history.append(record)
        if record["collapse"]:
            self.accelerator.print(
                f"warning: {record['phase']} training collapsed at epoch {record['epoch']}: {record['collapse']}"
                + collapse_hint(self.recipe, record["phase"])
            )
        if self.accelerator.is_main_process:
            analysis.append_json_line(self.recipe.run_dir / "log.jsonl", record)
        self.accelerator.print(
            f"epoch {record['epoch']} {record['phase']}: loss {record['train_loss']:.4f} top1 {record['val_top1']:.4f} "
            f"entropy {record['val_entropy']:.3f} sparsity {record['sparsity']:.4f} ({record['seconds']:.1f}s)"
        )
