"""Sparse inference on CPU: kernels for sparse Linear weights (`kernels.py`, the C kernels in
`native.py`), the bf16 attention kernel as a transformers attention implementation (`attention.py`),
their calibration per shape and input size (`calibration.py`), and export and loading of a planned
model (`export.py`; `python -m sparse_transfer.inference`)."""

from sparse_transfer.inference.calibration import interleaved_medians, plan_layers
from sparse_transfer.inference.kernels import KERNELS, SparseLinear

__all__ = ["KERNELS", "SparseLinear", "interleaved_medians", "plan_layers"]
