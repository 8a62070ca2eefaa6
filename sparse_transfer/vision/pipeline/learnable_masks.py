"""Learnable sparsity masks (stage 1 of the end-to-end pruning pipeline).

Every selected weight gets a tensor of mask logits; the layer then computes with
`weight * mask`, where in training the mask is a sample of Bernoulli(sigmoid(logits)):

* `straight_through`: a hard 0/1 sample in the forward pass, whose gradient is
  passed to the probabilities as if it were the probabilities themselves;
* `concrete`: a relaxed-Bernoulli (binary Concrete / Gumbel-sigmoid) sample at
  `temperature`, differentiable by reparameterisation.

In evaluation the layer uses the expected mask, `weight * sigmoid(logits)`: the
effective weights that stage 2 prunes by magnitude. The regularizer pulls the expected
density (mean keep probability over all masked weights) toward the target and pushes
every probability toward 0 or 1.

The masks are torch parametrizations, so the layers, the optimizer of the weights and
the model's forward stay as they are; `remove()` turns them back into plain weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import RelaxedBernoulli
from torch.nn.utils import parametrize

from sparse_transfer.selection import resolve_parameter

ESTIMATORS = ("straight_through", "concrete")


class SampledMask(nn.Module):
    """Parametrization `weight -> weight * mask` with learnable mask logits."""

    def __init__(self, shape: torch.Size, keep_probability: float, estimator: str, temperature: float):
        super().__init__()
        self.logits = nn.Parameter(torch.full(shape, math.log(keep_probability / (1 - keep_probability))))
        self.estimator = estimator
        self.temperature = temperature

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        probabilities = torch.sigmoid(self.logits)
        if not self.training:
            return weight * probabilities
        if self.estimator == "straight_through":
            # A diverged run has NaN probabilities: sample 0 there, the NaN loss reports the collapse.
            sample = torch.bernoulli(probabilities.detach().nan_to_num(0.0))
            mask = sample + (probabilities - probabilities.detach())  # value: exactly the sample; gradient: d/dp
        else:
            mask = RelaxedBernoulli(torch.tensor(self.temperature, device=weight.device), logits=self.logits).rsample()
        return weight * mask


class LearnableMasks:
    """Learnable masks on the named weights of `model` (registered on construction)."""

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        keep_probability: float = 0.9,
        estimator: str = "straight_through",
        temperature: float = 0.5,
    ):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown mask estimator {estimator!r}; use one of {ESTIMATORS}")
        if not 0.0 < keep_probability < 1.0:
            raise ValueError(f"the initial keep probability must be in (0, 1), got {keep_probability}")
        self.owners = {name: resolve_parameter(model, name) for name in names}
        self.masks: dict[str, SampledMask] = {}
        for name, (module, attr) in self.owners.items():
            weight = getattr(module, attr)
            self.masks[name] = SampledMask(weight.shape, keep_probability, estimator, temperature).to(weight.device)
            parametrize.register_parametrization(module, attr, self.masks[name])

    def logits(self) -> list[nn.Parameter]:
        return [mask.logits for mask in self.masks.values()]

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {name: torch.sigmoid(mask.logits) for name, mask in self.masks.items()}

    def expected_density(self) -> torch.Tensor:
        """Mean keep probability over every masked weight (differentiable)."""
        probabilities = [p.flatten() for p in self.probabilities().values()]
        return torch.cat(probabilities).mean()

    def regularizer(self, target_density: float, density_weight: float, polarization_weight: float) -> torch.Tensor:
        """density_weight * (expected density - target)^2 + polarization_weight * mean p(1 - p);
        the second term is 0 only when every probability is 0 or 1."""
        probabilities = torch.cat([p.flatten() for p in self.probabilities().values()])
        density_gap = probabilities.mean() - target_density
        return density_weight * density_gap**2 + polarization_weight * (probabilities * (1 - probabilities)).mean()

    @torch.no_grad()
    def effective_weights(self) -> dict[str, torch.Tensor]:
        """weight * keep probability, per masked weight."""
        return {name: self._original(name) * torch.sigmoid(mask.logits) for name, mask in self.masks.items()}

    def _original(self, name: str) -> nn.Parameter:
        module, attr = self.owners[name]
        return module.parametrizations[attr].original

    @torch.no_grad()
    def remove(self) -> dict[str, nn.Parameter]:
        """Drop the masks, leaving each layer a plain weight equal to its effective
        weight (the same Parameter object, so optimizers holding it stay valid)."""
        effective = self.effective_weights()
        weights = {}
        for name, (module, attr) in self.owners.items():
            parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
            weights[name] = getattr(module, attr)
            weights[name].copy_(effective[name])
        self.masks.clear()
        return weights
