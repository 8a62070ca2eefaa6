"""Distillation during transfer (Prune OFA and oBERT's downstream runs): a fine-tuned dense
teacher's task logits, mixed with the task loss by hardness. The loss terms are the ones
upstream pruning uses (`distillation.py`): KL at a temperature, MSE for a regression head."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparse_transfer.distillation import logit_loss, mix_with_hardness
from sparse_transfer.training import freeze
from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.utils.hub import load_or_explain
from sparse_transfer.utils.typed_config import RecipeError


@dataclass
class TransferDistillation:
    """The recipe's `distillation:` section. Off by default; `enabled: true` makes a teacher
    required (a recipe built around distillation must not silently train without it)."""

    enabled: bool = False
    teacher: str | None = None  # a fine-tuned dense model of the same task (path or hub name)
    hardness: float = 1.0  # (1 - hardness) * task loss + hardness * distillation loss
    temperature: float = 5.5  # oBERT's downstream recipes

    def check(self, where: str) -> None:
        if not 0.0 <= self.hardness <= 1.0:
            raise RecipeError(f"distillation.hardness {self.hardness} in {where} must be in [0, 1]")
        if self.temperature <= 0:
            raise RecipeError(f"distillation.temperature {self.temperature} in {where} must be > 0")


def load_teacher(source, num_labels: int):
    """A frozen teacher in eval mode: a path or hub name of a sequence-classification model,
    or a model already loaded; its head must give the student's number of outputs."""
    if isinstance(source, str):
        from transformers import AutoModelForSequenceClassification

        teacher = load_or_explain(AutoModelForSequenceClassification.from_pretrained, source, "teacher")
    else:
        teacher = source
    outputs = teacher.config.num_labels
    if outputs != num_labels:
        raise ConfigurationError(f"teacher {source if isinstance(source, str) else type(source).__name__} has "
                                 f"{outputs} outputs but the student has {num_labels}; give a teacher fine-tuned "
                                 "on the same task")
    return freeze(teacher)


def teacher_logits(teacher, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return teacher(**{key: value for key, value in inputs.items() if key != "labels"}).logits


def distilled_loss(task_loss: torch.Tensor, student_logits: torch.Tensor, teacher_out: torch.Tensor,
                   config: TransferDistillation) -> torch.Tensor:
    return mix_with_hardness(task_loss, logit_loss(student_logits, teacher_out, config.temperature), config.hardness)
