"""How the toolkit reads a Hugging Face encoder: where its transformer blocks are, how a
checkpoint loads with its own head, and its tokenizer copied beside a model the toolkit
writes. Every workflow (transfer, upstream, one-shot pruning, export) reads models here."""

from __future__ import annotations

import sys

import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from sparse_transfer.utils.errors import ConfigurationError


class UnknownArchitectureError(ConfigurationError):
    pass


def find_blocks(model: nn.Module, block_path: str | None = None) -> tuple[str, nn.ModuleList]:
    """The stack of transformer blocks: an explicit dotted path, or else the longest
    `nn.ModuleList` of identical modules that contain Linear layers (BERT, RoBERTa,
    DistilBERT, ELECTRA, MiniLM, ... encoders)."""
    if block_path:
        try:
            blocks = model.get_submodule(block_path)
        except AttributeError:
            blocks = None
        if not isinstance(blocks, nn.ModuleList):
            raise UnknownArchitectureError(
                f"block_path {block_path!r} is not an nn.ModuleList in {type(model).__name__}; "
                "give the dotted name of the module list that holds the transformer blocks"
            )
        return block_path, blocks
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(block) for block in module}) != 1:
            continue
        if not any(isinstance(m, nn.Linear) for m in module[0].modules()):
            continue
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    if best is None:
        raise UnknownArchitectureError(
            f"cannot find the transformer blocks of {type(model).__name__}: no nn.ModuleList of identical "
            "blocks with Linear layers; set `block_path` in the recipe's schedule section "
            "(e.g. block_path: bert.encoder.layer)"
        )
    return best


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
