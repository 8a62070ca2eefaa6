"""What AC/DC, GMP and RigL share: one `MaskedWeights` over the prunable weights whose
masks they replace, enforce or lift at epoch boundaries, plus the state a resumed run
needs (masks, whether they are enforced, the last compression mask for IoU)."""

from __future__ import annotations

import torch
from torch import nn

from sparse_transfer.masks import MaskedWeights
from sparse_transfer.vision.analysis import mask_iou


class MaskedTraining:
    """Base of the sparse-training methods; `on_epoch_start(epoch)` is theirs to define."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, nn.Parameter]):
        self.optimizer = optimizer
        self.masked = MaskedWeights(model, {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()})
        self.last_compression: dict[str, torch.Tensor] | None = None
        self.last_iou: float | None = None  # IoU of the newest compression mask with the one before

    def on_epoch_start(self, epoch: int) -> None:
        raise NotImplementedError

    def dense_phase(self, epoch: int) -> bool:
        """Whether this epoch trains the full support (AC/DC keeps its best dense model)."""
        return not self.masked.attached

    # -- mask changes ------------------------------------------------------------------

    def enforce(self, masks: dict[str, torch.Tensor], compression: bool = True) -> None:
        """Zero the pruned weights and keep them zero from now on."""
        if compression:
            if self.last_compression is not None:
                self.last_iou = mask_iou(self.last_compression, masks)
            self.last_compression = {name: m.detach().cpu().clone() for name, m in masks.items()}
        self.masked.set_masks(masks)
        self.masked.apply_()
        if not self.masked.attached:
            self.masked.attach(self.optimizer)

    def lift(self) -> None:
        """Free every weight again (a dense phase)."""
        self.masked.detach()
        self.masked.set_masks({name: torch.ones_like(m) for name, m in self.masked.masks.items()})

    @torch.no_grad()
    def reset_momentum(self, where: dict[str, torch.Tensor] | None = None) -> None:
        """Zero the optimizer's momentum, everywhere or at the True positions of `where`."""
        inner = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate wraps it
        if where is None:
            for state in inner.state.values():
                if state.get("momentum_buffer") is not None:
                    state["momentum_buffer"].zero_()
            return
        for name, param in self.masked.weights().items():
            buffer = inner.state.get(param, {}).get("momentum_buffer")
            if buffer is not None:
                buffer[where[name].to(buffer.device)] = 0

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "masks": {name: m.cpu() for name, m in self.masked.masks.items()},
            "enforced": self.masked.attached,
            "last_compression": self.last_compression,
            "last_iou": self.last_iou,
        }

    def load_state_dict(self, state: dict) -> None:
        self.masked.detach()
        self.masked.set_masks(state["masks"])
        self.last_compression, self.last_iou = state["last_compression"], state["last_iou"]
        if state["enforced"]:
            self.masked.attach(self.optimizer)
