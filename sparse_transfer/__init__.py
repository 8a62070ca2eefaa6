"""sparse-transfer: accurate sparse task models from sparse pretrained models."""

from .masks import MaskedWeights
from .pruning import magnitude_masks
from .selection import Selection

__all__ = ["MaskedWeights", "Selection", "magnitude_masks"]
