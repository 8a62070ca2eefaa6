"""Stage 2 of the pipeline: magnitude pruning of the effective weights, exact counts."""

import math

import pytest
import torch
from torch import nn

from sparse_transfer.vision.pipeline.learnable_masks import LearnableMasks
from sparse_transfer.vision.pipeline.run import collapse_hint, collapse_reason, prune
from sparse_transfer.vision.plain_models import mlp
from sparse_transfer.vision.recipe import VisionRecipe

NAMES = ["1.weight", "3.weight", "5.weight"]


def test_pruning_ranks_weight_times_probability_not_the_raw_weight():
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 4.0], [3.0, 2.0]]))
    masks = LearnableMasks(model, ["0.weight"])
    with torch.no_grad():  # p = 0.9, 0.1 / 0.2, 0.9: effective 0.9, 0.4 / 0.6, 1.8
        masks.logits()[0].copy_(torch.logit(torch.tensor([[0.9, 0.1], [0.2, 0.9]])))
    masked = prune(model, ["0.weight"], masks, 0.5)
    assert torch.equal(masked.masks["0.weight"], torch.tensor([[True, False], [False, True]]))
    assert torch.allclose(model[0].weight, torch.tensor([[0.9, 0.0], [0.0, 1.8]]))


@pytest.mark.parametrize("target", [0.9, 0.99, 0.999])
def test_global_pruning_of_effective_weights_hits_the_exact_count(target):
    torch.manual_seed(0)
    model = mlp(10)
    masks = LearnableMasks(model, NAMES)
    with torch.no_grad():
        for logits in masks.logits():
            logits.normal_()
    masked = prune(model, NAMES, masks, target)
    total = sum(model.get_parameter(n).numel() for n in NAMES)  # 266 200
    zeros = sum(int((model.get_parameter(n) == 0).sum()) for n in NAMES)
    assert zeros == round(target * total) and masked.verify() == 0


def test_per_layer_pruning_without_learned_masks_hits_the_exact_count_in_every_layer():
    torch.manual_seed(0)
    model = mlp(10)
    prune(model, NAMES, None, 0.99, "uniform")
    for name in NAMES:
        weight = model.get_parameter(name)
        assert int((weight == 0).sum()) == round(0.99 * weight.numel()), name


def test_collapse_is_a_non_finite_loss_or_chance_accuracy():
    assert collapse_reason(math.nan, 0.8, 10) == "training loss is nan"
    assert collapse_reason(2.3, 0.1, 10) == "validation top-1 0.100 is at chance level (1/10)"
    assert collapse_reason(0.5, 0.8, 10) is None


def test_collapse_hint_names_only_the_switches_that_are_on():
    recipe = VisionRecipe()
    recipe.pipeline.zero_init = False
    assert collapse_hint(recipe, "pre-pruning") == "; try pipeline.learned_mask=false or a lower optim.lr"
    assert collapse_hint(recipe, "post-pruning") == "; try a lower optim.lr or sparsity.target"
