"""AC/DC: alternating compressed (sparse) and decompressed (dense) phases.

At each sparse phase start the mask is the magnitude top-k of the current weights;
pruned weights are zeroed and kept zero for the phase. At each dense phase start the
mask is lifted (or relaxed to a lower "decompression" sparsity, AC/DC++ section 4)
and SGD momentum is reset, since weights that were pruned would otherwise resume with
stale momentum (AC/DC paper, section 3).

`ramp_from` > 0 raises the sparsity of successive sparse phases linearly from that
value to the target (the final phase is at the target): AC/DC++ section 3.2 does this
to prevent layer collapse at very high sparsity.
"""

from __future__ import annotations

import torch
from torch import nn

from sparse_transfer.vision.masked_training import MaskedTraining
from sparse_transfer.vision.schedules import SPARSE, Phase, phase_at
from sparse_transfer.vision.sparsity import target_masks


class ACDC(MaskedTraining):
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        weights: dict[str, nn.Parameter],
        phases: list[Phase],
        sparsity: float,
        distribution: str = "global",
        decompression_sparsity: float = 0.0,
        reset_momentum: bool = True,
        ramp_from: float = 0.0,
    ):
        if ramp_from and not 0 < ramp_from < sparsity:
            raise ValueError(f"ramp_from must lie between 0 and the target {sparsity}, got {ramp_from}")
        super().__init__(model, optimizer, weights)
        self.phases = phases
        sparse_starts = [p.start for p in phases if p.kind == SPARSE]
        steps = max(1, len(sparse_starts) - 1)
        first = ramp_from or sparsity
        self.sparsity_at = {start: first + (sparsity - first) * i / steps for i, start in enumerate(sparse_starts)}
        self.sparsity_at[sparse_starts[-1]] = sparsity  # exact, whatever the float arithmetic
        self.distribution = distribution
        self.decompression_sparsity = decompression_sparsity
        self.reset_momentum_on_decompression = reset_momentum

    def dense_phase(self, epoch: int) -> bool:
        return phase_at(self.phases, epoch).kind != SPARSE

    def on_epoch_start(self, epoch: int) -> None:
        phase = phase_at(self.phases, epoch)
        if epoch != phase.start:
            return
        weights = self.masked.weights()
        if phase.kind == SPARSE:
            self.enforce(target_masks(weights, self.sparsity_at[epoch], self.distribution))
            return
        if epoch == 0:  # the warm-up: nothing to lift yet
            return
        if self.decompression_sparsity > 0:
            self.enforce(target_masks(weights, self.decompression_sparsity, self.distribution), compression=False)
        else:
            self.lift()
        if self.reset_momentum_on_decompression:
            self.reset_momentum()
