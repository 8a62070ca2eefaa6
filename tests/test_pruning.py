import pytest
import torch
from torch import nn

from sparse_transfer.pruning import magnitude_masks
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
