"""Sparse transfer of vision models (`kind: transfer`; 2308.02060 measures it for AC/DC++):
start from a checkpoint (one this toolkit wrote, or any state dict with zeros), give it a new
classifier for the new classes and train it on the new dataset in one of two regimes:

* `transfer.mode: linear`: only the new classifier trains; every other parameter is frozen
  and the body stays in evaluation mode (BatchNorm statistics and dropout included), so the
  features are exactly the checkpoint's;
* `transfer.mode: full`: every weight trains while the checkpoint's zeros stay exactly zero:
  a `FixedMask` holds their non-zero pattern in the same `MaskedWeights` as AC/DC, enforced
  from the first epoch and never changed. The new classifier is dense.

The checkpoint's zeros are checked when it is loaded, before the run writes anything: each
prunable weight's zero pattern in the file must be the model's after loading, and with
`transfer.sparse: true` (the default) the prunable weights must hold zeros. The run itself is
`train.py`'s: the same logs, plots, checkpoints and resume.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.vision.masked_training import MaskedTraining
from sparse_transfer.vision.models import classifier_name, model_for, replace_classifier
from sparse_transfer.vision.sparsity import prunable_weights
from sparse_transfer.vision.weights import load_weights, read_state_dict


class FixedMask(MaskedTraining):
    """The non-zero pattern of `weights` as they are now, enforced from epoch 0 (when the
    weights train) and never changed."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, nn.Parameter],
                 trains_weights: bool = True):
        super().__init__(model, optimizer, weights)
        self.masked.set_masks({name: w.detach() != 0 for name, w in weights.items()})
        self.trains_weights = trains_weights  # linear transfer: frozen weights take no gradient hooks

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == 0 and self.trains_weights:
            self.enforce(dict(self.masked.masks), compression=False)

    def dense_phase(self, epoch: int) -> bool:
        return False


def body_weights(model: nn.Module, first_last_dense: bool = False) -> dict[str, nn.Parameter]:
    """The prunable weights that came from the checkpoint: all but the new classifier."""
    head = f"{classifier_name(model)}."
    return {name: w for name, w in prunable_weights(model, first_last_dense).items() if not name.startswith(head)}


def start_transfer(recipe, data) -> tuple[nn.Module, nn.Module]:
    """The model with the checkpoint loaded and a new classifier, and the module whose
    parameters the optimizer trains (the classifier in linear mode, else the model)."""
    model = model_for(recipe.model, data)
    head = replace_classifier(model, data.num_classes, always=True)
    path = recipe.model.weights
    state = read_state_dict(path)
    load_weights(model, state, path, head, new_classifier=True)
    check_zeros(state, body_weights(model, recipe.sparsity.first_last_dense), path, recipe.transfer.sparse)
    if recipe.transfer.mode == "linear":
        freeze_all_but(model, head)
        return model, model.get_submodule(head)
    return model, model


@torch.no_grad()
def check_zeros(state: dict[str, torch.Tensor], weights: dict[str, nn.Parameter], path, sparse: bool) -> int:
    """The number of zeros the checkpoint brings; one-line errors where its zeros did not
    survive loading, or where `sparse` and there are none."""
    zeros = 0
    for name, weight in weights.items():
        in_file, loaded = state[name] == 0, weight.detach() == 0
        if not torch.equal(in_file.cpu(), loaded.cpu()):
            raise ConfigurationError(
                f"{path}: the zeros of {name} do not survive loading ({int(in_file.sum())} in the file, "
                f"{int(loaded.sum())} in the model); load it into the architecture that wrote it"
            )
        zeros += int(loaded.sum())
    if sparse and not zeros:
        total = sum(w.numel() for w in weights.values())
        raise ConfigurationError(f"{path} has no zero in its {total} prunable weights; give a sparse checkpoint, or "
                                 "set transfer.sparse=false to transfer a dense one")
    return zeros


def freeze_all_but(model: nn.Module, head: str) -> None:
    """Only the `head` module trains: every other parameter is frozen and, whatever
    `model.train()` is asked, every other module stays in evaluation mode."""
    classifier = model.get_submodule(head)
    for param in model.parameters():
        param.requires_grad_(False)
    for param in classifier.parameters():
        param.requires_grad_(True)

    def train(self, mode: bool = True):
        nn.Module.train(self, False)
        classifier.train(mode)
        return self

    model.train = types.MethodType(train, model)
