"""Top-k exactness of every mask pattern the vision methods use."""

import pytest
import torch

from sparse_transfer.pruning import count_masks, magnitude_masks, n_m_masks


def test_two_four_keeps_the_two_largest_of_each_input_group():
    w = torch.tensor([[1.0, -4.0, 3.0, 2.0, 0.5, 0.5, 0.5, 0.5]])
    mask = n_m_masks({"w": w})["w"]
    # ties in the second group: the lower indices are pruned first
    assert mask.tolist() == [[False, True, True, False, False, False, True, True]]


def test_two_four_on_a_conv_groups_input_channels():
    torch.manual_seed(0)
    w = torch.randn(3, 8, 2, 2)
    mask = n_m_masks({"w": w})["w"]
    assert int(mask.sum()) == w.numel() // 2
    # every (out, kh, kw) position keeps exactly 2 of each 4 consecutive input channels
    per_group = mask.movedim(1, -1).reshape(-1, 4).sum(dim=1)
    assert torch.equal(per_group, torch.full_like(per_group, 2))
    groups = w.abs().movedim(1, -1).reshape(-1, 4)
    kept = groups[mask.movedim(1, -1).reshape(-1, 4)].view(-1, 2)
    assert torch.equal(kept.sort(dim=1).values, groups.sort(dim=1).values[:, 2:])  # the two largest


def test_two_four_refuses_indivisible_inputs():
    with pytest.raises(ValueError, match="divisible"):
        n_m_masks({"w": torch.ones(2, 6)})


def test_block_four_prunes_whole_blocks_by_norm_exactly():
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0, 3.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1, 2.0, 2.0, 0.0, 0.0]])
    # block norms: 2.0, 3.0, 0.2, 2.83 -> pruning half removes the 0.2 and 2.0 blocks
    mask = magnitude_masks({"w": w}, 0.5, block=4)["w"]
    assert mask.tolist() == [[False] * 4 + [True] * 4, [False] * 4 + [True] * 4]


def test_block_four_global_count_over_conv_and_linear():
    torch.manual_seed(1)
    weights = {"conv": torch.randn(4, 8, 3, 3), "fc": torch.randn(10, 16)}
    masks = magnitude_masks(weights, 0.7, block=4)
    blocks = (4 * 8 * 9 + 10 * 16) // 4
    assert sum(int((~m).sum()) for m in masks.values()) == 4 * round(0.7 * blocks)
    per_block = masks["conv"].movedim(1, -1).reshape(-1, 4).sum(dim=1)
    assert set(per_block.tolist()) <= {0, 4}


def test_count_masks_prunes_the_given_number_per_layer():
    masks = count_masks({"a": torch.arange(6.0), "b": torch.ones(4)}, {"a": 4, "b": 1})
    assert masks["a"].tolist() == [False] * 4 + [True] * 2
    assert masks["b"].tolist() == [False, True, True, True]
