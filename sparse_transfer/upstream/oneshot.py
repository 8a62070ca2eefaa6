"""One-shot magnitude pruning of a dense pretrained model, saved as a normal checkpoint.

    sparse-transfer prune --model PATH_OR_NAME --sparsity 0.9 --output DIR [--scope global|per-layer]
"""

from __future__ import annotations

import argparse
import os

import torch

from sparse_transfer.encoders import copy_tokenizer, find_blocks, load_pretrained
from sparse_transfer.masks import MaskedWeights
from sparse_transfer.pruning import SCOPES, magnitude_masks, parse_block
from sparse_transfer.selection import Selection
from sparse_transfer.utils.errors import ConfigurationError, exit_status
from sparse_transfer.utils.io import write_json_atomic


@torch.no_grad()
def prune_model(model, sparsity: float, scope: str = "global", selection: Selection | None = None,
                block_path: str | None = None, block: str | int | None = None) -> MaskedWeights:
    """Zero the smallest weights among the selected Linear weights of the blocks (or the smallest
    1xN blocks of consecutive input features, `block="1x4"`)."""
    path, _ = find_blocks(model, block_path)
    weights = (selection or Selection()).select(model, within=[path])
    masks = magnitude_masks(weights, sparsity, scope, parse_block(block))
    masked = MaskedWeights(model, masks)
    masked.apply_()
    return masked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparse-transfer prune", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="hub name or local directory of a dense model")
    parser.add_argument("--sparsity", type=float, required=True, help="fraction of weights to zero, e.g. 0.9")
    parser.add_argument("--output", required=True, help="directory for the pruned checkpoint")
    parser.add_argument("--scope", choices=SCOPES, default="global")
    parser.add_argument("--block_path", default=None, help="dotted path of the transformer blocks (auto)")
    parser.add_argument("--include", nargs="*", default=[], help="prune only Linear layers whose name matches one "
                        "of these regular expressions (e.g. attention)")
    parser.add_argument("--exclude", nargs="*", default=[], help="never prune layers matching these")
    parser.add_argument("--block", default=None, help="1x4: prune blocks of 4 consecutive input features together "
                        "(what INT8 dot-product kernels run fastest); default unstructured")
    args = parser.parse_args(argv)

    def run() -> None:
        if not 0.0 <= args.sparsity < 1.0:
            raise ConfigurationError(f"--sparsity must be in [0, 1), got {args.sparsity}")
        if os.path.isdir(args.output) and os.listdir(args.output):
            raise ConfigurationError(f"--output {args.output} is not empty; choose a new directory")
        block = parse_block(args.block)  # before loading: a bad pattern fails at once
        model = load_pretrained(args.model)
        selection = Selection(include=args.include, exclude=args.exclude)
        masked = prune_model(model, args.sparsity, args.scope, selection=selection, block_path=args.block_path,
                             block=block)
        model.save_pretrained(args.output)
        copy_tokenizer(args.model, args.output)
        report = masked.report()
        write_json_atomic(os.path.join(args.output, "sparsity_report.json"), report)
        print(f"zeroed {report['zero_params']} of {report['total_params']} weights "
              f"({100 * report['global_sparsity']:.2f}%) -> {args.output}")

    return exit_status(parser.prog, run)
