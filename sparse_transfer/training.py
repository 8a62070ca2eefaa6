"""What the toolkit's two Trainers (sparse transfer, upstream pruning) share: the fixed
mask of the blocks' weights, enforced from the first step (hooks, and the optimizer
re-zeroing after every step); a frozen teacher; and what every sparse model they save
carries: its sparsity report (global, per block, per layer, mask hash, violations) and the
resolved recipe. A model with a non-zero pruned weight is never saved silently."""

from __future__ import annotations

import os

import torch

from sparse_transfer.masks import MaskedWeights
from sparse_transfer.selection import Selection
from sparse_transfer.utils.io import write_json_atomic
from sparse_transfer.utils.typed_config import RecipeError

SPARSITY_REPORT_NAME = "sparsity_report.json"
RECIPE_NAME = "recipe.yaml"


def freeze(teacher: torch.nn.Module) -> torch.nn.Module:
    """A teacher as distillation reads it: eval mode (no dropout), no gradients."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


class SparseTrainingMixin:
    """For a `transformers.Trainer` subclass with a `recipe` (anything with `save(path)`) and
    a frozen `teacher` where it distills: `fix_masks` before `Trainer.__init__` sets
    `block_path` and `masks` (a `MaskedWeights`)."""

    def fix_masks(self, model: torch.nn.Module, selection: Selection, block_path: str, recipe_name: str) -> None:
        """The zeros of the selected weights inside the blocks become a fixed mask, enforced from now on."""
        self.block_path = block_path
        self.masks = MaskedWeights.from_nonzero(model, selection, within=[block_path])
        if not self.masks.masks:
            raise RecipeError(f"the mask section of recipe {recipe_name!r} selects no weight inside {block_path}; "
                              "check mask.module_types / include / exclude")
        self.masks.attach()

    def teacher_on(self, device: torch.device) -> torch.nn.Module:
        """`self.teacher` on the device of the student's batches (moved there once)."""
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return self.teacher

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            super().create_optimizer(model)
            self.masks.attach_optimizer(self.optimizer)  # re-zero pruned weights after every step
        return self.optimizer

    def block_of(self, name: str) -> str | None:
        prefix = self.block_path + "."
        return name[len(prefix):].split(".", 1)[0] if name.startswith(prefix) else None

    def sparsity_report(self) -> dict:
        return self.masks.report(group_of=self.block_of)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        report = self.sparsity_report()
        write_json_atomic(os.path.join(output_dir, SPARSITY_REPORT_NAME), report)
        self.recipe.save(os.path.join(output_dir, RECIPE_NAME))
        if report["mask_violations"]:
            raise RuntimeError(f"{report['mask_violations']} pruned weights are non-zero in the saved model")
