"""Upstream pruning: a sparse pretrained model from a dense one, by gradual magnitude or
oBS pruning with distillation from the dense model (`python -m sparse_transfer.upstream`)."""

from .recipe import UpstreamRecipe, load_upstream_recipe
from .trainer import UpstreamPruningTrainer

__all__ = ["UpstreamPruningTrainer", "UpstreamRecipe", "load_upstream_recipe"]
