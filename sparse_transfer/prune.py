"""One-shot magnitude pruning of a dense pretrained model, saved as a normal checkpoint.

    python -m sparse_transfer.prune --model PATH_OR_NAME --sparsity 0.9 --output DIR [--scope global|per-layer]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoTokenizer

from .masks import MaskedWeights
from .pruning import SCOPES, magnitude_masks
from .selection import Selection
from .unfreezing import find_blocks


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


@torch.no_grad()
def prune_model(model, sparsity: float, scope: str = "global", selection: Selection | None = None,
                block_path: str | None = None) -> MaskedWeights:
    """Zero the smallest weights among the selected Linear weights of the blocks."""
    path, _ = find_blocks(model, block_path)
    weights = (selection or Selection()).select(model, within=[path])
    masks = magnitude_masks(weights, sparsity, scope)
    masked = MaskedWeights(model, masks)
    masked.apply_()
    return masked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse_transfer.prune", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="hub name or local directory of a dense model")
    parser.add_argument("--sparsity", type=float, required=True, help="fraction of weights to zero, e.g. 0.9")
    parser.add_argument("--output", required=True, help="directory for the pruned checkpoint")
    parser.add_argument("--scope", choices=SCOPES, default="global")
    parser.add_argument("--block_path", default=None, help="dotted path of the transformer blocks (auto)")
    parser.add_argument("--include", nargs="*", default=[], help="prune only Linear layers whose name matches one "
                        "of these regular expressions (e.g. attention)")
    parser.add_argument("--exclude", nargs="*", default=[], help="never prune layers matching these")
    args = parser.parse_args(argv)
    if not 0.0 <= args.sparsity < 1.0:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if os.path.isdir(args.output) and os.listdir(args.output):
        parser.error(f"--output {args.output} is not empty; choose a new directory")
    model = load_pretrained(args.model)
    selection = Selection(include=args.include, exclude=args.exclude)
    masked = prune_model(model, args.sparsity, args.scope, selection=selection, block_path=args.block_path)
    model.save_pretrained(args.output)
    copy_tokenizer(args.model, args.output)
    report = masked.report()
    with open(os.path.join(args.output, "sparsity_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(
        f"zeroed {report['zero_params']} of "
        f"{report['total_params']} weights ({100 * report['global_sparsity']:.2f}%) -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
