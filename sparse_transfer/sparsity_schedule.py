"""Gradual pruning schedules: the cubic law of Zhu & Gupta (2017), shared by vision's
GMP (pruning steps in epochs) and upstream pruning (pruning steps in optimizer steps).

Sparsity rises fast at first, while the network has many redundant weights, and slowly
near the target: s(t) = s_f + (s_i - s_f) (1 - t)^3 for a fraction t of the pruning period.
"""

from __future__ import annotations

from dataclasses import dataclass


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
