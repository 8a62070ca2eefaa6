"""sparse-transfer: accurate sparse task models from sparse pretrained models.

Layout: the sparsity core (`masks`, `selection`, `pruning`, `obs`, `distillation`,
`schedules`), how encoders are read (`encoders`), what the Trainers share (`training`),
`utils/` below them, and one subpackage per workflow side by side: `transfer/` (the main
job), `upstream/` (one-shot and gradual upstream pruning), `inference/` (sparse CPU export),
`vision/` (AC/DC and the pruning pipeline), `glue/` (tasks, data, metrics).
"""

from sparse_transfer.masks import MaskedWeights
from sparse_transfer.pruning import magnitude_masks
from sparse_transfer.selection import Selection

__all__ = ["MaskedWeights", "Recipe", "Selection", "SparseTransferTrainer", "export_for_inference",
           "load_for_inference", "load_recipe", "magnitude_masks"]

# transformers is slow to import: the trainer, recipes and export load only when asked for
# (the vision sub-package needs none of them).
_LAZY = {"SparseTransferTrainer": "sparse_transfer.transfer.trainer", "Recipe": "sparse_transfer.transfer.recipe",
         "load_recipe": "sparse_transfer.transfer.recipe", "export_for_inference": "sparse_transfer.inference.export",
         "load_for_inference": "sparse_transfer.inference.export"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sparse_transfer' has no attribute {name!r}")
