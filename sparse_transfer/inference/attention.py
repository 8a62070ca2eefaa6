"""Attention for exported models: the toolkit's bf16 attention kernel (`attention.c`) as a
transformers attention implementation, chosen per number of input tokens like the Linear kernels.

Every model that computes attention through transformers' `AttentionInterface` (BERT, RoBERTa,
ELECTRA, MiniLM, ModernBERT, ...) can run it: `apply_attention_plan` registers the implementation
(named `sparse_transfer`, with transformers' SDPA masks) and switches the model to it. Calls the
kernel does not cover (gradients, dropout, causal or grouped heads, a float mask, head sizes not a
multiple of 32, a CPU without bf16 dot products) run transformers' SDPA attention unchanged.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from sparse_transfer.inference.calibration import interleaved_medians, torch_threads
from sparse_transfer.inference.kernels import planned_kernel
from sparse_transfer.inference.native import load_native
from sparse_transfer.utils.errors import ConfigurationError

IMPLEMENTATION = "sparse_transfer"
SDPA, BF16 = "sdpa", "bf16"
ATTENTION_CHOICES = ("auto", SDPA, BF16)  # auto: bf16 is a candidate in reduced-precision (INT8) exports
KERNELS_ATTRIBUTE = "sparse_attention_kernels"  # {tokens: kernel} on each module that computes attention


def bf16_unavailable_reason() -> str | None:
    library = load_native()
    if isinstance(library, str):
        return library
    return None if library.has_bf16 else "this CPU (or compiler) has no AVX-512 bf16 dot products"


def _sdpa(*args, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(*args, **kwargs)


def kernel_covers(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float, is_causal: bool | None, kwargs: dict) -> bool:
    """Whether the bf16 kernel computes this call exactly as SDPA defines it (up to bf16 rounding)."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    tensors = (query, key, value)
    return (not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)) and not causal \
        and (dropout == 0.0 or not module.training) and kwargs.get("position_bias") is None \
        and kwargs.get("softcap") is None and getattr(module, "num_key_value_groups", 1) == 1 \
        and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 4 and t.stride(-1) == 1
                for t in tensors) \
        and query.shape[1] == key.shape[1] == value.shape[1] and query.shape[-1] % 32 == 0 \
        and key.shape == value.shape and query.shape[2] > 0 and key.shape[2] > 0 \
        and (attention_mask is None or attention_mask.dtype == torch.bool)


def attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: (batch, heads, positions, head size) in, (batch, positions,
    heads, head size) out. The module's plan picks the kernel for its token count; SDPA otherwise."""
    kernels = getattr(module, KERNELS_ATTRIBUTE, None)
    tokens = query.shape[0] * query.shape[2]
    if not kernels or planned_kernel(kernels, tokens) != BF16 or \
            not kernel_covers(module, query, key, value, attention_mask, dropout, is_causal, kwargs):
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
                     **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return load_native().bf16_attention(query.detach(), key.detach(), value.detach(), attention_mask, scale), None


def register() -> None:
    """Make `sparse_transfer` a transformers attention implementation (SDPA's boolean masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)


def supports_attention_interface(model: nn.Module) -> bool:
    """Whether the model computes attention through transformers' AttentionInterface."""
    can_set = getattr(model, "_can_set_attn_implementation", None)
    return bool(can_set and can_set() and getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager",
                                                                                                 IMPLEMENTATION))


def attention_shape(model: nn.Module) -> dict | None:
    """{heads, head_size} of the model's self-attention, from its config; None where unknown."""
    config = model.config
    heads = getattr(config, "num_attention_heads", None)
    head_size = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
    return {"heads": heads, "head_size": head_size} if heads and head_size else None


def apply_attention_plan(model: nn.Module, plan: dict | None) -> None:
    """Switch the model to the planned attention kernels ({tokens: kernel}), in place. A plan that
    chose bf16 on a CPU without it warns and runs SDPA (the same model, FP32 attention); one timed
    on other bf16 instructions (AMX tiles or AVX-512 BF16) warns that its speed was timed elsewhere."""
    if not plan or all(kernel == SDPA for kernel in plan["kernels"].values()):
        return
    reason = bf16_unavailable_reason()
    if reason:
        warnings.warn(f"the plan's bf16 attention is unavailable here ({reason}): attention runs SDPA", stacklevel=3)
        return
    here = load_native().attention_path
    if plan.get("bf16_path", here) != here:
        warnings.warn(f"this plan timed bf16 attention on {plan['bf16_path']}; here it runs on {here} (the same "
                      "rounding, sums in another order, another speed): export again here for a plan timed on "
                      "this CPU", stacklevel=3)
    register()
    kernels = {int(tokens): kernel for tokens, kernel in plan["kernels"].items()}
    for module in model.modules():  # attention modules keep their config; the plan goes beside it
        if hasattr(module, "config"):
            setattr(module, KERNELS_ATTRIBUTE, kernels)
    model.set_attn_implementation(IMPLEMENTATION)


def plan_attention(model: nn.Module, token_counts: list[int], seq_length: int, repeats: int, threads: int | None,
                   choice: str = "auto", quantize: str | None = None) -> dict:
    """{kernels: {tokens: sdpa|bf16}, reason, shape, times_ms}. `auto` times SDPA against the bf16
    kernel at each token count, on the model's head shape, when the export is quantized (an FP32
    export keeps FP32 attention); `bf16` uses it everywhere (refused where it cannot run); `sdpa`
    never."""
    if choice not in ATTENTION_CHOICES:
        raise ConfigurationError(f"unknown attention {choice!r}; use one of {', '.join(ATTENTION_CHOICES)}")
    shape = attention_shape(model)
    sdpa_everywhere = {str(tokens): SDPA for tokens in token_counts}
    if choice == SDPA or (choice == "auto" and quantize is None):
        reason = "FP32 attention" if choice == "auto" else "chosen"
        return {"kernels": sdpa_everywhere, "reason": reason, "shape": shape}
    unsupported = _bf16_unsupported(model, shape)
    if unsupported:
        if choice == BF16:
            raise ConfigurationError(f"--attention bf16 cannot run: {unsupported}; use --attention sdpa")
        return {"kernels": sdpa_everywhere, "reason": unsupported, "shape": shape}
    if choice == BF16:
        return {"kernels": {str(tokens): BF16 for tokens in token_counts}, "reason": "chosen", "shape": shape}
    with torch_threads(threads):
        times = {str(tokens): time_attention(shape["heads"], shape["head_size"], tokens, seq_length, repeats)
                 for tokens in token_counts}
    return {"kernels": {tokens: min(ms, key=ms.get) for tokens, ms in times.items()}, "reason": "calibrated",
            "shape": shape, "times_ms": times, "bf16_path": load_native().attention_path}  # amx-bf16, avx512-bf16


def _bf16_unsupported(model: nn.Module, shape: dict | None) -> str | None:
    """Why the bf16 kernel cannot serve this model here; None where it can."""
    unavailable = bf16_unavailable_reason()
    if unavailable:
        return unavailable
    if not supports_attention_interface(model):
        return f"{type(model).__name__} does not compute attention through transformers' AttentionInterface"
    if not shape or shape["head_size"] % 32:
        return f"the bf16 kernel needs a head size that is a multiple of 32, not {shape and shape['head_size']}"
    return None


@torch.no_grad()
def time_attention(heads: int, head_size: int, tokens: int, seq_length: int, repeats: int) -> dict[str, float]:
    """Median ms of SDPA and of the bf16 kernel on `tokens` tokens (sequences of `seq_length`),
    with q, k and v strided views of one projection output, as attention layers receive them."""
    batch, length = max(1, tokens // seq_length), min(tokens, seq_length)
    x = torch.randn(batch, length, 3, heads, head_size, generator=torch.Generator().manual_seed(0))
    query, key, value = (x[:, :, i].transpose(1, 2) for i in range(3))
    library = load_native()
    return interleaved_medians({
        SDPA: lambda: F.scaled_dot_product_attention(query, key, value).transpose(1, 2).contiguous(),
        BF16: lambda: library.bf16_attention(query, key, value, None, head_size ** -0.5),
    }, repeats)
