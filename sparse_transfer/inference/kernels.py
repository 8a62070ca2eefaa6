"""Sparse matmul kernels for `y = x @ W^T + b` on CPU, and `SparseLinear`, the nn.Linear that
runs one of them.

Every kernel takes x as (tokens, in_features) and returns (tokens, out_features). The torch and
SciPy kernels compute (W_sparse @ x^T)^T: sparse-times-dense is the product their libraries
implement well. Which kernel is fastest depends on the shape, the sparsity, the number of tokens
and the CPU, so none is assumed: calibration measures them (see calibration.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import scipy.sparse
import torch
from torch import nn

from sparse_transfer.inference.native import load_tiled_csr

DENSE = "dense"
BSR_BLOCK_SIZES = (4, 8, 16)


@dataclass(frozen=True)
class Kernel:
    name: str
    prepare: Callable[[torch.Tensor], object]  # dense weight -> the kernel's own format
    apply: Callable[[object, torch.Tensor, torch.Tensor | None], torch.Tensor]  # (format, x, bias) -> y
    block_size: int = 1  # both weight dimensions must be multiples of it
    unavailable_reason: Callable[[], str | None] = lambda: None  # why this machine cannot run it

    def supports(self, shape: tuple[int, int]) -> bool:
        return all(size % self.block_size == 0 for size in shape)


def _quietly(convert: Callable[[], torch.Tensor]) -> torch.Tensor:
    # torch warns that sparse CSR/BSR support is "in beta" on every conversion.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return convert()


def _torch_sparse_apply(weight: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return torch.sparse.mm(weight, x.T).T
    return torch.addmm(bias[:, None], weight, x.T).T


def _scipy_apply(weight: scipy.sparse.csr_matrix, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = torch.from_numpy((weight @ x.numpy().T).T)
    return y if bias is None else y.add_(bias)


def _tiled_csr_unavailable() -> str | None:
    library = load_tiled_csr()
    return library if isinstance(library, str) else None


def _tiled_csr_prepare(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    csr = _quietly(weight.to_sparse_csr)
    return (csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32), csr.values().contiguous())


def _tiled_csr_apply(prepared, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    indptr, columns, values = prepared
    return load_tiled_csr().linear(indptr, columns, values, bias, x, out_features=indptr.numel() - 1)


def _bsr(block: int) -> Kernel:
    return Kernel(f"torch_bsr{block}", lambda w: _quietly(lambda: w.to_sparse_bsr((block, block))),
                  _torch_sparse_apply, block_size=block)


KERNELS: dict[str, Kernel] = {
    kernel.name: kernel
    for kernel in [
        Kernel("torch_csr", lambda w: _quietly(w.to_sparse_csr), _torch_sparse_apply),
        *(_bsr(block) for block in BSR_BLOCK_SIZES),
        Kernel("scipy_csr", lambda w: scipy.sparse.csr_matrix(w.numpy()), _scipy_apply),
        Kernel("tiled_csr", _tiled_csr_prepare, _tiled_csr_apply, unavailable_reason=_tiled_csr_unavailable),
    ]
}
KERNEL_NAMES = (DENSE, *KERNELS)


def nearest_token_count(tokens: int, calibrated: list[int]) -> int:
    """The calibrated input size closest to `tokens` on a log scale (1 and 32 sequences: 128, 4096)."""
    return min(calibrated, key=lambda count: abs(math.log(tokens) - math.log(count)))


class SparseLinear(nn.Linear):
    """An nn.Linear that multiplies with a sparse kernel chosen per number of input tokens.

    It keeps the dense `weight` Parameter (the state dict, `save_pretrained` and training are
    unchanged) plus each chosen kernel's copy of it. Inputs the sparse kernels do not cover
    (not float32 on CPU, or a forward that needs gradients) take the dense path. The sparse
    copies are made once: change `weight` afterwards and they are stale.
    """

    def __init__(self, linear: nn.Linear, kernel_by_tokens: dict[int, str]):
        nn.Module.__init__(self)  # nn.Linear.__init__ would allocate a new weight: share the loaded one
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.kernel_by_tokens = dict(sorted(kernel_by_tokens.items()))
        with torch.no_grad():
            weight = self.weight.detach().float().contiguous()
            self._prepared = {name: KERNELS[name].prepare(weight)
                              for name in set(self.kernel_by_tokens.values()) if name != DENSE}

    def kernel_for(self, tokens: int) -> str:
        return self.kernel_by_tokens[nearest_token_count(tokens, list(self.kernel_by_tokens))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)
        if needs_grad or x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32:
            return super().forward(x)
        x2d = x.reshape(-1, self.in_features)
        name = self.kernel_for(max(1, x2d.shape[0]))
        if name == DENSE:
            return super().forward(x)
        if x2d.stride(-1) != 1:
            x2d = x2d.contiguous()
        bias = None if self.bias is None else self.bias.detach()
        y = KERNELS[name].apply(self._prepared[name], x2d.detach(), bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernels={self.kernel_by_tokens}"
