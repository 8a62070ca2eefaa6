"""Steps fused around the INT8 kernel in an exported model, each taken only where it gives the
module's own result: attention's query, key and value in one call on their stacked weights
(`SharedInput`); the residual's add and LayerNorm of BERT-style output blocks inside the kernel;
the FFN's GELU output handed to the next INT8 layer already quantized. `fuse_around_kernels`
applies all three (`load_for_inference(..., fuse=False)` leaves them out)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Iterator

import torch
from torch import nn

from sparse_transfer.inference.kernels import DENSE, KERNELS, SparseLinear, fuses_steps
from sparse_transfer.inference.native import QuantizedActivation


def fuse_around_kernels(model: nn.Module) -> None:
    """Every fusion below, where the model's modules allow it, in place."""
    _share_projection_inputs(model)
    _fuse_output_norms(model)
    _pass_ffn_activations_quantized(model)


class SharedInput:
    """SparseLinear layers that read the same input (attention's query, key and value) and run the
    same kernels: the first of them to see an input runs one kernel call on their stacked weights
    (one quantization and packing of the input instead of one each, more rows per call to split
    among threads), and the others take their columns of its output while their input is the same
    tensor, unchanged (per thread). The first time they are not called on one input (cross-attention:
    keys and values read the encoder's states) each runs on its own from then on."""

    def __init__(self, layers: list[SparseLinear]):
        if not self.can_share(layers):
            raise ValueError("layers that share an input need the same input size and kernels, and no GELU")
        first = layers[0]
        self.layers, self.enabled = layers, True
        self.splits = [layer.out_features for layer in layers]
        with torch.no_grad():
            weight = torch.cat([layer.weight.detach().float() for layer in layers]).contiguous()
            biases = [layer.bias.detach().float() if layer.bias is not None else torch.zeros(layer.out_features)
                      for layer in layers]
        self.bias = torch.cat(biases)
        self._prepared = {name: KERNELS[name].prepare(weight)
                          for name in set(first.kernel_by_tokens.values()) if name != DENSE}
        self._local = threading.local()
        for index, layer in enumerate(layers):
            layer.shared = (self, index)

    @staticmethod
    def can_share(layers: list) -> bool:
        """SparseLinear layers of one input size and plan, none with GELU: what one stacked call serves."""
        first = layers[0]
        return all(isinstance(layer, SparseLinear) and layer.in_features == first.in_features
                   and layer.kernel_by_tokens == first.kernel_by_tokens and not layer.gelu for layer in layers)

    def output(self, x: torch.Tensor, x2d: torch.Tensor, name: str, index: int) -> torch.Tensor | None:
        """Layer `index`'s output (tokens, its out_features) for input `x` (x2d its 2-D view); None
        once the layers turn out not to share inputs (the caller then runs the layer alone)."""
        cached = getattr(self._local, "cached", None)
        if cached is not None and cached["input"] is x and cached["version"] == x._version and index in cached["left"]:
            cached["left"].discard(index)
            if not cached["left"]:
                self._local.cached = None  # every layer served: the memory goes with the last view
            return cached["outputs"][index]
        if cached is not None:  # an input some of them never read: they do not share inputs
            self.enabled, self._local.cached = False, None
            return None
        outputs = KERNELS[name].apply(self._prepared[name], x2d.detach(), self.bias).split(self.splits, dim=1)
        self._local.cached = {"input": x, "version": x._version, "outputs": outputs,
                              "left": set(range(len(self.layers))) - {index}}
        return outputs[index]


PROJECTIONS = [("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"), ("q", "k", "v")]


def _share_projection_inputs(model: nn.Module) -> None:
    """Attention's query, key and value read one input: where all three run the same sparse kernels,
    one call on their stacked weights serves them (`SharedInput`)."""
    for module in model.modules():
        for names in PROJECTIONS:
            layers = [getattr(module, name, None) for name in names]
            if SharedInput.can_share(layers):
                SharedInput(layers)


def _fuse_output_norms(model: nn.Module) -> None:
    """BERT-style output blocks, `LayerNorm(dropout(dense(hidden_states)) + input_tensor)`: where the
    dense layer's kernel can add the residual and normalize inside (INT8), the block's forward lets
    it, in eval mode. A block is fused only where its own forward gives the same result on a probe."""
    for module in model.modules():
        dense, norm = getattr(module, "dense", None), getattr(module, "LayerNorm", None)
        if not (isinstance(dense, SparseLinear) and isinstance(norm, nn.LayerNorm) and not dense.gelu
                and dense.shared is None and norm.normalized_shape == (dense.out_features,)
                and norm.weight is not None and norm.bias is not None
                and list(inspect.signature(module.forward).parameters) == ["hidden_states", "input_tensor"]):
            continue
        fusing = [name for name in set(dense.kernel_by_tokens.values()) if fuses_steps(name)]
        if fusing and _same_as_own_forward(module, fusing[0]):
            module.forward = functools.partial(_fused_output_forward, module, module.forward)


def _pass_ffn_activations_quantized(model: nn.Module) -> None:
    """BERT-style layers (`feed_forward_chunk`: output(intermediate(x), x)) whose FFN runs INT8 kernels
    in and out: the first hands the second its GELU output already quantized per token (UINT8, a
    quarter of the float traffic, quantized while in cache), where the layer's own feed-forward gives
    the same result on a probe."""
    for module in model.modules():
        intermediate, output = getattr(module, "intermediate", None), getattr(module, "output", None)
        producer, consumer = getattr(intermediate, "dense", None), getattr(output, "dense", None)
        if not (callable(getattr(module, "feed_forward_chunk", None)) and isinstance(producer, SparseLinear)
                and isinstance(consumer, SparseLinear) and "forward" in vars(output)):  # the fused output block
            continue
        kernels = [name for name in set(producer.kernel_by_tokens.values()) & set(consumer.kernel_by_tokens.values())
                   if fuses_steps(name)]
        if kernels and _feed_forward_same_when_quantized(module, producer, consumer, kernels[0]):
            producer.quantized_consumer = (consumer,)


@contextlib.contextmanager
def _probing(module: nn.Module, layers: list[SparseLinear], kernel: str, tokens: int) -> Iterator[None]:
    """`module` in eval mode with `layers` planned on `kernel` for `tokens` tokens (the kernel that
    would fuse), as it was afterwards."""
    planned, training = [layer.kernel_by_tokens for layer in layers], module.training
    for layer in layers:
        layer.kernel_by_tokens = {tokens: kernel}
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for layer, plan in zip(layers, planned):
            layer.kernel_by_tokens = plan
        module.train(training)


def _feed_forward_same_when_quantized(module: nn.Module, producer: SparseLinear, consumer: SparseLinear,
                                      kernel: str, tokens: int = 20) -> bool:
    hidden = torch.randn(1, tokens, producer.in_features, generator=torch.Generator().manual_seed(0))
    with _probing(module, [producer, consumer], kernel, tokens):
        try:
            expected = module.feed_forward_chunk(hidden)
            producer.quantized_consumer = (consumer,)
            quantized = module.feed_forward_chunk(hidden)
        except (TypeError, AttributeError, RuntimeError):  # a forward that does more with the FFN's output
            return False
        finally:
            producer.quantized_consumer = ()
    return isinstance(quantized, torch.Tensor) and quantized.shape == expected.shape and \
        torch.allclose(quantized, expected, rtol=1e-4, atol=1e-4)


def _fused_output_forward(module: nn.Module, own_forward, hidden_states: torch.Tensor,
                          input_tensor: torch.Tensor) -> torch.Tensor:
    if not module.training:  # dropout is the identity
        fused = module.dense.residual_norm(hidden_states, input_tensor, module.LayerNorm)
        if fused is not None:
            return fused
    if isinstance(hidden_states, QuantizedActivation):  # the FFN's quantized output, here no INT8 kernel reads it
        hidden_states = hidden_states.dequantize()
    return own_forward(hidden_states, input_tensor)


def _same_as_own_forward(module: nn.Module, kernel: str, tokens: int = 20) -> bool:
    dense = module.dense
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, tokens, dense.in_features, generator=generator)
    residual = torch.randn(1, tokens, dense.out_features, generator=generator)
    with _probing(module, [dense], kernel, tokens):
        expected, fused = module(hidden, residual), dense.residual_norm(hidden, residual, module.LayerNorm)
    return fused is not None and torch.allclose(fused, expected, rtol=1e-4, atol=1e-4)
