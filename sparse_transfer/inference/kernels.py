"""Matmul kernels for `y = x @ W^T + b` on CPU, and `SparseLinear`, the nn.Linear that runs one
of them.

Every kernel takes x as (tokens, in_features) float32 and returns (tokens, out_features). FP32
kernels give the dense result up to float rounding: torch CSR / BSR and SciPy CSR compute
(W_sparse @ x^T)^T, the product their libraries implement well, and `tiled_csr` is the toolkit's
own. INT8 kernels (`quantized`) quantize the weight per output channel (symmetric) and the input
per token (dynamic): `dense_int8` is PyTorch's dynamic quantized linear (FBGEMM / oneDNN),
`sparse_int8` the toolkit's 1x4-block kernel (AVX-512 VNNI or AVX2 where the CPU has them). Which
kernel is fastest depends on the shape, the sparsity, the number of tokens and the CPU, so none is
assumed: calibration measures them (see calibration.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

from sparse_transfer.inference.native import QuantizedActivation, load_native

if TYPE_CHECKING:
    from sparse_transfer.inference.fusion import SharedInput

DENSE = "dense"
BSR_BLOCK_SIZES = (4, 8, 16)


@dataclass(frozen=True)
class Kernel:
    name: str
    prepare: Callable[[torch.Tensor], object]  # dense weight -> the kernel's own format
    apply: Callable[[object, torch.Tensor, torch.Tensor | None], torch.Tensor]  # (format, x, bias) -> y
    block_size: int = 1  # both weight dimensions must be multiples of it
    unavailable_reason: Callable[[], str | None] = lambda: None  # why this machine cannot run it
    quantized: bool = False  # INT8: a candidate only for an INT8 export
    # (format, x or QuantizedActivation, bias, gelu=, residual=, norm=, quantize_output=): the kernel computes
    # GELU(y), norm(y + residual) and the next layer's quantized input itself; None: it cannot
    fused_apply: Callable[..., torch.Tensor | QuantizedActivation] | None = None

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


def _native_unavailable() -> str | None:
    library = load_native()
    return library if isinstance(library, str) else None


def _tiled_csr_prepare(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    csr = _quietly(weight.to_sparse_csr)
    return (csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32), csr.values().contiguous())


def _tiled_csr_apply(prepared, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    indptr, columns, values = prepared
    return load_native().tiled_csr(indptr, columns, values, bias, x, out_features=indptr.numel() - 1)


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output channel symmetric INT8: (w_q int8, scales float32), w ~ scales[:, None] * w_q.
    Zeros stay exactly zero."""
    scales = weight.abs().amax(dim=1) / 127.0
    scales = torch.where(scales > 0, scales, torch.ones_like(scales)).float()
    return torch.round(weight / scales[:, None]).clamp_(-127, 127).to(torch.int8), scales


@dataclass(frozen=True)
class Int8BlockWeight:
    """An INT8 weight as `sparse_int8` reads it: per row, the 1x4 blocks (4 consecutive input
    features) that hold a non-zero, each as one int32 of its 4 bytes, with its block column.

    With a `pair_limit` (the AVX2 build's 128), a block whose weight pair (bytes 0-1 or 2-3) has
    |w_a + w_b| above it is stored as two blocks of the same column, w >> 1 and w - (w >> 1) (each
    weight at most 64 in magnitude): the AVX2 instructions sum x_a * w_a + x_b * w_b in int16 with
    x in [0, 255], which stays within int16 exactly when |w_a + w_b| <= 128 (pairs of opposite signs
    always do). The products, and so the int32 sums, are the same as the single block's."""

    indptr: torch.Tensor  # (out + 1,) int32
    columns: torch.Tensor  # (blocks,) int32: input feature // 4
    values: torch.Tensor  # (blocks,) int32: 4 int8 weights, the lowest byte first
    row_sums: torch.Tensor  # (out,) int32: sum of each row's int8 weights (for the input's zero point)
    scales: torch.Tensor  # (out,) float32
    pair_limit: int = 0  # the largest |w_a + w_b| of a weight pair; 0: blocks are never split

    @classmethod
    def of(cls, weight: torch.Tensor, pair_limit: int | None = None) -> "Int8BlockWeight":
        """`pair_limit` None: the one this machine's kernel library needs."""
        if pair_limit is None:
            library = load_native()
            pair_limit = 0 if isinstance(library, str) else library.pair_limit
        if pair_limit and pair_limit < 128:
            raise ValueError(f"pair_limit {pair_limit}: a split block keeps weights up to 64 in magnitude, so pair "
                             "sums up to 128; use 128 or more (or 0 for no limit)")
        w_q, scales = quantize_weight(weight.float())
        out_features, in_features = w_q.shape
        padded = torch.zeros(out_features, -(-in_features // 4) * 4, dtype=torch.int8)
        padded[:, :in_features] = w_q
        blocks = padded.view(out_features, -1, 4)
        kept = blocks.ne(0).any(dim=2)
        rows, columns = kept.nonzero(as_tuple=True)  # row-major: each row's blocks in column order
        values = blocks[rows, columns]
        if pair_limit:
            rows, columns, values = _split_pairs_above(rows, columns, values, pair_limit)
        indptr = torch.zeros(out_features + 1, dtype=torch.int32)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=out_features), 0)
        return cls(indptr, columns.to(torch.int32).contiguous(),
                   values.contiguous().view(torch.int32).reshape(-1),  # little-endian bytes
                   w_q.sum(dim=1, dtype=torch.int32), scales.contiguous(), pair_limit)


def _split_pairs_above(rows: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, limit: int):
    """Blocks (values: (n, 4) int8) with a pair |w_a + w_b| > limit become two consecutive blocks of
    the same row and column: w >> 1, then w - (w >> 1)."""
    pair_sums = values.to(torch.int16).view(-1, 2, 2).sum(dim=2)
    split = pair_sums.abs().gt(limit).any(dim=1)
    if not split.any():
        return rows, columns, values
    halves = values >> 1  # arithmetic shift: floor(w / 2), in [-64, 63]
    index = torch.arange(len(values)).repeat_interleave(1 + split.long())  # a split block's index twice
    second = torch.zeros(len(index), dtype=torch.bool)
    second[1:] = index[1:] == index[:-1]
    first = torch.where(split[:, None], halves, values)
    return rows[index], columns[index], torch.where(second[:, None], (values - halves)[index], first[index])


def _sparse_int8_apply(weight: Int8BlockWeight, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return load_native().sparse_int8(weight, bias, x)


def _dense_int8_prepare(weight: torch.Tensor):
    w_q, scales = quantize_weight(weight.float())
    with warnings.catch_warnings():  # quantized tensors are deprecated; linear_dynamic still takes them
        warnings.simplefilter("ignore", UserWarning)
        q_weight = torch._make_per_channel_quantized_tensor(w_q, scales.double(), torch.zeros_like(scales).long(), 0)
        return torch.ops.quantized.linear_prepack(q_weight, None)


def _dense_int8_apply(packed, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = torch.ops.quantized.linear_dynamic(x, packed, True)  # reduce_range on x86, as quantize_dynamic
    return y if bias is None else y.add_(bias)


def _dense_int8_unavailable() -> str | None:
    engine = torch.backends.quantized.engine
    return None if engine in ("x86", "fbgemm", "onednn") else f"torch's quantized engine here is {engine!r}"


def _bsr(block: int) -> Kernel:
    return Kernel(f"torch_bsr{block}", lambda w: _quietly(lambda: w.to_sparse_bsr((block, block))),
                  _torch_sparse_apply, block_size=block)


KERNELS: dict[str, Kernel] = {
    kernel.name: kernel
    for kernel in [
        Kernel("torch_csr", lambda w: _quietly(w.to_sparse_csr), _torch_sparse_apply),
        *(_bsr(block) for block in BSR_BLOCK_SIZES),
        Kernel("scipy_csr", lambda w: scipy.sparse.csr_matrix(w.numpy()), _scipy_apply),
        Kernel("tiled_csr", _tiled_csr_prepare, _tiled_csr_apply, unavailable_reason=_native_unavailable),
        Kernel("dense_int8", _dense_int8_prepare, _dense_int8_apply, unavailable_reason=_dense_int8_unavailable,
               quantized=True),
        Kernel("sparse_int8", Int8BlockWeight.of, _sparse_int8_apply, unavailable_reason=_native_unavailable,
               quantized=True, fused_apply=lambda weight, x, bias, **fused: load_native().sparse_int8(
                   weight, bias, x, **fused)),
    ]
}
KERNEL_NAMES = (DENSE, *KERNELS)


def nearest_token_count(tokens: int, calibrated: list[int]) -> int:
    """The calibrated input size closest to `tokens` on a log scale (1 and 32 sequences: 128, 4096)."""
    return min(calibrated, key=lambda count: abs(math.log(tokens) - math.log(count)))


def planned_kernel(kernel_by_tokens: dict[int, str], tokens: int) -> str:
    """The kernel a plan ({tokens: kernel}) gives an input of `tokens` tokens (at least 1)."""
    return kernel_by_tokens[nearest_token_count(max(1, tokens), list(kernel_by_tokens))]


def fuses_steps(name: str) -> bool:
    """Whether kernel `name` can take the steps around it (GELU, residual LayerNorm, quantized in/out)."""
    return name != DENSE and KERNELS[name].fused_apply is not None


class SparseLinear(nn.Linear):
    """An nn.Linear that multiplies with a sparse kernel chosen per number of input tokens.

    It keeps the dense `weight` Parameter (the state dict, `save_pretrained` and training are
    unchanged) plus each chosen kernel's copy of it. Inputs the sparse kernels do not cover
    (not float32 on CPU, or a forward that needs gradients) take the dense path. The sparse
    copies are made once: change `weight` afterwards and they are stale. With `gelu` the layer
    returns GELU of its output (the FFN activation that follows it, moved in here): inside the
    kernel where it can, after it elsewhere. Set by the export where the steps around it allow:
    `shared` (one call for query, key and value), `quantized_consumer` (hand the next INT8 layer
    its input quantized) and `residual_norm` (its block's add and LayerNorm in the kernel).
    """

    def __init__(self, linear: nn.Linear, kernel_by_tokens: dict[int, str], gelu: bool = False):
        nn.Module.__init__(self)  # nn.Linear.__init__ would allocate a new weight: share the loaded one
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.gelu = gelu
        self.shared: tuple[SharedInput, int] | None = None  # set by SharedInput: (the group, this layer's place)
        # (the INT8 layer that reads this one's output,): where both run INT8 kernels, it gets it quantized; a
        # tuple, not a submodule attribute, so that the state dict stays the model's
        self.quantized_consumer: tuple[SparseLinear, ...] = ()
        self.kernel_by_tokens = dict(sorted(kernel_by_tokens.items()))
        with torch.no_grad():
            weight = self.weight.detach().float().contiguous()
            self._prepared = {name: KERNELS[name].prepare(weight)
                              for name in set(self.kernel_by_tokens.values()) if name != DENSE}

    def kernel_for(self, tokens: int) -> str:
        return planned_kernel(self.kernel_by_tokens, tokens)

    def _kernel_input(self, x: torch.Tensor | QuantizedActivation) -> tuple[str, object, int] | None:
        """(kernel name, x as 2-D with unit column stride, tokens) where a sparse kernel takes `x`; None
        for the dense path (gradients, not float32 on CPU, or dense planned for this many tokens). A
        QuantizedActivation goes as it is to a kernel that reads it, else None."""
        if isinstance(x, QuantizedActivation):
            tokens = x.values.shape[0]
            name = self.kernel_for(tokens)
            return (name, x, tokens) if fuses_steps(name) else None
        needs_grad = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)
        if needs_grad or x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32:
            return None
        x2d = x.reshape(-1, self.in_features)
        name = self.kernel_for(x2d.shape[0])
        if name == DENSE:
            return None
        return name, (x2d if x2d.stride(-1) == 1 else x2d.contiguous()).detach(), x2d.shape[0]

    def forward(self, x: torch.Tensor | QuantizedActivation) -> torch.Tensor | QuantizedActivation:
        planned = self._kernel_input(x)
        if planned is None:
            if isinstance(x, QuantizedActivation):  # handed over for a kernel this input size does not run
                x = x.dequantize()
            return self._activated(super().forward(x))
        name, x2d, tokens = planned
        if self.shared is not None and self.shared[0].enabled and isinstance(x, torch.Tensor):
            y = self.shared[0].output(x, x2d, name, self.shared[1])
            if y is not None:
                return y.reshape(*x.shape[:-1], self.out_features)
        bias = None if self.bias is None else self.bias.detach()
        kernel = KERNELS[name]
        if kernel.fused_apply is not None and (self.gelu or self.quantized_consumer):
            quantize = self._consumer_reads_quantized(tokens)
            y = kernel.fused_apply(self._prepared[name], x2d, bias, gelu=self.gelu, quantize_output=quantize)
            if quantize:
                return QuantizedActivation(y.values, y.scales, y.zeros, torch.Size((*x.shape[:-1], self.out_features)))
        else:
            y = self._activated(kernel.apply(self._prepared[name], x2d, bias))
        return y.reshape(*x.shape[:-1], self.out_features)

    def _consumer_reads_quantized(self, tokens: int) -> bool:
        """Whether the layer that reads this output (`quantized_consumer`) takes it quantized here."""
        if not self.quantized_consumer or self.training:
            return False
        return fuses_steps(self.quantized_consumer[0].kernel_for(tokens))

    def residual_norm(self, x: torch.Tensor | QuantizedActivation, residual: torch.Tensor,
                      norm: nn.LayerNorm) -> torch.Tensor | None:
        """norm(self(x) + residual) computed inside the kernel, where the planned kernel can (and the
        call needs no gradients); None otherwise, for the caller's own path."""
        planned = self._kernel_input(x)
        if planned is None or self.gelu or KERNELS[planned[0]].fused_apply is None or \
                residual.shape[-1] != self.out_features or residual.dtype != torch.float32 or \
                (torch.is_grad_enabled() and (residual.requires_grad or norm.weight.requires_grad)):
            return None
        name, x2d, tokens = planned
        residual2d = residual.reshape(-1, self.out_features)
        if residual2d.shape[0] != tokens:
            return None
        if residual2d.stride(-1) != 1:
            residual2d = residual2d.contiguous()
        bias = None if self.bias is None else self.bias.detach()
        y = KERNELS[name].fused_apply(self._prepared[name], x2d, bias, residual=residual2d.detach(), norm=norm)
        return y.reshape(*residual.shape)

    def _activated(self, y: torch.Tensor) -> torch.Tensor:
        return F.gelu(y) if self.gelu else y

    def extra_repr(self) -> str:
        shared = f", shared input with {len(self.shared[0].layers) - 1} more" if self.shared else ""
        return f"{super().extra_repr()}, kernels={self.kernel_by_tokens}" + (", gelu" if self.gelu else "") + shared
