"""Learnable masks of stage 1: estimators, the regularizer, removal."""

import math

import pytest
import torch
from torch import nn

from sparse_transfer.vision.pipeline.learnable_masks import LearnableMasks


def _linear(weight):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return nn.Sequential(layer)


def test_regularizer_value_and_gradient_at_probability_one_half():
    model = _linear(torch.ones(2, 2))
    masks = LearnableMasks(model, ["0.weight"], keep_probability=0.5)
    regularizer = masks.regularizer(target_density=0.1, density_weight=1.0, polarization_weight=0.1)
    # (0.5 - 0.1)^2 + 0.1 * 0.25 ; gradient per logit: 2 * 0.4 / 4 * 0.25, the polarizing
    # term being flat at p = 0.5
    assert regularizer.item() == pytest.approx(0.185)
    regularizer.backward()
    assert torch.allclose(masks.logits()[0].grad, torch.full((2, 2), 0.05))


def test_regularizer_moves_the_expected_density_to_the_target_and_keeps_the_true_support():
    """Toy regression y = 3 x_0 - 2 x_5 with 16 inputs and a 2/16 density target."""
    torch.manual_seed(0)
    model = _linear(torch.randn(1, 16) * 0.1)
    masks = LearnableMasks(model, ["0.weight"], keep_probability=0.9)
    weight_optimizer = torch.optim.SGD(model.parameters(), lr=0.05)  # logits included; SGD moves them little
    mask_optimizer = torch.optim.Adam(masks.logits(), lr=0.05)
    start = masks.expected_density().item()
    for _ in range(300):
        x = torch.randn(64, 16)
        y = 3 * x[:, :1] - 2 * x[:, 5:6]
        loss = nn.functional.mse_loss(model(x), y) + masks.regularizer(2 / 16, 1.0, 0.1)
        weight_optimizer.zero_grad()
        mask_optimizer.zero_grad()
        loss.backward()
        weight_optimizer.step()
        mask_optimizer.step()
    end = masks.expected_density().item()
    assert start == pytest.approx(0.9) and abs(end - 2 / 16) < 0.05
    effective = masks.effective_weights()["0.weight"].abs().flatten()
    assert set(effective.topk(2).indices.tolist()) == {0, 5}


def test_straight_through_samples_are_exactly_zero_or_the_weight_and_evaluation_uses_the_probability():
    torch.manual_seed(0)
    model = _linear(torch.full((8, 8), 2.0))
    masks = LearnableMasks(model, ["0.weight"], keep_probability=0.75)
    sampled = model[0].weight
    assert set(sampled.unique().tolist()) == {0.0, 2.0}
    sampled.sum().backward()  # the gradient reaches the logits through the probabilities
    assert torch.allclose(masks.logits()[0].grad, torch.full((8, 8), 2.0 * 0.75 * 0.25))
    model.eval()
    assert torch.allclose(model[0].weight, torch.full((8, 8), 1.5))


def test_concrete_samples_are_soft_and_differentiable():
    torch.manual_seed(0)
    model = _linear(torch.ones(8, 8))
    masks = LearnableMasks(model, ["0.weight"], keep_probability=0.5, estimator="concrete", temperature=0.5)
    sampled = model[0].weight
    assert ((sampled > 0) & (sampled < 1)).all() and sampled.unique().numel() == 64
    sampled.sum().backward()
    assert (masks.logits()[0].grad > 0).all()


def test_remove_leaves_the_same_parameter_holding_the_effective_weight():
    model = _linear(torch.tensor([[1.0, -2.0]]))
    original = model[0].weight
    masks = LearnableMasks(model, ["0.weight"], keep_probability=0.5)
    with torch.no_grad():
        masks.logits()[0].copy_(torch.tensor([[0.0, math.log(3.0)]]))  # p = 0.5, 0.75
    weights = masks.remove()
    assert weights["0.weight"] is original is model[0].weight
    assert torch.allclose(model[0].weight, torch.tensor([[0.5, -1.5]]))
    assert [name for name, _ in model.named_parameters()] == ["0.weight"]


def test_bad_estimator_and_probability_are_refused():
    with pytest.raises(ValueError, match="unknown mask estimator 'gumbel'; use one of"):
        LearnableMasks(_linear(torch.ones(1, 1)), ["0.weight"], estimator="gumbel")
    with pytest.raises(ValueError, match=r"must be in \(0, 1\), got 1.0"):
        LearnableMasks(_linear(torch.ones(1, 1)), ["0.weight"], keep_probability=1.0)
