"""oBS against a direct computation from the full (block) Fisher."""

import math

import pytest
import torch

from sparse_transfer.obs import BlockFisherInverse, fisher_bytes

NUMEL, BLOCK, GRADS, DAMPING = 24, 10, 12, 1e-2  # 3 blocks, the last one padded


def _direct_block_inverses(grads):
    blocks = math.ceil(NUMEL / BLOCK)
    padded = torch.zeros(len(grads), blocks * BLOCK, dtype=torch.float64)
    padded[:, :NUMEL] = torch.stack([g.flatten() for g in grads]).double()
    inverses = []
    for b in range(blocks):
        g = padded[:, b * BLOCK:(b + 1) * BLOCK]
        fisher = DAMPING * torch.eye(BLOCK, dtype=torch.float64) + g.T @ g / len(grads)
        inverses.append(torch.linalg.inv(fisher))
    return inverses


@pytest.fixture
def layer():
    torch.manual_seed(0)
    weight = torch.randn(4, 6)
    grads = [torch.randn(4, 6) * 0.3 for _ in range(GRADS)]
    fisher = BlockFisherInverse(NUMEL, BLOCK, GRADS, DAMPING)
    fisher.CHUNK_BLOCKS = 2  # two chunks: the second holds the padded block
    fisher.update(grads[0])  # one gradient, then the rest together
    fisher.update(torch.stack(grads[1:]))
    return weight, grads, fisher


def test_sherman_morrison_inverse_equals_the_inverted_fisher(layer):
    _, grads, fisher = layer
    for b, direct in enumerate(_direct_block_inverses(grads)):
        assert torch.allclose(fisher.inverse[b].double(), direct, rtol=1e-4, atol=1e-4)


def test_saliency_is_w_squared_over_twice_the_inverse_diagonal(layer):
    weight, grads, fisher = layer
    diagonal = torch.cat([inv.diagonal() for inv in _direct_block_inverses(grads)])[:NUMEL]
    expected = (weight.flatten().double() ** 2 / (2 * diagonal)).view_as(weight)
    assert torch.allclose(fisher.saliency(weight).double(), expected, rtol=1e-4)


def test_obs_update_zeroes_the_pruned_set_and_matches_the_closed_form(layer):
    weight, grads, fisher = layer
    pruned = torch.zeros(NUMEL, dtype=torch.bool)
    pruned[[0, 3, 4, 11, 12, 13, 21]] = True  # several per block, and in the padded block
    update = fisher.pruning_update(weight, pruned.view_as(weight))
    flat_w = torch.zeros(3 * BLOCK, dtype=torch.float64)
    flat_w[:NUMEL] = weight.flatten().double()
    expected = torch.zeros(3 * BLOCK, dtype=torch.float64)
    for b, inverse in enumerate(_direct_block_inverses(grads)):
        q = [i - b * BLOCK for i in range(b * BLOCK, min((b + 1) * BLOCK, NUMEL)) if pruned[i]]
        w_q = flat_w[b * BLOCK:(b + 1) * BLOCK][q]
        expected[b * BLOCK:(b + 1) * BLOCK] = -inverse[:, q] @ torch.linalg.solve(inverse[q][:, q], w_q)
    assert torch.allclose(update.flatten().double(), expected[:NUMEL], rtol=1e-3, atol=1e-4)
    updated = weight + update
    assert updated.flatten()[pruned].abs().max() < 1e-5  # the pruned weights land on zero
    assert (updated.flatten()[~pruned] != weight.flatten()[~pruned]).any()  # the rest compensate


def test_fisher_memory_counts_padded_blocks():
    assert fisher_bytes([24], 10) == 3 * 10 * 10 * 8  # float64 blocks
    assert fisher_bytes([384 * 384, 1536 * 384], 50) == (2950 + 11797) * 50 * 50 * 8  # ceil(147456 / 50), ceil(589824 / 50)


def test_update_of_a_fully_pruned_ill_conditioned_block_zeroes_it():
    # damping 1e-7 against squared gradients up to 0.4 (MiniLM with the [CLS] term): condition number
    # about 1e8, where a float32 solve fails as singular; pruning the whole block must give -w
    torch.manual_seed(0)
    block, grads = 50, 64
    weight = torch.randn(block) * 0.05
    fisher = BlockFisherInverse(block, block, grads, 1e-7)
    fisher.update(torch.randn(grads, block) * torch.logspace(-4, -0.2, block))
    update = fisher.pruning_update(weight, torch.ones(block, dtype=torch.bool))
    assert torch.allclose(update, -weight, atol=1e-6)
    half = torch.arange(block) % 2 == 0
    updated = weight + fisher.pruning_update(weight, half)
    assert updated[half].abs().max() < 1e-6 and torch.isfinite(updated).all()
