"""Schedules over training steps: how sparse (the cubic law of gradual pruning) and how
large the learning rate (rewinding, warm-up with linear decay). Shared by upstream
pruning, sparse transfer and vision; every LR shape is a `LambdaLR` factor.

Cubic pruning (Zhu & Gupta, 2017): sparsity rises fast at first, while the network has many
redundant weights, and slowly near the target: s(t) = s_f + (s_i - s_f) (1 - t)^3 for a
fraction t of the pruning period. Vision's GMP takes pruning steps in epochs, upstream
pruning in optimizer steps.

Learning-rate rewinding: linear decay inside each stage, back to the peak at the next,
built from the real number of optimizer steps of each stage (after data sharding and
gradient accumulation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR


def cubic_sparsity(fraction: float, target: float, initial: float = 0.0) -> float:
    """Sparsity after `fraction` in [0, 1] of the pruning period (clamped outside)."""
    remaining = 1 - min(max(fraction, 0.0), 1.0)
    return target + (initial - target) * remaining**3


@dataclass(frozen=True)
class PruningSteps:
    """Pruning steps from `start` to `end` (the target is reached at `end`) every `every`
    steps, and the sparsity each one prunes to."""

    targets: dict[int, float]  # step -> sparsity, in step order
    total: int

    @classmethod
    def cubic(cls, total: int, start: int, end: int, every: int, target: float, initial: float = 0.0) -> "PruningSteps":
        if not 0 <= start <= end <= total:
            raise ValueError(f"pruning must run inside the {total} steps: got start {start}, end {end}")
        if every < 1:
            raise ValueError(f"steps between pruning steps must be >= 1, got {every}")
        steps = list(range(start, end, every)) + [end]
        period = max(end - start, 1)
        return cls({step: cubic_sparsity((step - start) / period, target, initial) for step in steps}, total)

    @property
    def last(self) -> int:
        return max(self.targets)

    def interval_lengths(self) -> list[int]:
        """Lengths of the intervals between pruning steps, the steps before the first
        and the fixed-mask phase after the last (the stages of LR rewinding); empty
        intervals are dropped."""
        bounds = [0, *self.targets, self.total]
        return [b - a for a, b in zip(bounds, bounds[1:]) if b > a]



def rewinding_factor(
    stage_steps: Sequence[int], warmup_steps: int = 0, end_factor: float = 0.0
) -> Callable[[int], float]:
    """Multiplier of the peak LR at optimizer step `step` (0-based).

    Inside a stage of `n` steps, after `warmup_steps` of linear warm-up from 0, the
    factor decays linearly from 1 towards `end_factor` (reached one step past the
    stage end, as in Hugging Face's linear schedule); the next stage starts at 1."""
    starts, total = [], 0
    for steps in stage_steps:
        starts.append(total)
        total += steps

    def factor(step: int) -> float:
        if step >= total:
            return end_factor
        stage = max(i for i, start in enumerate(starts) if start <= step)
        offset, length = step - starts[stage], stage_steps[stage]
        warmup = min(warmup_steps, length - 1)
        if offset < warmup:
            return offset / warmup
        return end_factor + (1.0 - end_factor) * (length - offset) / (length - warmup)

    return factor


def rewinding_scheduler(
    optimizer: torch.optim.Optimizer, stage_steps: Sequence[int], warmup_steps: int = 0, end_factor: float = 0.0
) -> LambdaLR:
    return LambdaLR(optimizer, rewinding_factor(stage_steps, warmup_steps, end_factor))


def warmup_linear_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LambdaLR factor: linear from 1/warmup_steps up to 1 at `warmup_steps`, then
    linear down to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
