"""SparseTransferTrainer: a `transformers.Trainer` that applies a sparse-transfer recipe.

It holds the pretrained zeros fixed (hooks of `MaskedWeights`), unfreezes the
transformer blocks back to front one stage at a time, and rewinds the LR per stage;
with a teacher (the recipe's `distillation:` section, or `teacher=`) it mixes the
teacher's logits into the training loss.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings

import yaml
from transformers import Trainer, TrainerCallback, TrainingArguments

from sparse_transfer.encoders import find_blocks, shared_blocks
from sparse_transfer.schedules import rewinding_scheduler
from sparse_transfer.training import SparseTrainingMixin
from sparse_transfer.transfer.recipe import Recipe, load_recipe
from sparse_transfer.transfer.teacher import (
    distilled_loss,
    load_teacher,
    teacher_logits,
)
from sparse_transfer.transfer.unfreezing import ParameterGroups, Stage
from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.utils.io import write_json_atomic

logger = logging.getLogger(__name__)

STAGE_PLAN_NAME = "stage_plan.json"
# how a user sets the blocks and their module types, for the advice in errors
RECIPE_FLAGS = ("the recipe's mask.block_path (run_glue.py: --block_path)",
                "the recipe's mask.module_types (run_glue.py: --module_types)")
_DEFAULT_EPOCHS = TrainingArguments.__dataclass_fields__["num_train_epochs"].default


class SparseTransferTrainer(SparseTrainingMixin, Trainer):
    """`Trainer` plus `recipe=` (a shipped recipe's name, a YAML path, a dict or a `Recipe`).

    The recipe's stage plan sets `num_train_epochs` (1 + blocks + 1 for gradual
    unfreezing); for a one-stage dense recipe an explicit non-default
    `num_train_epochs` wins over the recipe. `teacher=` (a path, hub name or model)
    overrides the recipe's `distillation.teacher`."""

    def __init__(self, model=None, args: TrainingArguments | None = None, *trainer_args, recipe=None, teacher=None,
                 **kwargs):
        if model is None:
            raise ConfigurationError("SparseTransferTrainer needs `model` (model_init is not supported: the mask is read from it)")
        self.recipe: Recipe = load_recipe(recipe)
        schedule, mask = self.recipe.schedule, self.recipe.mask
        block_path, blocks = find_blocks(model, mask.block_path, mask.module_types, RECIPE_FLAGS)
        args = args if args is not None else TrainingArguments(output_dir="trainer_output")
        if schedule.kind == "dense" and args.num_train_epochs != _DEFAULT_EPOCHS:
            schedule = dataclasses.replace(schedule, epochs=int(args.num_train_epochs))
            self.recipe = dataclasses.replace(self.recipe, schedule=schedule)
        self.plan = schedule.plan(len(blocks))
        self.teacher = self._load_teacher(teacher, model.config.num_labels)
        self._check_args(args)
        args.num_train_epochs = self.plan.total_epochs

        self.parameter_groups = ParameterGroups.of(model, block_path, blocks, mask.module_types)
        self.train_embeddings = not schedule.freeze_embeddings
        self.fix_masks(model, mask, block_path, self.recipe.name)
        self.stage_plan = {
            "model": type(model).__name__, "recipe": self.recipe.name, "block_path": block_path,
            "module_types": list(mask.module_types), "shared_blocks": shared_blocks(model, blocks),
            **self.parameter_groups.describe(self.plan, self.train_embeddings),
        }
        if self.stage_plan["shared_blocks"]:
            warnings.warn(self.stage_plan["shared_blocks"], stacklevel=2)
        sparsity = self.masks.mask_sparsity()
        if sparsity == 0.0:
            warnings.warn(
                f"{type(model).__name__} has no zeros in its {len(self.masks.masks)} selected weights "
                "(measured sparsity 0.00%): this is dense transfer; prune it first with "
                "`sparse-transfer prune` for sparse transfer",
                stacklevel=2,
            )
        logger.info("Resolved recipe:\n%s", yaml.safe_dump(self.recipe.to_dict(), sort_keys=False))
        logger.info("Fixed mask: %d weights, sparsity %.2f%%", len(self.masks.masks), 100 * sparsity)
        self._unfreeze_all()
        self.current_stage: Stage | None = None
        self.steps_per_epoch: int | None = None
        callbacks = list(kwargs.pop("callbacks", None) or []) + [_StageCallback(self)]
        super().__init__(model, args, *trainer_args, callbacks=callbacks, **kwargs)

    def _check_args(self, args: TrainingArguments) -> None:
        staged = len(self.plan.stages) > 1
        if staged and args.max_steps > 0:
            raise ConfigurationError(
                f"max_steps={args.max_steps} cannot be combined with the staged recipe {self.recipe.name!r} "
                "(stages are whole epochs); drop max_steps or change schedule.epochs_per_stage"
            )
        if staged and args.num_train_epochs not in (_DEFAULT_EPOCHS, self.plan.total_epochs):
            raise ConfigurationError(
                f"num_train_epochs={args.num_train_epochs} does not match the {self.plan.total_epochs} epochs of "
                f"recipe {self.recipe.name!r}; leave it unset or change schedule.epochs_per_stage/final_stage_epochs"
            )
        if staged and args.ddp_find_unused_parameters is False:
            raise ConfigurationError(
                "ddp_find_unused_parameters=False cannot train frozen blocks under DDP; leave it unset"
            )
        if staged:
            # Frozen blocks produce no gradient: DDP must be told they are unused.
            args.ddp_find_unused_parameters = True

    # -- stages --------------------------------------------------------------------------

    def _unfreeze_all(self) -> None:
        """Every parameter that will ever train requires grad, so that the optimizer and
        DDP (both built before the first stage starts) know all of them."""
        ever = {id(p) for _, p in self.parameter_groups.ever_trainable(self.plan, self.train_embeddings)}
        for _, param in self.parameter_groups.named_parameters():
            param.requires_grad_(id(param) in ever)

    def _enter_stage(self, global_step: int) -> None:
        stage = self.plan.stage_at_epoch(global_step // self.steps_per_epoch)
        trainable = self.parameter_groups.apply(stage, self.train_embeddings)
        if stage != self.current_stage:
            self.current_stage = stage
            blocks = ",".join(map(str, stage.trainable_blocks)) or "none"
            logger.info(
                "Stage %d/%d: weights of blocks [%s] trainable, %d trainable parameters",
                stage.index, len(self.plan.stages) - 1, blocks, trainable,
            )
            # which blocks, not only how many: the lowest trainable one (-1: none) pins the set
            self.log({"stage": stage.index, "trainable_blocks": len(stage.trainable_blocks),
                      "lowest_trainable_block": min(stage.trainable_blocks, default=-1),
                      "trainable_params": trainable})

    # -- optimizer and LR -----------------------------------------------------------------

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self._unfreeze_all()  # the optimizer must know every parameter that will ever train
        return super().create_optimizer(model)

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self.steps_per_epoch = values[1]  # optimizer steps, after sharding and accumulation
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            lr = self.recipe.lr
            if lr.rewind and len(self.plan.stages) > 1:
                stage_steps = [stage.epochs * self.steps_per_epoch for stage in self.plan.stages]
            else:
                stage_steps = [num_training_steps]
            warmup = self.args.get_warmup_steps(stage_steps[0]) if self.args.warmup_steps else lr.warmup_steps_per_stage
            self.lr_scheduler = rewinding_scheduler(
                optimizer or self.optimizer, stage_steps, warmup, lr.end / self.args.learning_rate
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # -- distillation -----------------------------------------------------------------------

    def _load_teacher(self, teacher, num_labels: int):
        """`teacher=` wins over the recipe's `distillation.teacher`; the saved recipe names it."""
        if teacher is not None:
            named = teacher if isinstance(teacher, str) else type(teacher).__name__
            self.recipe = dataclasses.replace(
                self.recipe, distillation=dataclasses.replace(self.recipe.distillation, enabled=True, teacher=named))
        source = teacher if teacher is not None else self.recipe.distillation.teacher
        if self.recipe.distillation.enabled and source is None:
            raise ConfigurationError(f"recipe {self.recipe.name!r} distills from a teacher: set distillation.teacher, "
                                     "or pass --teacher DIR (a dense model fine-tuned on the task)")
        return load_teacher(source, num_labels) if source is not None else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Training loss mixed with the teacher's logits; evaluation keeps the plain task loss,
        so eval curves compare across recipes."""
        if self.teacher is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        teacher = self.teacher_on(inputs["input_ids"].device)
        loss = distilled_loss(loss, outputs.logits, teacher_logits(teacher, inputs), self.recipe.distillation)
        return (loss, outputs) if return_outputs else loss

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        violations = self.masks.verify()
        if violations:
            raise ConfigurationError(
                f"checkpoint {resume_from_checkpoint} has {violations} non-zero weights where the loaded model is "
                "pruned: resume with the same model (--model_name_or_path) that started the run"
            )

class _StageCallback(TrainerCallback):
    def __init__(self, trainer: SparseTransferTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_json_atomic(os.path.join(args.output_dir, STAGE_PLAN_NAME), self.trainer.stage_plan)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer._enter_stage(state.global_step)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        # DDP may hand a zero gradient to a parameter that was frozen after it was
        # wrapped; AdamW would then decay it. A frozen weight gets no update at all.
        for _, param in self.trainer.parameter_groups.named_parameters():
            if not param.requires_grad:
                param.grad = None

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer._unfreeze_all()
        self.trainer.current_stage = None
