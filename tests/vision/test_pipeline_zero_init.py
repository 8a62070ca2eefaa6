"""ZerO initialization: the deterministic matrices of Zhao et al. 2022, Algorithms 1-2."""

import pytest
import torch
from torch import nn

from sparse_transfer.vision.pipeline.zero_init import zero_init_, zero_matrix
from sparse_transfer.vision.plain_models import mlp


def test_square_layer_is_the_identity():
    assert torch.equal(zero_matrix(3, 3), torch.eye(3))


def test_wide_layer_is_the_partial_identity():
    assert torch.equal(zero_matrix(2, 4), torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))


def test_tall_layer_is_a_block_of_the_normalised_hadamard_matrix():
    # 3 outputs: m = 2, H_4 / 2 ; 5 outputs: m = 3, H_8 / 2^1.5 (Sylvester order)
    assert torch.equal(zero_matrix(3, 2), torch.tensor([[0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]))
    signs = torch.tensor([[1, 1, 1], [1, -1, 1], [1, 1, -1], [1, -1, -1], [1, 1, 1]])
    assert torch.equal(zero_matrix(5, 3), signs * 2**-1.5)


def test_conv_kernel_holds_the_matrix_at_its_centre_tap_only():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    zero_init_(conv)
    assert torch.equal(conv.weight[:, :, 1, 1], zero_matrix(3, 2))
    assert int(torch.count_nonzero(conv.weight)) == 6
    assert torch.equal(conv.bias, torch.zeros(3))


def test_zero_init_ignores_the_seed_and_makes_the_mlp_pass_pixels_through():
    torch.manual_seed(1)
    first = zero_init_(mlp(10))
    torch.manual_seed(2)
    second = zero_init_(mlp(10))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    # every layer narrows (784 -> 300 -> 100 -> 10): partial identities, zero biases
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(first(x), torch.relu(x.flatten(1)[:, :10]))


def test_even_kernels_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"0 has kernel \(2, 2\).*pipeline.zero_init=false"):
        zero_init_(nn.Sequential(nn.Conv2d(1, 2, 2)))
