"""Declarative YAML recipes, validated into typed sections.

A recipe says *what* to do (which weights are masked, the stage plan, the LR shape,
default training arguments, the grid); the trainer is the code that applies it.
Unknown or mistyped keys fail with one line naming the key and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparse_transfer.selection import Selection
from sparse_transfer.transfer.teacher import TransferDistillation
from sparse_transfer.transfer.unfreezing import (
    StagePlan,
    dense_plan,
    gradual_unfreeze_plan,
)
from sparse_transfer.utils.typed_config import (
    RecipeError,
    YamlRecipe,
    build_section,
    check_training_keys,
    read_sections,
)

SCHEDULE_KINDS = ("gradual_unfreeze", "dense")


@dataclass
class ScheduleConfig:
    kind: str = "gradual_unfreeze"
    epochs_per_stage: int = 1
    final_stage_epochs: int = 1
    epochs: int = 3  # dense kind only
    unfreeze_blocks: int | None = None  # unfreeze only the last U blocks (default: all)
    freeze_embeddings: bool = True

    def plan(self, num_blocks: int) -> StagePlan:
        if self.kind == "dense":
            return dense_plan(num_blocks, self.epochs)
        return gradual_unfreeze_plan(num_blocks, self.epochs_per_stage, self.final_stage_epochs, self.unfreeze_blocks)


@dataclass
class LRConfig:
    rewind: bool = True  # restart the linear decay at every stage
    end: float = 0.0  # LR reached at the end of each stage
    warmup_steps_per_stage: int = 0


@dataclass
class GridConfig:
    enabled: bool = False  # run the grid without --grid
    learning_rate: list[float] = field(default_factory=lambda: [1e-4, 2e-4, 3e-4])
    dropout: list[float] = field(default_factory=lambda: [0.05, 0.1])
    top_k: int = 2  # the paper reports the mean of the two best runs


@dataclass
class Recipe(YamlRecipe):
    name: str = "gradual_unfreeze"
    description: str = ""
    mask: Selection = field(default_factory=Selection)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    lr: LRConfig = field(default_factory=LRConfig)
    training: dict = field(default_factory=dict)  # TrainingArguments defaults
    grid: GridConfig = field(default_factory=GridConfig)
    distillation: TransferDistillation = field(default_factory=TransferDistillation)  # off without a teacher


def load_recipe(source: str | Path | dict | Recipe | None = None, overrides=None) -> Recipe:
    """A recipe from a YAML path, the name of a shipped transfer recipe (`gradual_unfreeze`,
    `dense_transfer`, ...), a dict, or the defaults; `overrides` as `read_sections` takes them."""
    if isinstance(source, Recipe):
        if not overrides:
            return source
        source = source.to_dict()
    values, where = read_sections(source, "transfer", overrides)
    recipe = build_section(Recipe, values, where)
    if recipe.schedule.kind not in SCHEDULE_KINDS:
        raise RecipeError(f"schedule.kind {recipe.schedule.kind!r} in {where} is unknown; use one of {SCHEDULE_KINDS}")
    check_training_keys(recipe.training, where)
    recipe.distillation.check(where)
    return recipe
