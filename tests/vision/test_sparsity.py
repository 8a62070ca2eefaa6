import pytest
import torch

from sparse_transfer.vision.sparsity import (
    erk_pruned_counts,
    prunable_weights,
    target_masks,
)


def _pruned(masks):
    return {name: int((~m).sum()) for name, m in masks.items()}


def test_selection_takes_conv_and_linear_weights_never_bn_or_bias(tiny_net):
    assert list(prunable_weights(tiny_net)) == ["0.weight", "3.weight", "8.weight"]
    assert list(prunable_weights(tiny_net, first_last_dense=True)) == ["3.weight"]


def test_global_uniform_and_fld_counts_are_exact(tiny_net):
    weights = prunable_weights(tiny_net)  # 72 + 576 + 32 = 680 weights
    assert sum(_pruned(target_masks(weights, 0.9, "global")).values()) == 612
    assert _pruned(target_masks(weights, 0.9, "uniform")) == {"0.weight": 65, "3.weight": 518, "8.weight": 29}
    fld = prunable_weights(tiny_net, first_last_dense=True)
    assert _pruned(target_masks(fld, 0.9, "global")) == {"3.weight": 518}


def test_global_mask_keeps_the_largest_magnitudes(tiny_net):
    weights = prunable_weights(tiny_net)
    masks = target_masks(weights, 0.5, "global")
    kept = torch.cat([w.detach().abs()[m] for w, m in zip(weights.values(), masks.values())])
    pruned = torch.cat([w.detach().abs()[~m] for w, m in zip(weights.values(), masks.values())])
    assert kept.min() >= pruned.max()


def test_erk_counts_by_hand_with_largest_remainder_rounding():
    # densities proportional to sum(shape)/prod(shape): 0.2 and 0.1, scaled so that 100
    # of 500 weights stay: a keeps 33.3, b 66.7 -> pruned 66.7 and 333.3, rounded to 400
    counts = erk_pruned_counts({"a": torch.Size([10, 10]), "b": torch.Size([20, 20])}, 0.8)
    assert counts == {"a": 67, "b": 333}


def test_erk_at_high_sparsity_keeps_small_stem_and_head_dense():
    shapes = {"stem": torch.Size([16, 3, 3, 3]), "body": torch.Size([64, 64, 3, 3]), "head": torch.Size([10, 64])}
    total = 16 * 27 + 64 * 64 * 9 + 640
    assert erk_pruned_counts(shapes, 0.9) == {"stem": 0, "body": round(0.9 * total), "head": 0}


def test_erk_keeps_a_layer_dense_when_its_budget_exceeds_one():
    shapes = {"tiny": torch.Size([2, 2]), "big": torch.Size([100, 100])}
    counts = erk_pruned_counts(shapes, 0.5)
    assert counts["tiny"] == 0 and counts["big"] == round(0.5 * 10004)


def test_two_four_and_block_and_unknown(tiny_net):
    weights = prunable_weights(tiny_net, first_last_dense=True)
    assert _pruned(target_masks(weights, 0.9, "2:4")) == {"3.weight": 288}
    assert _pruned(target_masks(weights, 0.75, "block4")) == {"3.weight": 4 * 108}
    with pytest.raises(ValueError, match="distribution"):
        target_masks(weights, 0.5, "random")
