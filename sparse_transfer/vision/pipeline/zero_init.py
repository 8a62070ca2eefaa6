"""ZerO initialization (Zhao et al. 2022, "ZerO Initialization: Initializing Neural
Networks with only Zeros and Ones", Algorithms 1 and 2): deterministic weights built
from zeros, ones and a Hadamard matrix, no random numbers at all.

For a weight with `out` outputs and `in` inputs (torch layout [out, in]):

* square (out == in): the identity;
* wide (out < in, the layer narrows): the partial identity [I 0], passing the
  first `out` inputs through;
* tall (out > in, the layer widens): the first `out` rows and `in` columns of the
  Sylvester-Hadamard matrix of size 2^m, m = ceil(log2 out), times 2^(-m/2). A
  partial identity here would leave the extra outputs identical (zero) and their
  symmetry would never break; the Hadamard rows differ from one another.

The 2^(-m/2) scale is the one of the authors' code (jiaweizzhao/ZerO-initialization),
which makes the full Hadamard matrix orthonormal. A Conv2d kernel gets this matrix at
its centre tap and zeros elsewhere (Algorithm 2), so it needs odd kernel sizes.
Biases start at zero; normalisation layers keep their defaults (weight 1, bias 0).
"""

from __future__ import annotations

import math

import torch
from scipy.linalg import hadamard
from torch import nn


def zero_matrix(out_features: int, in_features: int) -> torch.Tensor:
    """The ZerO matrix of a layer with these dimensions (float32, [out, in])."""
    if out_features <= in_features:
        return torch.eye(out_features, in_features)
    m = math.ceil(math.log2(out_features))
    full = torch.from_numpy(hadamard(2**m)).float()
    return full[:out_features, :in_features] * 2 ** (-m / 2)


@torch.no_grad()
def zero_init_(model: nn.Module) -> nn.Module:
    """ZerO-initialize every Linear and Conv2d layer of `model` in place."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(zero_matrix(module.out_features, module.in_features))
        elif isinstance(module, nn.Conv2d):
            height, width = module.kernel_size
            if module.groups != 1 or height % 2 == 0 or width % 2 == 0:
                raise ValueError(
                    f"ZerO init needs ungrouped convolutions with odd kernels, but {name} has kernel "
                    f"{module.kernel_size} and groups={module.groups}; set pipeline.zero_init=false for this model"
                )
            module.weight.zero_()
            module.weight[:, :, height // 2, width // 2] = zero_matrix(module.out_channels, module.in_channels)
        else:
            continue
        if module.bias is not None:
            module.bias.zero_()
    return model
