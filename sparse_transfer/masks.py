"""Binary weight masks and their exact enforcement (shared by NLP and vision).

A `MaskedWeights` holds one bool mask per selected weight (True = kept). While
attached it enforces the masks three ways, so that pruned weights stay exactly zero
whatever the optimizer, precision or device:

* a forward pre-hook on the model re-zeroes every masked weight in place, on the
  weights' own device, before every forward (nothing leaves the device);
* a hook on each weight zeroes its accumulated gradient at pruned positions, so
  gradient clipping sees only the weights that train and optimizer moments (Adam's
  `exp_avg`, SGD momentum) stay zero there;
* an optimizer step post-hook re-zeroes after every real step (a step skipped by a
  gradient scaler never calls it, and changes nothing either).

Re-zeroing is one fused multiply over all weights (`torch._foreach_mul_`, as torch's
optimizers do) rather than one multiply per weight: a small model's GPU step is bound
by kernel launches and Python calls, and BERT-base has 72 masked weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from sparse_transfer.selection import Selection, resolve_parameter


class MaskedWeights:
    """Bool masks for named weights of `model`, enforced while attached."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        self.model = model
        self.params: dict[str, nn.Parameter] = {}
        self.owners: dict[str, tuple[nn.Module, str]] = {}
        for name in masks:
            module, attr = resolve_parameter(model, name)
            self.params[name] = getattr(module, attr)
            self.owners[name] = (module, attr)
        self.masks: dict[str, torch.Tensor] = {}
        self._multipliers: dict[str, torch.Tensor] = {}
        self.set_masks(masks)
        self._handles: list = []

    @classmethod
    def from_nonzero(
        cls, model: nn.Module, selection: Selection | None = None, within: list[str] | None = None
    ) -> "MaskedWeights":
        """The fixed mask of sparse transfer: the non-zero pattern of the loaded weights."""
        params = (selection or Selection()).select(model, within=within)
        return cls(model, {name: p.detach() != 0 for name, p in params.items()})

    # -- masks -------------------------------------------------------------------------

    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace masks (vision re-computes them at every sparse phase)."""
        for name, mask in masks.items():
            param = self.params[name]
            if mask.shape != param.shape:
                raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight has {tuple(param.shape)}")
            self.masks[name] = mask.to(device=param.device, dtype=torch.bool)
            self._multipliers.pop(name, None)

    def _mask_on_device(self, name: str) -> torch.Tensor:
        # The model may be moved (Trainer / accelerate put it on the GPU after we are
        # built): follow the weight once, then the check is a pointer comparison.
        mask, param = self.masks[name], self.params[name]
        if mask.device != param.device:
            mask = self.masks[name] = mask.to(param.device)
        return mask

    def _multiplier(self, name: str) -> torch.Tensor:
        # The mask as 0/1 in the weight's dtype: multiplying by a bool mask converts it
        # on every call, several times slower than the multiplication itself on CPU.
        param, multiplier = self.params[name], self._multipliers.get(name)
        if multiplier is None or multiplier.device != param.device or multiplier.dtype != param.dtype:
            multiplier = self._multipliers[name] = self._mask_on_device(name).to(param.dtype)
        return multiplier

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero every pruned position in place."""
        if not self.masks:  # the fused multiply refuses empty lists
            return
        # `.data`: the weights' autograd version stays, so a second forward before one
        # backward (its pre-hook re-zeroes again) does not invalidate what the first saved
        torch._foreach_mul_([self._param(name).data for name in self.masks],
                            [self._multiplier(name) for name in self.masks])

    def weights(self) -> dict[str, nn.Parameter]:
        """The masked weights as they are now (mask calculation reads their values)."""
        return {name: self._param(name) for name in self.masks}

    def _param(self, name: str) -> nn.Parameter:
        # Look the parameter up again: loading a checkpoint or `load_state_dict(assign=True)`
        # can replace the Parameter object.
        module, attr = self.owners[name]
        param = self.params[name] = getattr(module, attr)
        return param

    # -- enforcement -------------------------------------------------------------------

    def attach(self, optimizer: torch.optim.Optimizer | None = None) -> "MaskedWeights":
        """Register the forward pre-hook and the gradient hooks (and the optimizer hook)."""
        if self._handles:
            raise RuntimeError("masks are already attached; call detach() first")
        self.apply_()
        self._handles.append(self.model.register_forward_pre_hook(lambda module, args: self.apply_()))
        for name in self.masks:
            self._handles.append(self._param(name).register_post_accumulate_grad_hook(self._gradient_hook(name)))
        if optimizer is not None:
            self.attach_optimizer(optimizer)
        return self

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        # accelerate wraps optimizers; hook the real one, whose step() always runs.
        inner = getattr(optimizer, "optimizer", optimizer)
        self._handles.append(inner.register_step_post_hook(lambda *_: self.apply_()))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _gradient_hook(self, name: str) -> Callable:
        def hook(param):
            param.grad.mul_(self._multiplier(name))  # in place: no second gradient-sized tensor

        return hook

    # -- measurement -------------------------------------------------------------------

    @torch.no_grad()
    def violations(self) -> dict[str, int]:
        """Non-zero values at pruned positions, per weight."""
        return {
            name: int(torch.count_nonzero(self._param(name).detach()[~self._mask_on_device(name)]))
            for name in self.masks
        }

    def verify(self) -> int:
        """Total number of non-zero values at pruned positions (must be 0)."""
        return sum(self.violations().values())

    def mask_sparsity(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        kept = sum(int(m.sum()) for m in self.masks.values())
        return 1.0 - kept / total if total else 0.0

    def mask_hash(self) -> str:
        """sha256 over the names and bit-packed masks, in model order."""
        digest = hashlib.sha256()
        for name, mask in self.masks.items():
            digest.update(name.encode())
            digest.update(np.packbits(mask.detach().cpu().numpy().ravel()).tobytes())
        return digest.hexdigest()

    @torch.no_grad()
    def report(self, group_of: Callable[[str], str | None] | None = None) -> dict:
        """Sparsity report: global, per layer, per group (e.g. transformer block)."""
        violations = self.violations()
        layers, groups = {}, {}
        total = zeros = 0
        for name in self.masks:
            param = self._param(name).detach()
            numel = param.numel()
            layer_zeros = numel - int(torch.count_nonzero(param))
            pruned = numel - int(self.masks[name].sum())
            layers[name] = {
                "shape": list(param.shape),
                "numel": numel,
                "zeros": layer_zeros,
                "pruned": pruned,
                "sparsity": layer_zeros / numel,
                "violations": violations[name],
            }
            total += numel
            zeros += layer_zeros
            group = group_of(name) if group_of else None
            if group is not None:
                entry = groups.setdefault(group, {"numel": 0, "zeros": 0})
                entry["numel"] += numel
                entry["zeros"] += layer_zeros
        for entry in groups.values():
            entry["sparsity"] = entry["zeros"] / entry["numel"]
        return {
            "global_sparsity": zeros / total if total else 0.0,
            "mask_sparsity": self.mask_sparsity(),
            "total_params": total,
            "zero_params": zeros,
            "num_masked_weights": len(self.masks),
            "mask_violations": sum(violations.values()),
            "mask_sha256": self.mask_hash(),
            "blocks": groups,
            "layers": layers,
        }
