"""Second-order pruning: the Optimal BERT Surgeon (oBS, arXiv 2203.07259).

The loss curvature is approximated by a block-diagonal empirical Fisher: every weight
tensor is cut into blocks of `block_size` consecutive weights (flattened, zero-padded),
and each block gets F = damping * I + (1/m) sum_i g_i g_i^T over m gradients. Its
inverse is built directly, one Sherman-Morrison update per gradient, never inverting a
matrix. A weight's saliency is w_q^2 / (2 [F^-1]_qq); pruning the set Q of a block moves
the others by the oBS update dw = -F^-1[:, Q] (F^-1[Q, Q])^-1 w_Q, which sets w_Q to 0
and compensates the loss for it.

The blocks are kept in float64: with damping 1e-7 and gradients whose squares reach
1e-1 (measured on MiniLM with the [CLS]-variation term), a block's inverse has a
condition number past 1e8, and in float32 the solve for a fully pruned block fails
as singular.
"""

from __future__ import annotations

import math

import torch

DTYPE = torch.float64
FLOAT_BYTES = 8


def fisher_bytes(numels: list[int], block_size: int) -> int:
    """Memory of the inverse Fisher blocks for weight tensors of these sizes."""
    return sum(math.ceil(n / block_size) * block_size * block_size * FLOAT_BYTES for n in numels)


class BlockFisherInverse:
    """Inverse of the block-diagonal empirical Fisher of one weight tensor."""

    CHUNK_BLOCKS = 512  # 512 blocks of 50 x 50 doubles: 10 MB, about a CPU's last-level cache

    def __init__(self, numel: int, block_size: int, num_grads: int, damping: float, device=None):
        self.numel, self.block_size, self.num_grads = numel, block_size, num_grads
        self.num_blocks = math.ceil(numel / block_size)
        eye = torch.eye(block_size, device=device, dtype=DTYPE) / damping
        self.inverse = eye.repeat(self.num_blocks, 1, 1)  # [blocks, B, B]

    def _blocks(self, flat: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros(self.num_blocks * self.block_size, device=flat.device, dtype=DTYPE)
        padded[: self.numel] = flat.to(DTYPE)
        return padded.view(self.num_blocks, self.block_size)

    @torch.no_grad()
    def update(self, grads: torch.Tensor) -> None:
        """Add gradients ([k, numel] or one [numel]), one Sherman-Morrison step each:
        (A + g g^T / m)^-1 = A^-1 - A^-1 g g^T A^-1 / (m + g^T A^-1 g).

        The k steps run over one cache-sized chunk of blocks at a time: the inverse is
        read from memory once per call instead of once per gradient."""
        grads = grads.reshape(-1, self.numel)
        g_blocks = torch.stack([self._blocks(g) for g in grads], dim=1)  # [blocks, k, B]
        for start in range(0, self.num_blocks, self.CHUNK_BLOCKS):
            inverse = self.inverse[start:start + self.CHUNK_BLOCKS]
            for g in g_blocks[start:start + self.CHUNK_BLOCKS].unbind(1):
                g = g.unsqueeze(-1)  # [chunk, B, 1]
                inverse_g = torch.bmm(inverse, g)
                denominator = self.num_grads + torch.bmm(g.transpose(1, 2), inverse_g)
                inverse.sub_(torch.bmm(inverse_g, inverse_g.transpose(1, 2)) / denominator)

    def diagonal(self) -> torch.Tensor:
        return self.inverse.diagonal(dim1=1, dim2=2).reshape(-1)[: self.numel]

    @torch.no_grad()
    def saliency(self, weight: torch.Tensor) -> torch.Tensor:
        """w_q^2 / (2 [F^-1]_qq), the loss increase of pruning q alone, shaped like `weight`."""
        return (weight.to(DTYPE).flatten() ** 2 / (2 * self.diagonal())).float().view_as(weight)

    @torch.no_grad()
    def pruning_update(self, weight: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
        """The oBS update dw that zeroes every `pruned` weight, shaped like `weight`.

        Per block, solve M x = P w with M = P F^-1 P + (I - P) (P the pruned
        indicator): x_Q = (F^-1_QQ)^-1 w_Q and x = 0 elsewhere, so dw = -F^-1 x."""
        p = self._blocks(pruned.flatten())  # [blocks, B] of 0/1
        w = self._blocks(weight.flatten())
        system = p.unsqueeze(-1) * self.inverse * p.unsqueeze(-2) + torch.diag_embed(1 - p)
        x = torch.linalg.solve(system, (p * w).unsqueeze(-1))
        update = -torch.bmm(self.inverse, x).squeeze(-1)
        return update.reshape(-1)[: self.numel].view_as(weight).to(weight.dtype)
