"""sparse-transfer: accurate sparse task models from sparse pretrained models."""

from .masks import MaskedWeights
from .pruning import magnitude_masks
from .selection import Selection

__all__ = ["MaskedWeights", "Recipe", "Selection", "SparseTransferTrainer", "export_for_inference",
           "load_for_inference", "load_recipe", "magnitude_masks"]


def __getattr__(name):
    # transformers is slow to import: load the trainer and recipes only when asked for
    # (the vision sub-package needs neither).
    if name == "SparseTransferTrainer":
        from .trainer import SparseTransferTrainer

        return SparseTransferTrainer
    if name in ("Recipe", "load_recipe"):
        from . import recipes

        return getattr(recipes, name)
    if name in ("export_for_inference", "load_for_inference"):
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'sparse_transfer' has no attribute {name!r}")
