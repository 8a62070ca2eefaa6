import pytest
import torch
from torch import nn

from sparse_transfer.pruning import SCOPES, magnitude_masks, parse_block
from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.selection import Selection


def test_global_topk_prunes_exactly_k_with_ties_broken_by_index():
    weights = {"a": torch.ones(10), "b": torch.ones(10)}  # all tied
    masks = magnitude_masks(weights, 0.35, scope="global")
    assert int((~masks["a"]).sum()) + int((~masks["b"]).sum()) == 7
    # ties: the lowest flat indices go first, in model order
    assert masks["a"].tolist() == [False] * 7 + [True] * 3
    assert masks["b"].all()


def test_global_threshold_is_shared_across_layers():
    weights = {"small": torch.arange(1.0, 5.0), "large": torch.arange(10.0, 14.0)}
    masks = magnitude_masks(weights, 0.5, scope="global")
    assert not masks["small"].any() and masks["large"].all()


def test_per_layer_prunes_each_layer_to_the_target():
    weights = {"small": torch.arange(1.0, 5.0), "large": -torch.arange(10.0, 14.0)}
    masks = magnitude_masks(weights, 0.5, scope="per-layer")
    assert masks["small"].tolist() == [False, False, True, True]
    assert masks["large"].tolist() == [False, False, True, True]  # magnitude, not sign


def test_bad_sparsity_and_scope_are_refused():
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_masks({"a": torch.ones(3)}, 1.0)
    with pytest.raises(ValueError, match="scope"):
        magnitude_masks({"a": torch.ones(3)}, 0.5, scope="layerwise")


def test_selection_by_type_include_exclude_and_prefix():
    model = nn.ModuleDict(
        {
            "blocks": nn.ModuleList([nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)) for _ in range(2)]),
            "head": nn.Linear(2, 2),
            "conv": nn.Conv2d(1, 1, 3),
        }
    )
    assert list(Selection().select(model)) == ["blocks.0.0.weight", "blocks.1.0.weight", "head.weight"]
    assert list(Selection().select(model, within=["blocks"])) == ["blocks.0.0.weight", "blocks.1.0.weight"]
    assert list(Selection(["Conv2d", "Linear"], exclude=[r"^head"]).select(model)) == [
        "blocks.0.0.weight",
        "blocks.1.0.weight",
        "conv.weight",
    ]
    assert list(Selection(include=[r"\.1\."]).select(model)) == ["blocks.1.0.weight"]


def test_block_masks_keep_or_prune_whole_1x4_blocks_exactly():
    torch.manual_seed(0)
    weights = {"a": torch.randn(8, 16), "b": torch.randn(4, 32) * 3}
    for scope in SCOPES:
        masks = magnitude_masks(weights, 0.75, scope, block=4)
        blocks = {name: mask.reshape(-1, 4) for name, mask in masks.items()}
        assert all(bool((g.all(1) | ~g.any(1)).all()) for g in blocks.values())
        total = sum(g.shape[0] for g in blocks.values())
        assert sum(int((~g.any(1)).sum()) for g in blocks.values()) == round(0.75 * total)
        if scope == "per-layer":
            assert all(int((~g.any(1)).sum()) == round(0.75 * g.shape[0]) for g in blocks.values())
    kept = magnitude_masks({"w": torch.tensor([[1.0, 1, 1, 1, 5, 0, 0, 0]])}, 0.5, block=4)["w"]
    assert kept.tolist() == [[False] * 4 + [True] * 4]  # block norm 5 beats 4 x 1 (norm 2)


def test_block_patterns_parse_and_refuse_in_one_line():
    assert [parse_block(p) for p in (None, "1x1", "unstructured", 1, "1x4", 8)] == [1, 1, 1, 1, 4, 8]
    for bad in ("4x1", "1x", "x4", "1x0", "blocks"):
        with pytest.raises(ConfigurationError, match=r"is not 1xN \(N consecutive input features, e.g. 1x4\)"):
            parse_block(bad)
    with pytest.raises(ConfigurationError, match=r"^the 6 input channels of w \(2, 6\) weight are not divisible by "
                                                 r"the block of 4; use a block that divides them"):
        magnitude_masks({"w": torch.randn(2, 6)}, 0.5, block=4)
