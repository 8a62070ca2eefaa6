"""UpstreamPruningTrainer: gradual pruning of a pretrained encoder with distillation
from its dense self, on the `transformers.Trainer` (checkpoints, resume, accelerate,
bf16/fp16 and logging come from there).

At every pruning step of the cubic schedule the masks grow to the step's exact count
(round(s * n), by magnitude or by oBS saliency; a pruned weight stays pruned), and the
LR rewinds to its peak; after the last step the mask is fixed and the LR decays to 0.
The masks are enforced by the same `MaskedWeights` hooks as sparse transfer, so the
result's zeros are exactly what `SparseTransferTrainer` will hold fixed.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from itertools import cycle

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback

from sparse_transfer.distillation import distillation_terms, weighted_sum
from sparse_transfer.encoders import find_blocks
from sparse_transfer.obs import BlockFisherInverse, fisher_bytes
from sparse_transfer.pruning import block_scores, layer_extremes, parse_block, score_masks
from sparse_transfer.schedules import PruningSteps, rewinding_scheduler
from sparse_transfer.training import SparseTrainingMixin, freeze
from sparse_transfer.upstream.recipe import UpstreamRecipe, load_upstream_recipe
from sparse_transfer.utils.errors import ConfigurationError

logger = logging.getLogger(__name__)

MASKS_NAME = "pruning_masks.safetensors"
FISHER_MEMORY_SHARE = 0.8  # of the memory available now
GRADIENTS_PER_UPDATE = 8  # gradients held before they go into the Fisher inverse together
# how a user sets the blocks and their module types, for the advice in errors
RECIPE_FLAGS = ("the recipe's mask.block_path (sparse-transfer upstream: --block_path)",
                "the recipe's mask.module_types (sparse-transfer upstream: --module_types)")


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: torch.Tensor,
                mask_token_id: int, probability: float, generator: torch.Generator | None = None):
    """Replace a `probability` share of the real, non-special tokens by [MASK];
    return the new ids and the bool positions."""
    draw = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special_ids.to(input_ids.device))
    positions = candidates & (draw < probability)
    return input_ids.masked_fill(positions, mask_token_id), positions


class UpstreamPruningTrainer(SparseTrainingMixin, Trainer):
    """`Trainer` that prunes `model` upstream while distilling it from `teacher`.

    `recipe`: a shipped upstream recipe's name, a YAML path, a dict or an `UpstreamRecipe`.
    `tokenizer` (or `processing_class`) gives the [MASK] and special-token ids."""

    def __init__(self, model, args=None, *, teacher, recipe=None, **kwargs):
        self.recipe: UpstreamRecipe = load_upstream_recipe(recipe)
        mask = self.recipe.mask
        self.fix_masks(model, mask, find_blocks(model, mask.block_path, mask.module_types, RECIPE_FLAGS)[0],
                       self.recipe.name)
        block = parse_block(self.recipe.pruning.block)
        if block > 1:  # a block that does not divide a layer fails now, not at the first pruning step
            block_scores({name: w.detach().abs() for name, w in self.masks.weights().items()}, block)
        self.teacher = self._frozen_teacher(teacher)
        self._check_model(model)
        if self.recipe.distillation.student_dropout is not None:
            for module in model.modules():  # the saved config keeps the model's dropout for fine-tuning
                if isinstance(module, torch.nn.Dropout):
                    module.p = self.recipe.distillation.student_dropout
        self.pruning_steps: PruningSteps | None = None
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_count = 0
        super().__init__(model, args, **kwargs)
        self.loss_is_scaled_for_ga = False  # the loss is a mean: divide it by the accumulation steps
        tokenizer = self.processing_class
        self.mask_token_id = getattr(tokenizer, "mask_token_id", None)
        self.special_ids = torch.tensor(sorted(getattr(tokenizer, "all_special_ids", [])), dtype=torch.long)
        masking = self.recipe.distillation.student_mask_probability or (
            self.recipe.pruning.criterion == "obs" and self.recipe.pruning.obs.mask_probability)
        if masking and self.mask_token_id is None:
            raise ConfigurationError("masking the student's tokens (distillation.student_mask_probability or "
                                     "pruning.obs.mask_probability) needs a tokenizer with a [MASK] token; "
                                     "pass processing_class=tokenizer or set them to 0")
        self.add_callback(_PruningCallback(self))

    # -- set-up checks ----------------------------------------------------------------

    def _frozen_teacher(self, teacher):
        dtype = getattr(torch, self.recipe.distillation.teacher_dtype)
        return freeze(teacher.to(dtype=dtype))

    def _check_model(self, model) -> None:
        distillation, pruning = self.recipe.distillation, self.recipe.pruning
        has_head = model.get_output_embeddings() is not None
        if distillation.logits and not has_head:
            raise ConfigurationError(
                f"loss term 'logits' needs a model with an MLM head (e.g. BertForMaskedLM); {type(model).__name__} "
                "has none: set distillation.logits to 0 and use hidden / attention / embedding"
            )
        if pruning.criterion != "obs":
            return
        own_loss = distillation.logits and distillation.hardness < 1
        if not (pruning.obs.mask_probability or own_loss):
            raise ConfigurationError(
                "pruning.criterion obs needs a loss whose gradient is not zero when the student equals its teacher: "
                "set pruning.obs.mask_probability > 0 (or, with an MLM head, distillation.hardness < 1)"
            )
        weights = self.masks.weights()
        numels = [w.numel() for w in weights.values()]
        needed = fisher_bytes(numels, pruning.obs.block_size) + 4 * GRADIENTS_PER_UPDATE * sum(numels)
        device = next(iter(weights.values())).device
        available = available_memory(device)
        logger.warning("oBS Fisher: %.2f GiB for %d weights in blocks of %d (%.1f GiB available on %s)",
                       needed / 2**30, sum(w.numel() for w in weights.values()), pruning.obs.block_size,
                       available / 2**30, device)
        if needed > FISHER_MEMORY_SHARE * available:
            raise ConfigurationError(
                f"the oBS Fisher needs {needed / 2**30:.2f} GiB but {available / 2**30:.2f} GiB is available on "
                f"{device}; lower pruning.obs.block_size ({pruning.obs.block_size}) or use criterion magnitude"
            )

    # -- loss -------------------------------------------------------------------------

    def loss_terms(self, model, inputs: dict, mask_probability: float | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Each distillation term for one batch: the teacher reads the real text, the
        student the text with `mask_probability` (default: the recipe's
        `student_mask_probability`) of its tokens masked."""
        config = self.recipe.distillation
        if mask_probability is None:
            mask_probability = config.student_mask_probability
        inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        student_inputs, masked = dict(inputs), None
        if mask_probability:
            student_inputs["input_ids"], masked = mask_tokens(
                inputs["input_ids"], inputs["attention_mask"], self.special_ids, self.mask_token_id,
                mask_probability, generator)
        outputs = {"output_hidden_states": config.needs_hidden_states(), "output_attentions": bool(config.attention)}
        teacher = self.teacher_on(inputs["input_ids"].device)
        with torch.no_grad():
            teacher_out = teacher(**inputs, **outputs)
        student_out = model(**student_inputs, **outputs)
        own_loss, positions = None, inputs["attention_mask"].bool()
        if config.logits and masked is not None:
            positions = masked
            if config.hardness < 1:
                own_loss = F.cross_entropy(student_out.logits[masked].float(), inputs["input_ids"][masked])
        return distillation_terms(config, student_out, teacher_out, inputs["attention_mask"], positions, own_loss)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        terms = self.loss_terms(model, inputs)
        loss = weighted_sum(self.recipe.distillation, terms)
        if model.training:
            for name, value in terms.items():
                self._term_sums[name] += float(value.detach())
            self._term_count += 1
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            if self._term_count:
                logs.update({f"loss_{name}": total / self._term_count for name, total in self._term_sums.items()})
            logs["sparsity"] = self.masks.mask_sparsity()
            self._term_sums.clear()
            self._term_count = 0
        super().log(logs, start_time)

    # -- schedule ---------------------------------------------------------------------

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        pruning = self.recipe.pruning
        last = max(num_training_steps - 1, 0)  # a pruning step needs an optimizer step after it
        self.pruning_steps = PruningSteps.cubic(
            num_training_steps, min(round(pruning.start * num_training_steps), last),
            min(round(pruning.end * num_training_steps), last), pruning.every, pruning.sparsity,
            pruning.initial_sparsity)
        if self.lr_scheduler is None:
            intervals = self.pruning_steps.interval_lengths()
            warmup = self.args.get_warmup_steps(intervals[0]) if self.args.warmup_steps else 0
            self.lr_scheduler = rewinding_scheduler(optimizer or self.optimizer, intervals, warmup)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # -- pruning ----------------------------------------------------------------------

    def prune_if_due(self, step: int) -> None:
        target = self.pruning_steps.targets.get(step) if self.pruning_steps else None
        if target is not None and target > self.masks.mask_sparsity():
            self.prune_to(target, step)

    @torch.no_grad()
    def prune_to(self, sparsity: float, step: int = 0) -> None:
        """Grow the masks to exactly round(sparsity * n) pruned weights (per layer with
        scope per-layer); with oBS, update the remaining weights."""
        pruning = self.recipe.pruning
        weights = self.masks.weights()
        if pruning.criterion == "obs":
            with torch.enable_grad():
                fishers = self.fisher_inverses(step)
            scores = {name: fishers[name].saliency(w) for name, w in weights.items()}
        else:
            scores = {name: w.detach().abs().float() for name, w in weights.items()}
        for name, score in scores.items():
            score[~self.masks.masks[name].to(score.device)] = float("-inf")  # pruned stays pruned
        masks = score_masks(scores, sparsity, pruning.scope, parse_block(pruning.block), pruning.max_layer_sparsity)
        masks = {name: mask.to(self.masks.masks[name].device) & self.masks.masks[name] for name, mask in masks.items()}
        if pruning.criterion == "obs":
            for name, w in weights.items():
                w.add_(fishers[name].pruning_update(w, ~masks[name]))
        self.masks.set_masks(masks)
        self.masks.apply_()
        if logger.isEnabledFor(logging.INFO):  # a full report counts violations and hashes every mask
            logger.info("step %d: pruned to %.2f%% (%s), %s", step, 100 * self.masks.mask_sparsity(),
                        pruning.criterion, layer_extremes(self.masks.report()))

    def fisher_inverses(self, step: int) -> dict[str, BlockFisherInverse]:
        """The block Fisher inverse of every masked weight from `num_grads` gradients of
        the training loss, on batches drawn with a seed of (run seed, step): a resumed
        run draws the same ones."""
        obs = self.recipe.pruning.obs
        weights = self.masks.weights()
        fishers = {name: BlockFisherInverse(w.numel(), obs.block_size, obs.num_grads, obs.damping, w.device)
                   for name, w in weights.items()}
        seed = self.args.seed * 1_000_003 + step
        loader = DataLoader(self.train_dataset, batch_size=obs.grad_batch_size, shuffle=True,
                            collate_fn=self.data_collator, generator=torch.Generator().manual_seed(seed))
        masking = torch.Generator().manual_seed(seed)
        model, was_training = self.model, self.model.training
        model.eval()  # no dropout: the gradients measure the loss, not the noise
        pending: dict[str, list[torch.Tensor]] = {name: [] for name in weights}
        try:
            for count, batch in zip(range(obs.num_grads), cycle(loader)):
                batch = self._prepare_inputs(batch)
                terms = self.loss_terms(model, batch, obs.mask_probability, masking)
                grads = torch.autograd.grad(weighted_sum(self.recipe.distillation, terms), list(weights.values()))
                if count == 0 and all(not g.any() for g in grads):
                    raise ConfigurationError("the oBS Fisher got a zero gradient: the loss does not depend on the "
                                             "pruned weights; set pruning.obs.mask_probability > 0")
                for name, grad in zip(weights, grads):
                    pending[name].append(grad * self.masks.masks[name].to(grad.device))
                if (count + 1) % GRADIENTS_PER_UPDATE == 0 or count == obs.num_grads - 1:
                    for name, fisher in fishers.items():
                        fisher.update(torch.stack(pending[name]))
                        pending[name].clear()
        finally:
            model.train(was_training)
        return fishers

    # -- checkpoints and outputs --------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        save_file({name: mask.to(torch.uint8).cpu().contiguous() for name, mask in self.masks.masks.items()},
                  os.path.join(output_dir or self.args.output_dir, MASKS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, MASKS_NAME)
        if os.path.exists(path):
            self.masks.set_masks({name: mask.bool() for name, mask in load_file(path).items()})
        else:  # a checkpoint from elsewhere: its zeros are the masks
            self.masks.set_masks({name: w.detach() != 0 for name, w in self.masks.weights().items()})
        self.masks.apply_()


class _PruningCallback(TrainerCallback):
    def __init__(self, trainer: UpstreamPruningTrainer):
        self.trainer = trainer

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer.prune_if_due(state.global_step)
