"""Upstream pruning: a sparse pretrained model from a dense one, in one shot by magnitude
(`oneshot.py`, `sparse-transfer prune`) or gradually by magnitude or oBS with distillation
from the dense model (`trainer.py`, `run.py`, `sparse-transfer upstream`)."""

from sparse_transfer.upstream.recipe import UpstreamRecipe, load_upstream_recipe
from sparse_transfer.upstream.trainer import UpstreamPruningTrainer

__all__ = ["UpstreamPruningTrainer", "UpstreamRecipe", "load_upstream_recipe"]
