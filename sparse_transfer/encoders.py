"""How the toolkit reads a Hugging Face encoder: where its transformer blocks are, how a
checkpoint loads with its own head, and its tokenizer copied beside a model the toolkit
writes. Every workflow (transfer, upstream, one-shot pruning, export) reads models here."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from sparse_transfer.utils.errors import ConfigurationError


class UnknownArchitectureError(ConfigurationError):
    pass


def find_blocks(model: nn.Module, block_path: str | None = None, module_types: Sequence[str] = ("Linear",),
                flags: tuple[str, str] = ("block_path", "module_types")) -> tuple[str, nn.ModuleList]:
    """The stack of transformer blocks, as (its dotted name in `model`, the module list).

    `block_path` is dotted from `model` or from its base encoder: for a
    BertForSequenceClassification `bert.encoder.layer` and `encoder.layer` name the same list,
    so one path serves a checkpoint with or without a head. Left empty, the blocks are the
    longest outermost `nn.ModuleList` of identical modules holding weights of `module_types`
    (BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa, MPNet, ModernBERT, MiniLM, ...).
    `flags` are how the caller's user sets the two (`--block_path` on a command line,
    `mask.block_path` in a recipe), for the advice in errors."""
    path_flag, types_flag = flags
    if block_path:
        for candidate in _spellings(model, block_path):
            blocks = _submodule(model, candidate)
            if isinstance(blocks, nn.ModuleList) and len(blocks):
                _check_weight_types(candidate, blocks, module_types, types_flag)
                return candidate, blocks
        raise UnknownArchitectureError(
            f"block path {block_path!r} is not a module list in {type(model).__name__}; set {path_flag} to the "
            f"dotted name of the list of transformer blocks{_lists_hint(model)}")
    found = [(name, blocks) for name, blocks in _block_lists(model) if _weight_types(blocks) & set(module_types)]
    outermost = [(name, blocks) for name, blocks in found
                 if not any(name.startswith(other + ".") for other, _ in found)]
    if not outermost:
        other_types = sorted(set().union(*(_weight_types(blocks) for _, blocks in _block_lists(model))))
        advice = (f"its blocks hold {', '.join(other_types)} weights: set {types_flag} to {' '.join(other_types)}, "
                  "or " if other_types else "")
        raise UnknownArchitectureError(
            f"cannot find the transformer blocks of {type(model).__name__}: no list of identical blocks holds "
            f"{', '.join(module_types)} weights; {advice}set {path_flag} to the dotted name of the blocks' list"
            f"{_lists_hint(model)}")
    return max(outermost, key=lambda entry: len(entry[1]))


def _spellings(model: nn.Module, block_path: str) -> list[str]:
    """`block_path` as written, and as the same list seen from the head model or the base encoder."""
    prefix = getattr(model, "base_model_prefix", "")
    spellings = [block_path]
    if prefix and isinstance(getattr(model, prefix, None), nn.Module):
        spellings.append(f"{prefix}.{block_path}")  # given from the base encoder, model has a head
    elif prefix and block_path.startswith(prefix + "."):
        spellings.append(block_path[len(prefix) + 1:])  # given from a head model, model is the base encoder
    return spellings


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """Every non-empty `nn.ModuleList` of modules of one class, in model order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.ModuleList) and len(module) and len({type(block) for block in module}) == 1]


def _weight_types(blocks: nn.Module) -> set[str]:
    """The class names of the modules in `blocks` that own a prunable `weight` (not a
    normalisation layer's scale nor an embedding table)."""
    return {type(module).__name__ for module in blocks.modules()
            if isinstance(getattr(module, "weight", None), nn.Parameter) and not _never_pruned(module)}


def _never_pruned(module: nn.Module) -> bool:
    return isinstance(module, nn.Embedding) or any("Norm" in cls.__name__ for cls in type(module).__mro__)


def _check_weight_types(path: str, blocks: nn.ModuleList, module_types: Sequence[str], types_flag: str) -> None:
    held = _weight_types(blocks)
    if not held & set(module_types):
        others = sorted(held)
        advice = f"set {types_flag} to {' '.join(others)}" if others else "they hold no weight to prune"
        raise UnknownArchitectureError(
            f"the blocks at {path} hold no {', '.join(module_types)} weights; "
            f"{advice}")


def _lists_hint(model: nn.Module) -> str:
    lists = [f"{name} ({len(blocks)})" for name, blocks in _block_lists(model)][:4]
    return f" (module lists here: {', '.join(lists)})" if lists else ""


def load_pretrained(name_or_path: str, **kwargs):
    """The checkpoint's own architecture (keeps e.g. an MLM head), else the bare encoder;
    `kwargs` go to `from_pretrained`."""
    config = AutoConfig.from_pretrained(name_or_path)
    architecture = (config.architectures or [None])[0]
    model_class = getattr(transformers, architecture, None) if architecture else None
    return (model_class or AutoModel).from_pretrained(name_or_path, **kwargs)


def copy_tokenizer(source: str, output: str) -> None:
    """Save `source`'s tokenizer beside a model written to `output` (a warning if it has none)."""
    try:
        AutoTokenizer.from_pretrained(source).save_pretrained(output)
    except (OSError, ValueError) as error:
        print(f"warning: no tokenizer saved ({error})", file=sys.stderr)


def embedding_path(model: nn.Module, block_path: str) -> list[str]:
    """The weights on the embedding path as a user reads it: every lookup table and projection
    matrix of the input-embedding module (`bert.embeddings`, including MobileBERT's
    `embedding_transformation`), and the Linear layers outside the blocks named for the
    embeddings (ELECTRA's `embeddings_project`, ALBERT's `embedding_hidden_mapping_in`), which
    map the embeddings into the blocks' width. Its biases and LayerNorms are not included."""
    table = model.get_input_embeddings()
    owner = next((name.rpartition(".")[0] for name, module in model.named_modules() if module is table), None)
    names = []
    for name, module in model.named_modules():
        if name.startswith(block_path + ".") or not isinstance(module, (nn.Embedding, nn.Linear)):
            continue
        in_owner = module is table or (bool(owner) and name.startswith(owner + "."))
        if in_owner or (isinstance(module, nn.Linear) and "embed" in name.rpartition(".")[2]):
            names.append(f"{name}.weight")
    return names


def shared_blocks(model: nn.Module, blocks: nn.ModuleList) -> str | None:
    """A note when the model runs its blocks more often than it has them (ALBERT shares one
    block across its 12 layers): then a stage plan unfreezes blocks, not layers."""
    layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if isinstance(layers, int) and layers > len(blocks):
        return (f"{type(model).__name__} runs {len(blocks)} block(s) of shared weights for its {layers} layers: "
                f"the stage plan unfreezes those {len(blocks)}, and each trains every layer that shares it")
    return None
