"""Post-pruning smoothing ("ToST", Jaiswal et al. 2022, "Training Your Sparse Neural
Network Better with Any Mask"), stage 3 of the end-to-end pruning pipeline. Three
options, each switchable and each annealed linearly to the plain network:

* label smoothing: the loss's smoothing goes from `label_smoothing` to 0;
* soft activation: every `nn.ReLU` becomes `SoftReLU`, Swish (SiLU) blended into
  ReLU with a weight that goes from 0 to 1;
* soft skip connection: every prunable layer but the first and the last whose input
  and output can be matched gets an extra identity path `skip_weight * x` (channels
  truncated or zero-padded, as in ZerO's partial identity) going from `skip_weight` to 0.

Annealing ends at the last epoch of `epochs`, which trains the plain network; `remove()`
then puts the original `nn.ReLU` modules back and drops the identity paths, so the
result is an ordinary ReLU network with an unchanged state dict.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SoftReLU(nn.Module):
    """(1 - relu_weight) * SiLU(x) + relu_weight * ReLU(x)."""

    def __init__(self, relu_weight: float = 0.0):
        super().__init__()
        self.relu_weight = relu_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu_weight >= 1.0:  # exactly ReLU, not ReLU plus rounding
            return F.relu(x)
        return torch.lerp(F.silu(x), F.relu(x), self.relu_weight)


def skip_eligible(module: nn.Module) -> bool:
    """Whether an identity path can be added around the layer: a Linear, or a
    stride-1 Conv2d whose padding keeps the spatial size."""
    if isinstance(module, nn.Linear):
        return True
    if not isinstance(module, nn.Conv2d) or module.stride != (1, 1):
        return False
    if isinstance(module.padding, str):
        return module.padding == "same"
    return all(p == d * (k - 1) // 2 for p, d, k in zip(module.padding, module.dilation, module.kernel_size))


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """The partial identity along dim 1: the first `channels`, zero-padded if fewer."""
    if x.shape[1] >= channels:
        return x[:, :channels]
    return F.pad(x.movedim(1, -1), (0, channels - x.shape[1])).movedim(-1, 1)


class Smoothing:
    """The three options on `model` and `loss_fn`, annealed over `epochs` by `set_epoch`;
    `layer_names` are the model's Linear / Conv2d weights in order (first and last
    get no identity path)."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.CrossEntropyLoss,
        layer_names: list[str],
        epochs: int,
        label_smoothing: float = 0.0,
        soft_activation: bool = False,
        skip_weight: float = 0.0,
    ):
        self.model, self.loss_fn, self.epochs = model, loss_fn, epochs
        self.initial = {"label_smoothing": label_smoothing, "skip_weight": skip_weight}
        self.soft_activation = soft_activation
        self.skip_layers = [model.get_submodule(name.removesuffix(".weight")) for name in layer_names[1:-1]]
        self.skip_layers = [layer for layer in self.skip_layers if skip_eligible(layer)] if skip_weight else []
        self.replaced: dict[str, nn.ReLU] = {}
        self.handles: list = []
        self.skip_weight = self.relu_weight = 0.0  # set by set_epoch()

    def attach(self) -> "Smoothing":
        if self.soft_activation:
            for name, module in list(self.model.named_modules()):
                if isinstance(module, nn.ReLU):
                    self.replaced[name] = module
                    self._set_module(name, SoftReLU())
        for layer in self.skip_layers:
            self.handles.append(layer.register_forward_hook(self._identity_path))
        self.set_epoch(0)
        return self

    def set_epoch(self, epoch: int) -> None:
        """Anneal: soft at epoch 0, plain from epoch `epochs - 1` on."""
        plain = min(1.0, epoch / (self.epochs - 1)) if self.epochs > 1 else 1.0
        self.loss_fn.label_smoothing = self.initial["label_smoothing"] * (1 - plain)
        self.skip_weight = self.initial["skip_weight"] * (1 - plain)
        self.relu_weight = plain
        for name in self.replaced:
            self.model.get_submodule(name).relu_weight = plain

    def remove(self) -> None:
        """Back to the plain network: the original ReLUs, no identity paths, no smoothing."""
        for name, relu in self.replaced.items():
            self._set_module(name, relu)
        self.replaced.clear()
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.loss_fn.label_smoothing = 0.0

    def _identity_path(self, module, inputs, output):
        if self.skip_weight == 0.0:  # annealed away: the plain layer's output, bit for bit
            return output
        return output + self.skip_weight * match_channels(inputs[0], output.shape[1])

    def _set_module(self, name: str, module: nn.Module) -> None:
        parent, _, attr = name.rpartition(".")
        setattr(self.model.get_submodule(parent), attr, module)
