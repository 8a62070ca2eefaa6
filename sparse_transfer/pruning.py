"""Mask calculation: magnitude top-k with an exact count and deterministic ties.

`k = round(sparsity * n)` weights are pruned, exactly; among equal magnitudes the
lower flat index (in model order) is pruned first, so a mask is reproducible.
"""

from __future__ import annotations

import torch

SCOPES = ("global", "per-layer")


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
    weights: dict[str, torch.Tensor], sparsity: float, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Masks (True = kept) pruning the smallest-magnitude weights.

    scope="global": one threshold over all weights together;
    scope="per-layer": every weight pruned to `sparsity` on its own (uniform)."""
    return score_masks({name: w.detach().abs() for name, w in weights.items()}, sparsity, scope)


@torch.no_grad()
def score_masks(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Like `magnitude_masks`, for any importance scores (higher = keep)."""
    if scope == "per-layer":
        return {
            name: _keep_mask(s.flatten().float(), pruned_count(s.numel(), sparsity)).view_as(s)
            for name, s in scores.items()
        }
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}; use one of {SCOPES}")
    if not scores:
        return {}
    device = next(iter(scores.values())).device
    flat = torch.cat([s.flatten().float().to(device) for s in scores.values()])
    keep = _keep_mask(flat, pruned_count(flat.numel(), sparsity))
    masks, offset = {}, 0
    for name, s in scores.items():
        masks[name] = keep[offset : offset + s.numel()].view_as(s).to(s.device)
        offset += s.numel()
    return masks
