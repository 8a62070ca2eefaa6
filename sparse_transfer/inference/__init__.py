"""Sparse inference on CPU: kernels for sparse Linear weights (kernels.py, the C kernel in
native.py), their per-shape calibration (calibration.py); export and loading live in
sparse_transfer/export.py (`python -m sparse_transfer.export`)."""

from .calibration import interleaved_medians, plan_layers
from .kernels import KERNELS, SparseLinear

__all__ = ["KERNELS", "SparseLinear", "interleaved_medians", "plan_layers"]
