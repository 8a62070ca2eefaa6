"""ToST smoothing of stage 3: each option anneals to the plain ReLU network."""

import copy

import pytest
import torch
from torch import nn

from sparse_transfer.vision.pipeline.smoothing import (
    Smoothing,
    SoftReLU,
    match_channels,
    skip_eligible,
)

LAYERS = ["0.weight", "2.weight", "4.weight"]


@pytest.fixture
def nets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    return model, copy.deepcopy(model)


def test_all_three_options_anneal_linearly_and_end_as_the_plain_network(nets):
    model, plain = nets
    loss_fn = nn.CrossEntropyLoss()
    smoothing = Smoothing(model, loss_fn, LAYERS, epochs=3, label_smoothing=0.2, soft_activation=True, skip_weight=0.5)
    smoothing.attach()
    x = torch.randn(5, 4)
    assert loss_fn.label_smoothing == 0.2 and smoothing.skip_weight == 0.5
    assert isinstance(model[1], SoftReLU) and model[1].relu_weight == 0.0
    assert not torch.allclose(model(x), plain(x))
    smoothing.set_epoch(1)
    assert (loss_fn.label_smoothing, smoothing.skip_weight, model[3].relu_weight) == (0.1, 0.25, 0.5)
    smoothing.set_epoch(2)  # the last epoch trains the plain network
    assert (loss_fn.label_smoothing, smoothing.skip_weight, model[3].relu_weight) == (0.0, 0.0, 1.0)
    assert torch.equal(model(x), plain(x))
    smoothing.remove()
    assert [type(m) for m in model] == [type(m) for m in plain]
    assert all(not m._forward_hooks for m in model.modules())
    assert list(model.state_dict()) == list(plain.state_dict())
    assert torch.equal(model(x), plain(x))


@pytest.mark.parametrize("option", [{"label_smoothing": 0.3}, {"soft_activation": True}, {"skip_weight": 1.0}])
def test_each_option_alone_smooths_at_first_and_is_plain_at_the_last_epoch(nets, option):
    model, plain = nets
    loss_fn = nn.CrossEntropyLoss()
    smoothing = Smoothing(model, loss_fn, LAYERS, epochs=5, **option).attach()
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    plain_loss = nn.functional.cross_entropy(plain(x), y)
    assert not torch.equal(loss_fn(model(x), y), plain_loss)
    smoothing.set_epoch(4)
    assert torch.equal(loss_fn(model(x), y), plain_loss)
    smoothing.remove()
    assert torch.equal(loss_fn(model(x), y), plain_loss)


def test_identity_path_skips_only_inner_layers_and_adds_the_weighted_input(nets):
    model, plain = nets
    Smoothing(model, nn.CrossEntropyLoss(), LAYERS, epochs=4, skip_weight=0.5).attach()
    assert [len(model[i]._forward_hooks) for i in (0, 2, 4)] == [0, 1, 0]
    assert isinstance(model[1], nn.ReLU)  # soft activation is off
    h = torch.randn(5, 6)
    assert torch.equal(model[2](h), plain[2](h) + 0.5 * h)


def test_soft_relu_is_swish_at_zero_and_exactly_relu_at_one():
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(SoftReLU(0.0)(x), nn.functional.silu(x))
    assert torch.equal(SoftReLU(1.0)(x), torch.relu(x))


def test_identity_path_truncates_or_zero_pads_channels():
    x = torch.arange(6.0).view(2, 3)
    assert torch.equal(match_channels(x, 2), torch.tensor([[0.0, 1.0], [3.0, 4.0]]))
    assert torch.equal(match_channels(x, 4), torch.tensor([[0.0, 1.0, 2.0, 0.0], [3.0, 4.0, 5.0, 0.0]]))
    images = torch.ones(1, 2, 3, 3)
    assert match_channels(images, 3)[:, 2].abs().sum() == 0 and match_channels(images, 3).shape == (1, 3, 3, 3)


def test_only_size_preserving_layers_get_an_identity_path():
    assert skip_eligible(nn.Conv2d(2, 4, 3, padding=1))
    assert skip_eligible(nn.Conv2d(2, 4, 3, padding="same"))
    assert not skip_eligible(nn.Conv2d(2, 4, 3, padding=0))
    assert not skip_eligible(nn.Conv2d(2, 4, 3, stride=2, padding=1))
    assert not skip_eligible(nn.BatchNorm2d(2))
