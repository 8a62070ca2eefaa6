import torch

from sparse_transfer.vision.acdc import ACDC
from sparse_transfer.vision.schedules import DENSE, SPARSE, Phase
from sparse_transfer.vision.sparsity import prunable_weights

PHASES = [Phase(DENSE, 0, 0), Phase(SPARSE, 1, 2), Phase(DENSE, 3, 3), Phase(SPARSE, 4, 5)]
PRUNED_AT_90 = round(0.9 * 680)  # TinyConvNet has 72 + 576 + 32 prunable weights


def _zeros(weights):
    return sum(w.numel() - int(torch.count_nonzero(w)) for w in weights.values())


def _setup(model, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    weights = prunable_weights(model)
    return ACDC(model, optimizer, weights, PHASES, 0.9, **kwargs), optimizer, weights


def test_exact_zeros_through_a_sparse_phase_and_free_in_a_dense_phase(tiny_net, sgd_steps):
    acdc, optimizer, weights = _setup(tiny_net)
    acdc.on_epoch_start(0)
    sgd_steps(tiny_net, optimizer, 3)
    assert _zeros(weights) == 0 and not acdc.masked.attached
    for epoch in (1, 2):
        acdc.on_epoch_start(epoch)
        sgd_steps(tiny_net, optimizer, 3, seed=epoch)
        assert _zeros(weights) == PRUNED_AT_90 and acdc.masked.verify() == 0
    pruned = {name: ~m for name, m in acdc.masked.masks.items()}
    acdc.on_epoch_start(3)
    assert not acdc.masked.attached and acdc.masked.mask_sparsity() == 0.0
    sgd_steps(tiny_net, optimizer, 3, seed=3)
    revived = sum(int(torch.count_nonzero(weights[n].detach()[pruned[n]])) for n in weights)
    # pruned weights train again (those of channels a compression killed stay zero:
    # AC/DC paper, table 8)
    assert revived > 0 and not tiny_net[3]._forward_pre_hooks


def test_momentum_is_zero_right_after_decompression_unless_disabled(tiny_net, sgd_steps):
    for reset in (True, False):
        torch.manual_seed(0)
        model = type(tiny_net)()
        acdc, optimizer, _ = _setup(model, reset_momentum=reset)
        for epoch in range(3):
            acdc.on_epoch_start(epoch)
            sgd_steps(model, optimizer, 2, seed=epoch)
        acdc.on_epoch_start(3)
        buffers = [state["momentum_buffer"] for state in optimizer.state.values()]
        assert len(buffers) == len(list(model.parameters()))
        assert all(torch.count_nonzero(b) == 0 for b in buffers) == reset


def test_final_sparsity_is_the_target_exactly_and_masks_are_compared(tiny_net, sgd_steps):
    acdc, optimizer, weights = _setup(tiny_net)
    for epoch in range(6):
        acdc.on_epoch_start(epoch)
        sgd_steps(tiny_net, optimizer, 2, seed=epoch)
    assert acdc.masked.mask_sparsity() == PRUNED_AT_90 / 680
    assert _zeros(weights) == PRUNED_AT_90 and acdc.masked.verify() == 0
    assert 0.0 < acdc.last_iou < 1.0  # the second compression mask differs from the first
    assert [acdc.dense_phase(e) for e in range(6)] == [True, False, False, True, False, False]


def test_sparsity_ramps_over_the_sparse_phases_to_the_exact_target(tiny_net, sgd_steps):
    phases = [Phase(DENSE, 0, 0), Phase(SPARSE, 1, 1), Phase(DENSE, 2, 2), Phase(SPARSE, 3, 3)]
    phases += [Phase(DENSE, 4, 4), Phase(SPARSE, 5, 6)]
    optimizer = torch.optim.SGD(tiny_net.parameters(), lr=0.1, momentum=0.9)
    acdc = ACDC(tiny_net, optimizer, prunable_weights(tiny_net), phases, 0.9, ramp_from=0.5)
    pruned = {}
    for epoch in range(7):
        acdc.on_epoch_start(epoch)
        sgd_steps(tiny_net, optimizer, 1, seed=epoch)
        pruned[epoch] = sum(int((~m).sum()) for m in acdc.masked.masks.values())
    assert [pruned[e] for e in (1, 3, 5, 6)] == [round(0.5 * 680), round(0.7 * 680), PRUNED_AT_90, PRUNED_AT_90]


def test_sparse_decompression_keeps_a_lower_sparsity_in_dense_phases(tiny_net, sgd_steps):
    acdc, optimizer, weights = _setup(tiny_net, decompression_sparsity=0.5)
    for epoch in range(4):
        acdc.on_epoch_start(epoch)
        sgd_steps(tiny_net, optimizer, 2, seed=epoch)
    assert acdc.masked.mask_sparsity() == 0.5 and acdc.masked.verify() == 0
    assert sum(int((~m).sum()) for m in acdc.masked.masks.values()) == 340 <= _zeros(weights) < PRUNED_AT_90
    assert acdc.last_iou is None  # a decompression mask is not a compression mask
