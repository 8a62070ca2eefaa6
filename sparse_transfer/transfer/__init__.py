"""Sparse transfer: fine-tune a sparse pretrained encoder on a task with its zeros fixed,
by gradual unfreezing with LR rewinding (2308.02060, section 4.3) or a dense-transfer
recipe; the recipe's grid, distillation from a dense teacher, and the training verdict."""

from sparse_transfer.transfer.recipe import Recipe, load_recipe
from sparse_transfer.transfer.trainer import SparseTransferTrainer

__all__ = ["Recipe", "SparseTransferTrainer", "load_recipe"]
