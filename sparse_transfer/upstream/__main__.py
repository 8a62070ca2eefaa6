"""Prune a dense pretrained encoder upstream, gradually, with distillation from itself.

    python -m sparse_transfer.upstream --model DENSE --sparsity 0.9 --train_file corpus.txt --output_dir DIR \
        [--recipe recipes/upstream/NAME.yaml] [any TrainingArguments flag]
    accelerate launch -m sparse_transfer.upstream ...        # several GPUs

Precedence: command line > the recipe's `training:` section > defaults. Rerunning the
same command resumes from the last complete checkpoint.
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser, TrainingArguments

from ..arguments import read_arguments_file, with_defaults
from ..errors import exit_status
from .recipe import load_upstream_recipe
from .run import UpstreamArguments, prune_upstream, script_defaults

PROG = "python -m sparse_transfer.upstream"


def parse_arguments(argv: list[str]):
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = read_arguments_file(argv[0])
    parser = HfArgumentParser((UpstreamArguments, TrainingArguments), prog=PROG)
    given, _ = parser.parse_known_args(args=argv)
    recipe = load_upstream_recipe(given.recipe, {
        "pruning": {"sparsity": given.sparsity, "criterion": given.criterion},
        "data": {"max_seq_length": given.max_seq_length},
    })
    run, training_args = parser.parse_args_into_dataclasses(args=with_defaults(argv, script_defaults(recipe)))
    return run, training_args, recipe


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def run() -> None:
        run_args, training_args, recipe = parse_arguments(argv)
        prune_upstream(run_args, training_args, recipe)

    return exit_status(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
