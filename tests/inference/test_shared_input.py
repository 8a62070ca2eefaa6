"""Attention's query, key and value in an export share one kernel call on their stacked weights:
outputs identical to each layer's own call, one call per attention, and each layer on its own again
where the three do not read one input (or the input changed in place)."""

import dataclasses

import pytest
import torch
from torch import nn

from sparse_transfer.inference.export import load_for_inference
from sparse_transfer.inference.fusion import SharedInput
from sparse_transfer.inference.kernels import KERNELS, SparseLinear
from sparse_transfer.inference.native import load_native

needs_native = pytest.mark.skipif(isinstance(load_native(), str), reason="no native kernels")


def _projections(kernel="sparse_int8", seed=0):
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(3):
        linear = nn.Linear(64, 48)
        with torch.no_grad():
            weight = torch.randn(48, 64, generator=generator)
            linear.weight.copy_(weight * (torch.rand(48, 64, generator=generator) > 0.9))
        layers.append(SparseLinear(linear, {40: kernel}))
    return layers


def _own_outputs(layers, x):
    return [KERNELS[layer.kernel_for(40)].apply(layer._prepared[layer.kernel_for(40)], x.reshape(-1, 64),
                                                layer.bias.detach()).reshape(*x.shape[:-1], 48) for layer in layers]


@needs_native
@pytest.mark.parametrize("kernel", ["sparse_int8", "tiled_csr"])
def test_one_stacked_call_gives_each_layer_exactly_its_own_output(kernel, monkeypatch):
    layers = _projections(kernel)
    SharedInput(layers)
    x = torch.randn(2, 20, 64)
    with torch.no_grad():
        expected = _own_outputs(layers, x)
    calls = []
    original = KERNELS[kernel]
    monkeypatch.setitem(KERNELS, kernel, dataclasses.replace(
        original, apply=lambda *args: calls.append(args[1].shape) or original.apply(*args)))
    with torch.no_grad():
        outputs = [layer(x) for layer in layers]
        assert calls == [(40, 64)]  # one call for the three
        for actual, own in zip(outputs, expected):
            assert actual.shape == (2, 20, 48) and torch.equal(actual, own)
        again = [layer(x) for layer in layers]  # the next forward on the same tensor
    assert len(calls) == 2 and all(torch.equal(a, b) for a, b in zip(again, outputs))


@needs_native
def test_layers_that_do_not_read_one_input_run_on_their_own_and_an_input_changed_in_place_is_read_again():
    layers = _projections()
    group = SharedInput(layers)
    x, other = torch.randn(40, 64), torch.randn(40, 64)
    with torch.no_grad():
        query, key = layers[0](x), layers[1](other)  # cross-attention: keys read other states
        assert not group.enabled
        expected = _own_outputs(layers, x)
        assert torch.equal(query, expected[0]) and torch.equal(key, _own_outputs(layers, other)[1])
        assert torch.equal(layers[2](x), expected[2])
    shared = _projections()
    SharedInput(shared)
    with torch.no_grad():
        first = shared[0](x)
        x.mul_(2.0)  # in place, between two of the layers
        assert torch.equal(shared[1](x), _own_outputs(shared, x)[1])
    assert torch.equal(first, _own_outputs(shared, x / 2.0)[0])


@needs_native
def test_an_int8_export_shares_the_projections_input_and_keeps_its_outputs(int8_export):
    source, out = int8_export
    exported = load_for_inference(str(out))
    for layer in exported.bert.encoder.layer:
        attention = layer.attention.self
        assert [attention.query.shared[1], attention.key.shared[1], attention.value.shared[1]] == [0, 1, 2]
        assert attention.query.shared[0] is attention.value.shared[0]
        assert layer.attention.output.dense.shared is None
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        shared = exported(input_ids=ids).logits
        for layer in exported.bert.encoder.layer:
            for name in ("query", "key", "value"):
                getattr(layer.attention.self, name).shared = None
        alone = exported(input_ids=ids).logits
    assert torch.equal(shared, alone)
    with pytest.raises(ValueError, match="same input size and kernels"):
        SharedInput([*_projections()[:2], _projections("tiled_csr")[2]])
