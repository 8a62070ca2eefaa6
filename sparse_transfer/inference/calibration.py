"""Calibration: time every kernel on each Linear shape of a model, on this machine, for the
expected numbers of tokens, and choose per layer the fastest (dense where nothing beats it).

Layers are grouped by (out_features, in_features, sparsity to the nearest 5%): one measurement per
group, on the real weight of its most typical member, so a 12-block BERT costs a few shapes, not
72 layers. Times are medians over rounds that run the candidates in turn, so a slow moment of a
busy machine hits all of them alike.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from sparse_transfer.inference.kernels import DENSE, KERNELS
from sparse_transfer.masks import MaskedWeights
from sparse_transfer.utils.errors import ConfigurationError

SPARSITY_BUCKET = 0.05
# A kernel this many times slower than dense in its first timed run is not timed again (a BSR
# kernel on unstructured zeros can take seconds per call at 4096 tokens).
SCREEN_FACTOR = 3.0


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each function over `repeats` rounds that run all of them in turn,
    after one untimed warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(repeats + 1):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            if round_index:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


QUANTIZE = (None, "int8")


def available_kernels(shape: tuple[int, int], quantize: str | None = None, sparse: bool = True) -> list[str]:
    """The kernels this machine can run on a weight of `shape`: the FP32 ones, plus the INT8 ones for
    an INT8 export; `sparse=False` keeps the dense INT8 kernel only (a layer below min_sparsity)."""
    return [name for name, kernel in KERNELS.items()
            if kernel.supports(shape) and kernel.unavailable_reason() is None
            and (not kernel.quantized or quantize == "int8")
            and (sparse or (kernel.quantized and name == "dense_int8"))]


@torch.no_grad()
def time_kernels(weight: torch.Tensor, bias: torch.Tensor | None, token_counts: list[int], repeats: int,
                 kernels: list[str]) -> dict[int, dict]:
    """Per token count: `ms` (median per kernel, dense included) and `screened_out` (kernels
    timed once only, their single time in `ms`)."""
    weight = weight.detach().float().contiguous()
    bias = None if bias is None else bias.detach().float()
    prepared = {name: KERNELS[name].prepare(weight) for name in kernels}
    generator = torch.Generator().manual_seed(0)
    results = {}
    for tokens in token_counts:
        x = torch.randn(tokens, weight.shape[1], generator=generator)
        candidates = {DENSE: lambda: torch.nn.functional.linear(x, weight, bias)}
        for name in kernels:
            candidates[name] = lambda name=name: KERNELS[name].apply(prepared[name], x, bias)
        first = interleaved_medians(candidates, repeats=1)
        screened_out = [name for name in kernels if first[name] > SCREEN_FACTOR * first[DENSE]]
        timed = interleaved_medians({name: f for name, f in candidates.items() if name not in screened_out}, repeats)
        results[tokens] = {"ms": {name: timed.get(name, first[name]) for name in candidates},
                           "screened_out": screened_out}
    return results


def sparse_layers(model: nn.Module) -> dict[str, dict]:
    """Every Linear weight of the model with its shape and fraction of zeros, in model order."""
    return MaskedWeights.from_nonzero(model).report()["layers"]


def sparse_layers_of_other_types(model: nn.Module, min_sparsity: float) -> dict[str, str]:
    """{module name: class name} of the non-Linear layers (Conv1d, transformers' Conv1D, ...) whose
    weight has at least `min_sparsity` zeros: pruned, but no kernel here runs them."""
    found = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.Linear, nn.Embedding)) or not isinstance(weight, nn.Parameter) or weight.dim() < 2:
            continue
        if float((weight == 0).float().mean()) >= min_sparsity:
            found[name] = type(module).__name__
    return found


def _group_key(entry: dict) -> tuple[int, int, float]:
    out_features, in_features = entry["shape"]
    return out_features, in_features, round(round(entry["sparsity"] / SPARSITY_BUCKET) * SPARSITY_BUCKET, 2)


def plan_layers(model: nn.Module, token_counts: list[int], min_sparsity: float = 0.5, repeats: int = 5,
                threads: int | None = None, force_kernel: str | None = None, quantize: str | None = None) -> list[dict]:
    """One entry per Linear layer: name, shape, sparsity, `kernels` ({tokens: kernel}) and why;
    calibrated layers also carry the times of every kernel (`times_ms`). Token counts are string
    keys, as in the JSON plan. With `quantize="int8"` the INT8 kernels are candidates too (layers
    below `min_sparsity` choose between dense FP32 and dense INT8)."""
    if quantize not in QUANTIZE:
        raise ConfigurationError(f"unknown quantize value {quantize!r}; use int8 (or leave it unset for FP32)")
    if force_kernel in KERNELS and KERNELS[force_kernel].quantized and quantize != "int8":
        raise ConfigurationError(f"kernel {force_kernel} is INT8: add --quantize int8")
    layers = sparse_layers(model)
    unsupported = sparse_layers_of_other_types(model, min_sparsity)
    if unsupported:
        first = next(iter(unsupported))
        message = (f"{len(unsupported)} sparse layers of {type(model).__name__} are "
                   f"{'/'.join(sorted(set(unsupported.values())))} modules (e.g. {first}), which the export's kernels "
                   "do not run")
        if not any(entry["sparsity"] >= min_sparsity for entry in layers.values()):
            raise ConfigurationError(f"{message}: nothing to export; serve the checkpoint with from_pretrained "
                                     "(dense kernels)")
        warnings.warn(f"{message}: they stay dense", stacklevel=2)
    if quantize is None and not any(entry["sparsity"] >= min_sparsity for entry in layers.values()):
        sparsest = max((entry["sparsity"] for entry in layers.values()), default=0.0)
        raise ConfigurationError(
            f"no Linear weight has at least {min_sparsity:.0%} zeros (the sparsest has {sparsest:.1%}): nothing to "
            "export; prune the model first (sparse-transfer prune) or lower --min_sparsity")
    plan, groups = [], {}
    for weight_name, entry in layers.items():
        name = weight_name.removesuffix(".weight")
        layer = {"name": name, "shape": entry["shape"], "sparsity": round(entry["sparsity"], 4)}
        sparse = entry["sparsity"] >= min_sparsity
        if not sparse and quantize is None:
            layer.update(kernels={str(tokens): DENSE for tokens in token_counts},
                         reason=f"below min_sparsity {min_sparsity}")
        elif force_kernel is not None:
            kernel = force_kernel if sparse else DENSE
            _check_forced(kernel, tuple(entry["shape"]))
            layer.update(kernels={str(tokens): kernel for tokens in token_counts},
                         reason="forced" if sparse else f"below min_sparsity {min_sparsity}")
        else:
            groups.setdefault((*_group_key(entry), sparse), []).append(layer)
        plan.append(layer)
    with torch_threads(threads):
        for (*_, sparse), members in groups.items():
            kernels = available_kernels(tuple(members[0]["shape"]), quantize, sparse)
            _calibrate_group(model, members, token_counts, repeats, kernels)
    return plan


def _check_forced(kernel: str, shape: tuple[int, int]) -> None:
    if kernel == DENSE:
        return
    if kernel not in KERNELS:
        raise ConfigurationError(f"unknown kernel {kernel!r}; choose one of {', '.join([DENSE, *KERNELS])}")
    reason = KERNELS[kernel].unavailable_reason()
    if reason:
        raise ConfigurationError(f"kernel {kernel} is not available on this machine: {reason}")
    if not KERNELS[kernel].supports(shape):
        raise ConfigurationError(f"kernel {kernel} needs weight dimensions divisible by "
                                 f"{KERNELS[kernel].block_size}; a layer has shape {list(shape)}")


def _calibrate_group(model: nn.Module, members: list[dict], token_counts: list[int], repeats: int,
                     candidates: list[str]) -> None:
    median = statistics.median_low(layer["sparsity"] for layer in members)
    representative = next(layer for layer in members if layer["sparsity"] == median)
    linear = model.get_submodule(representative["name"])
    timings = time_kernels(linear.weight, linear.bias, token_counts, repeats, candidates)
    kernels = {str(tokens): min(timing["ms"], key=timing["ms"].get) for tokens, timing in timings.items()}
    reason = "calibrated" if any(kernel != DENSE for kernel in kernels.values()) else "dense was fastest"
    for layer in members:
        layer.update(kernels=dict(kernels), reason=reason, calibrated_on=representative["name"],
                     times_ms={str(tokens): timing["ms"] for tokens, timing in timings.items()},
                     screened_out={str(tokens): timing["screened_out"] for tokens, timing in timings.items()})
