import math

import pytest
import torch
from torch import nn

from sparse_transfer.vision.gmp import GMP
from sparse_transfer.vision.rigl import RigL
from sparse_transfer.vision.sparsity import prunable_weights


def _optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)


def _pruned_per_layer(weights):
    return {name: w.numel() - int(torch.count_nonzero(w)) for name, w in weights.items()}


def test_gmp_prunes_on_the_cubic_schedule_and_ends_exactly_at_target(tiny_net, sgd_steps):
    optimizer = _optimizer(tiny_net)
    weights = prunable_weights(tiny_net)
    gmp = GMP(tiny_net, optimizer, weights, epochs=8, sparsity=0.9, prune_every=2)
    # pruning stops at epoch 6: the last quarter (epochs 6-7) keeps a fixed mask
    assert gmp.targets == pytest.approx({2: 0.9 * (1 - (2 / 3) ** 3), 4: 0.9 * (1 - (1 / 3) ** 3), 6: 0.9})
    zeros = []
    for epoch in range(8):
        gmp.on_epoch_start(epoch)
        sgd_steps(tiny_net, optimizer, 2, seed=epoch)
        zeros.append(sum(_pruned_per_layer(weights).values()))
    assert zeros[:2] == [0, 0]
    assert zeros[2] == round(gmp.targets[2] * 680) and zeros[4] == round(gmp.targets[4] * 680)
    assert zeros[6] == zeros[7] == round(0.9 * 680) and gmp.masked.verify() == 0


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_rigl_keeps_exact_layer_counts_while_the_mask_moves(tiny_net, distribution, sgd_steps):
    optimizer = _optimizer(tiny_net)
    weights = prunable_weights(tiny_net)
    batch = (torch.randn(16, 1, 6, 6), torch.randint(0, 4, (16,)))

    def dense_gradients():
        nn.functional.cross_entropy(tiny_net(batch[0]), batch[1]).backward()

    rigl = RigL(tiny_net, optimizer, weights, 8, 0.9, dense_gradients, distribution=distribution)
    # cosine decay from alpha = 0.3 to 0 at epoch 6, where the fixed last quarter starts
    assert rigl.drop_fraction(0) == pytest.approx(0.3)
    assert rigl.drop_fraction(3) == pytest.approx(0.15 * (1 + math.cos(math.pi / 2)))
    masks = []
    for epoch in range(8):
        rigl.on_epoch_start(epoch)
        assert {name: int((~m).sum()) for name, m in rigl.masked.masks.items()} == rigl.pruned
        sgd_steps(tiny_net, optimizer, 2, seed=epoch)
        assert rigl.masked.verify() == 0
        masks.append({n: m.clone() for n, m in rigl.masked.masks.items()})
    assert sum(rigl.pruned.values()) == round(0.9 * 680)
    assert sum(_pruned_per_layer(weights).values()) >= round(0.9 * 680)
    assert any(not torch.equal(masks[0][n], masks[1][n]) for n in weights)  # drop/grow moved the mask
    assert all(torch.equal(masks[5][n], masks[7][n]) for n in weights)  # fixed for the last 25%


def test_rigl_grows_where_the_dense_gradient_is_largest():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, 2.0, 0.1, 3.0]]))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)

    def dense_gradients():  # d/dw of (w . x) with x = [0, 0, 5, 1]: the gradient is x
        layer(torch.tensor([[0.0, 0.0, 5.0, 1.0]])).sum().backward()

    rigl = RigL(layer, optimizer, {"weight": layer.weight}, 8, 0.5, dense_gradients, distribution="uniform")
    rigl.enforce({"weight": torch.tensor([[True, True, False, False]])})
    rigl.update(fraction=0.5)  # one of the two active weights moves
    # drop the smaller active one (0.5 at index 0); grow index 2, gradient 5 beats 1
    assert rigl.masked.masks["weight"].tolist() == [[False, True, True, False]]
    assert layer.weight.tolist() == [[0.0, 2.0, 0.0, 0.0]]
