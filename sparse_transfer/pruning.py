"""Mask calculation: magnitude top-k with an exact count and deterministic ties.

`k = round(sparsity * n)` weights are pruned, exactly; among equal magnitudes the
lower flat index (in model order) is pruned first, so a mask is reproducible. With a block
pattern (`1x4`: 4 consecutive input features, the unit of integer dot-product instructions),
blocks are kept or pruned whole, ranked by their L2 norm, and exactly round(sparsity * blocks) go.
"""

from __future__ import annotations

import torch

from sparse_transfer.utils.errors import ConfigurationError

SCOPES = ("global", "per-layer")
# The default cap of a global prune: layers initialised or trained at a smaller scale (ModernBERT's
# output projections) would otherwise be emptied by a global threshold while the total reads 90%.
MAX_LAYER_SPARSITY = 0.99


def parse_block(pattern: str | int | None) -> int:
    """A block pattern as the number of consecutive input features pruned together: `1x4` -> 4;
    None, `1x1`, `unstructured` or 1 -> 1."""
    if pattern in (None, 1, "1x1", "unstructured"):
        return 1
    if isinstance(pattern, int) and pattern > 1:
        return pattern
    rows, _, columns = str(pattern).partition("x")
    if rows != "1" or not columns.isdigit() or int(columns) < 1:
        raise ConfigurationError(f"block pattern {pattern!r} is not 1xN (N consecutive input features, e.g. 1x4)")
    return int(columns)


def pruned_count(numel: int, sparsity: float) -> int:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return int(round(sparsity * numel))


def _keep_mask(scores: torch.Tensor, num_pruned: int) -> torch.Tensor:
    """Bool mask over a flat score vector pruning exactly `num_pruned` lowest scores."""
    order = torch.argsort(scores, stable=True)
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[order[:num_pruned]] = False
    return keep


@torch.no_grad()
def magnitude_masks(
    weights: dict[str, torch.Tensor], sparsity: float, scope: str = "global", block: int = 1,
    max_layer_sparsity: float | None = None,
) -> dict[str, torch.Tensor]:
    """Masks (True = kept) pruning the smallest-magnitude weights (or 1 x `block` blocks).

    scope="global": one threshold over all weights together, no layer pruned beyond
    `max_layer_sparsity` (None: no cap); scope="per-layer": every weight pruned to `sparsity`
    on its own (uniform)."""
    return score_masks({name: w.detach().abs() for name, w in weights.items()}, sparsity, scope, block,
                       max_layer_sparsity)


@torch.no_grad()
def score_masks(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "global", block: int = 1,
                max_layer_sparsity: float | None = None) -> dict[str, torch.Tensor]:
    """Like `magnitude_masks`, for any importance scores (higher = keep; -inf = already pruned)."""
    if block > 1:  # whole 1 x block groups of input features, ranked by the L2 norm of their scores
        grouped = score_masks(block_scores(scores, block), sparsity, scope, 1, max_layer_sparsity)
        return expand_blocks(grouped, scores, block)
    if scope == "per-layer":
        return {
            name: _keep_mask(s.flatten().float(), pruned_count(s.numel(), sparsity)).view_as(s)
            for name, s in scores.items()
        }
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}; use one of {SCOPES}")
    if not scores:
        return {}
    total = sum(s.numel() for s in scores.values())
    caps = {name: s.numel() if max_layer_sparsity is None else layer_cap(s.numel(), max_layer_sparsity)
            for name, s in scores.items()}
    num_pruned = pruned_count(total, sparsity)
    if num_pruned > sum(caps.values()):
        raise ConfigurationError(f"{sparsity:.2%} overall cannot be reached with no layer above "
                                 f"{max_layer_sparsity:.2%}; raise the per-layer cap above the target")
    # One global threshold; a layer it would prune beyond its cap is pruned to the cap and the
    # rest of the budget goes to the other layers by the same threshold (repeat until none is over).
    capped: set[str] = set()
    while True:
        free = [name for name in scores if name not in capped]
        budget = num_pruned - sum(caps[name] for name in capped)
        masks = _global_keep({name: scores[name] for name in free}, budget)
        over = {name for name in free if scores[name].numel() - int(masks[name].sum()) > caps[name]}
        if not over:
            break
        capped |= over
    for name in capped:
        masks[name] = _keep_mask(scores[name].flatten().float(), caps[name]).view_as(scores[name])
    return {name: masks[name] for name in scores}


def _global_keep(scores: dict[str, torch.Tensor], num_pruned: int) -> dict[str, torch.Tensor]:
    """Masks pruning the `num_pruned` lowest scores over all tensors together."""
    if not scores:
        return {}
    device = next(iter(scores.values())).device
    flat = torch.cat([s.flatten().float().to(device) for s in scores.values()])
    keep = _keep_mask(flat, num_pruned)
    masks, offset = {}, 0
    for name, s in scores.items():
        masks[name] = keep[offset : offset + s.numel()].view_as(s).to(s.device)
        offset += s.numel()
    return masks


def layer_cap(units: int, max_layer_sparsity: float) -> int:
    """The most of a layer's `units` (weights, or 1 x N blocks) a capped global prune takes."""
    return int(max_layer_sparsity * units)


def capped_layers(report: dict, max_layer_sparsity: float, block: int = 1) -> list[str]:
    """The layers of a sparsity report pruned up to the per-layer cap (counted in 1 x `block` blocks,
    as `score_masks` caps them)."""
    return [name for name, layer in report["layers"].items()
            if layer["zeros"] >= block * layer_cap(layer["numel"] // block, max_layer_sparsity)]


def layer_extremes(report: dict) -> str:
    """The least and the most sparse layer of a sparsity report, as one phrase."""
    layers = report["layers"]
    if not layers:
        return "no layer"
    low = min(layers, key=lambda name: layers[name]["sparsity"])
    high = max(layers, key=lambda name: layers[name]["sparsity"])
    return (f"per layer {100 * layers[low]['sparsity']:.2f}% ({low}) to "
            f"{100 * layers[high]['sparsity']:.2f}% ({high})")


@torch.no_grad()
def count_masks(scores: dict[str, torch.Tensor], pruned: dict[str, int]) -> dict[str, torch.Tensor]:
    """Masks pruning exactly `pruned[name]` lowest scores in each tensor (used for
    non-uniform layer budgets such as ERK, where the counts are fixed beforehand)."""
    return {name: _keep_mask(s.flatten().float(), pruned[name]).view_as(s) for name, s in scores.items()}


def _group_along_inputs(weight: torch.Tensor, group: int, name: str = "a") -> torch.Tensor:
    """View a Linear [out, in] or Conv [out, in, kh, kw] weight as rows of `group`
    consecutive input channels: the layout sparse tensor cores (2:4) and block
    kernels use, since a dot product runs along the input channels."""
    w = weight if weight.dim() == 2 else weight.movedim(1, -1)  # [out, kh, kw, in]
    if w.shape[-1] % group:
        raise ConfigurationError(f"the {w.shape[-1]} input channels of {name} {tuple(weight.shape)} weight are not "
                                 f"divisible by the block of {group}; use a block that divides them, or unstructured "
                                 "pruning")
    return w.reshape(-1, group)


def block_scores(scores: dict[str, torch.Tensor], block: int) -> dict[str, torch.Tensor]:
    """Per-weight scores (>= 0; -inf where already pruned) -> one score per 1 x `block` block: the
    L2 norm of its scores, -inf where the whole block is pruned."""
    grouped = {}
    for name, score in scores.items():
        groups = _group_along_inputs(score.float(), block, name)
        pruned = torch.isneginf(groups).all(dim=1)
        grouped[name] = groups.nan_to_num(neginf=0.0).norm(dim=1).masked_fill(pruned, float("-inf"))
    return grouped


def expand_blocks(block_masks_: dict[str, torch.Tensor], like: dict[str, torch.Tensor], block: int):
    """Masks over blocks -> masks over the weights in `like`."""
    return {name: _ungroup(block_masks_[name][:, None].expand(-1, block), w) for name, w in like.items()}


def _ungroup(mask_groups: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() == 2:
        return mask_groups.reshape(weight.shape)
    moved = weight.movedim(1, -1).shape
    return mask_groups.reshape(moved).movedim(-1, 1)


@torch.no_grad()
def n_m_masks(weights: dict[str, torch.Tensor], n: int = 2, m: int = 4) -> dict[str, torch.Tensor]:
    """N:M semi-structured masks: in every group of `m` consecutive input channels keep
    the `n` largest magnitudes (ties: the lower index is pruned first)."""
    masks = {}
    for name, w in weights.items():
        groups = _group_along_inputs(w.detach().abs().float(), m)
        order = torch.argsort(groups, dim=1, stable=True)
        keep = torch.ones_like(groups, dtype=torch.bool)
        keep.scatter_(1, order[:, : m - n], False)
        masks[name] = _ungroup(keep, w)
    return masks

