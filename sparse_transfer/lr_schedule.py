"""Learning-rate rewinding: linear decay inside each stage, back to the peak at the next.

Built on `torch.optim.lr_scheduler.LambdaLR` from the real number of optimizer steps
of each stage (after data sharding and gradient accumulation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR


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
