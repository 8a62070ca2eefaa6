"""The AC/DC++ (FFCV) per-step learning-rate factor and per-epoch training resolution."""

from __future__ import annotations

from collections.abc import Callable


def warmup_linear_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LambdaLR factor: linear from 1/warmup_steps up to 1 at `warmup_steps`, then
    linear down to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def resolution_at(epoch: int, epochs: int, low: int, high: int, ramp_start: float, ramp_end: float, step: int) -> int:
    """Training resolution for progressive resizing: `low` before `ramp_start * epochs`,
    `high` from `ramp_end * epochs`, linear in between, rounded down to `step`."""
    start, end = ramp_start * epochs, ramp_end * epochs
    if epoch < start:
        return low
    if epoch >= end:
        return high
    size = low + (high - low) * (epoch - start) / (end - start)
    return int(size // step * step)
