"""Starting weights (`model.weights: FILE`): a `.safetensors` file, or a torch state dict read
with `torch.load(weights_only=True)`, so that a weights file never runs code. A checkpoint
of this toolkit (`final.pt`, `best_dense.pt`, or `checkpoint.pt`, whose `model` entry is
used) loads as it is. Every key must fit the model except the classifier's, which is
skipped where the model's new classifier has another shape (or always, for a new task)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from sparse_transfer.utils.errors import ConfigurationError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"model.weights {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError) as problem:
        raise ConfigurationError(f"{path} is neither a safetensors file nor a state dict that loads with "
                                 f"weights_only=True (a weights file never runs code): {_reason(problem)}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a training checkpoint
        state = state["model"]
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigurationError(f"{path} holds no state dict (name -> tensor); save model.state_dict()")
    return state


def _reason(problem: Exception) -> str:
    """The informative line of a loading error (torch's weights-only refusal is a page)."""
    text = str(problem)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        return f"{marker} {detail[0] if detail else ''}".strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(problem).__name__


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, classifier: str,
                 new_classifier: bool = False) -> None:
    """Load `state` into `model`; the classifier's keys are skipped where their shapes differ
    or when `new_classifier`. Anything else that does not fit is a one-line error."""
    own = model.state_dict()
    head = f"{classifier}."
    skipped = {k for k in state
               if k.startswith(head) and (new_classifier or k not in own or state[k].shape != own[k].shape)}
    kept = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in kept and not (k.startswith(head) and skipped)]
    unexpected = [k for k in kept if k not in own]
    shapes = [f"{k} {tuple(kept[k].shape)} in the file, {tuple(own[k].shape)} in the model"
              for k in kept if k in own and kept[k].shape != own[k].shape]
    problems = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shapes", shapes))
                if keys]
    if problems:
        raise ConfigurationError(f"{path} does not fit the model ({type(model).__name__}): {'; '.join(problems)}; "
                                 "give the model.name (and data.channels) the weights were trained with")
    model.load_state_dict(kept, strict=False)
