"""Declarative YAML recipes, validated into typed sections.

A recipe says *what* to do (which weights are masked, the stage plan, the LR shape,
default training arguments, the grid); the trainer is the code that applies it.
Unknown or mistyped keys fail with one line naming the key and the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigurationError
from .typed_config import build_section
from .selection import Selection
from .unfreezing import StagePlan, dense_plan, gradual_unfreeze_plan

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"
SCHEDULE_KINDS = ("gradual_unfreeze", "dense")


class RecipeError(ConfigurationError):
    pass


@dataclass
class ScheduleConfig:
    kind: str = "gradual_unfreeze"
    epochs_per_stage: int = 1
    final_stage_epochs: int = 1
    epochs: int = 3  # dense kind only
    block_path: str | None = None  # auto-detected when empty
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
class Recipe:
    name: str = "gradual_unfreeze"
    description: str = ""
    mask: Selection = field(default_factory=Selection)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    lr: LRConfig = field(default_factory=LRConfig)
    training: dict = field(default_factory=dict)  # TrainingArguments defaults
    grid: GridConfig = field(default_factory=GridConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_recipe(source: str | Path | dict | Recipe | None = None) -> Recipe:
    """A recipe from a YAML path, a bare name in `recipes/`, a dict, or defaults."""
    if isinstance(source, Recipe):
        return source
    if source is None:
        return Recipe()
    where = "<dict>"
    if not isinstance(source, dict):
        path = Path(source)
        if not path.exists() and (RECIPE_DIR / f"{source}.yaml").exists():
            path = RECIPE_DIR / f"{source}.yaml"
        if not path.exists():
            raise RecipeError(f"recipe file {source} does not exist; give a YAML path or a name from {RECIPE_DIR}")
        where = str(path)
        try:
            source = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise RecipeError(f"recipe {where} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(source, dict):
            raise RecipeError(f"recipe {where} must be a mapping of sections, got {type(source).__name__}")
    recipe = build_section(Recipe, source, where, RecipeError)
    _check(recipe, where)
    return recipe


def _check(recipe: Recipe, where: str) -> None:
    from transformers import TrainingArguments

    if recipe.schedule.kind not in SCHEDULE_KINDS:
        raise RecipeError(f"schedule.kind {recipe.schedule.kind!r} in {where} is unknown; use one of {SCHEDULE_KINDS}")
    valid = {f.name for f in dataclasses.fields(TrainingArguments)}
    for key in recipe.training:
        if key not in valid:
            raise RecipeError(f"unknown key 'training.{key}' in {where}: not a TrainingArguments field")
