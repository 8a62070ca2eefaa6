"""One-shot magnitude pruning of a dense pretrained model, saved as a normal checkpoint.

    sparse-transfer prune --model PATH_OR_NAME --sparsity 0.9 --output DIR [--scope global|per-layer]
        [--max_layer_sparsity 0.99] [--module_types Linear] [--block_path PATH] [--block 1x4]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from sparse_transfer.encoders import copy_tokenizer, find_blocks, load_pretrained
from sparse_transfer.masks import MaskedWeights
from sparse_transfer.pruning import MAX_LAYER_SPARSITY, SCOPES, capped_layers, layer_extremes, magnitude_masks, parse_block
from sparse_transfer.selection import Selection
from sparse_transfer.utils.errors import ConfigurationError, exit_status
from sparse_transfer.utils.io import write_json_atomic

CLI_FLAGS = ("--block_path", "--module_types")


@torch.no_grad()
def prune_model(model, sparsity: float, scope: str = "global", selection: Selection | None = None,
                block: str | int | None = None, max_layer_sparsity: float | None = MAX_LAYER_SPARSITY,
                flags: tuple[str, str] = ("selection.block_path", "selection.module_types")) -> MaskedWeights:
    """Zero the smallest of the selected weights inside the blocks (or the smallest 1xN blocks of
    consecutive input features, `block="1x4"`); with the global scope no layer goes beyond
    `max_layer_sparsity`. `flags` name the two selection settings in errors (`main` passes its
    command-line flags)."""
    selection = selection or Selection()
    path, _ = find_blocks(model, selection.block_path, selection.module_types, flags)
    weights = selection.select(model, within=[path])
    if not weights:
        raise ConfigurationError(f"no {', '.join(selection.module_types)} weight inside {path} matches include "
                                 f"{selection.include} and exclude {selection.exclude}; widen them")
    masks = magnitude_masks(weights, sparsity, scope, parse_block(block), max_layer_sparsity)
    if all(bool(mask.all()) for mask in masks.values()):
        raise ConfigurationError(f"sparsity {sparsity} prunes none of the {sum(w.numel() for w in weights.values())} "
                                 "selected weights; give a larger sparsity")
    masked = MaskedWeights(model, masks)
    masked.apply_()
    return masked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparse-transfer prune", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="hub name or local directory of a dense model")
    parser.add_argument("--sparsity", type=float, required=True, help="fraction of weights to zero, e.g. 0.9")
    parser.add_argument("--output", required=True, help="directory for the pruned checkpoint")
    parser.add_argument("--scope", choices=SCOPES, default="global")
    parser.add_argument("--max_layer_sparsity", type=float, default=MAX_LAYER_SPARSITY,
                        help="global scope: no layer pruned beyond this (layers of smaller weights would otherwise "
                             "empty), the budget goes to the others")
    parser.add_argument("--module_types", nargs="+", default=["Linear"],
                        help="class names of the layers to prune (Linear; Conv1d for SqueezeBERT; Conv1D)")
    parser.add_argument("--block_path", default=None, help="dotted path of the transformer blocks, from the model or "
                        "its base encoder (found automatically)")
    parser.add_argument("--include", nargs="*", default=[], help="prune only layers whose name matches one "
                        "of these regular expressions (e.g. attention)")
    parser.add_argument("--exclude", nargs="*", default=[], help="never prune layers matching these")
    parser.add_argument("--block", default=None, help="1x4: prune blocks of 4 consecutive input features together "
                        "(what INT8 dot-product kernels run fastest); default unstructured")
    args = parser.parse_args(argv)

    def run() -> None:
        if not 0.0 < args.sparsity < 1.0:
            raise ConfigurationError(f"--sparsity must be in (0, 1), got {args.sparsity}")
        if args.scope == "global" and not args.sparsity <= args.max_layer_sparsity < 1.0:
            raise ConfigurationError(f"--max_layer_sparsity must be in [--sparsity, 1), got {args.max_layer_sparsity}")
        if os.path.isdir(args.output) and os.listdir(args.output):
            raise ConfigurationError(f"--output {args.output} is not empty; choose a new directory")
        block = parse_block(args.block)  # before loading: a bad pattern fails at once
        model = load_pretrained(args.model)
        selection = Selection(args.module_types, args.include, args.exclude, args.block_path)
        masked = prune_model(model, args.sparsity, args.scope, selection, block, args.max_layer_sparsity, CLI_FLAGS)
        report = masked.report()
        capped = capped_layers(report, args.max_layer_sparsity, block) if args.scope == "global" else []
        model.save_pretrained(args.output)
        copy_tokenizer(args.model, args.output)
        write_json_atomic(os.path.join(args.output, "sparsity_report.json"), report)
        print(f"zeroed {report['zero_params']} of {report['total_params']} weights "
              f"({100 * report['global_sparsity']:.2f}%), {layer_extremes(report)} -> {args.output}")
        if capped:
            print(f"warning: {len(capped)} of {len(report['layers'])} layers reached --max_layer_sparsity "
                  f"{args.max_layer_sparsity} (their weights are smaller than the rest, e.g. {capped[0]}); "
                  "--scope per-layer prunes every layer alike", file=sys.stderr)

    return exit_status(parser.prog, run)
