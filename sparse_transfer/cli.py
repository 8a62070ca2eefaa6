"""The `sparse-transfer` command: one subcommand per workflow, each the same as its
`python -m` form.

    sparse-transfer glue --task rte ...            python -m sparse_transfer.transfer (run_glue.py)
    sparse-transfer prune --model M --sparsity 0.9 --output DIR
    sparse-transfer upstream --model M --train_file corpus.txt --output_dir DIR
    sparse-transfer export --model DIR --output DIR
    sparse-transfer vision --recipe fashion_mnist_acdc
    sparse-transfer vision-images fashion_mnist DIR --classes 5-9   real images as an image folder
    sparse-transfer example-data DIR               a small sentiment task: DIR/train.csv, DIR/dev.csv
    sparse-transfer recipes                        the shipped recipes, by workflow
"""

from __future__ import annotations

import importlib
import sys

from sparse_transfer.utils.typed_config import recipe_names

# subcommand -> (module with main(argv), what it does); imported only when chosen
COMMANDS = {
    "glue": ("sparse_transfer.transfer.run", "sparse transfer to a GLUE task or your own files (the main job)"),
    "prune": ("sparse_transfer.upstream.oneshot", "one-shot magnitude pruning of a dense model"),
    "upstream": ("sparse_transfer.upstream.run", "gradual upstream pruning with distillation on unlabeled text"),
    "export": ("sparse_transfer.inference.export", "a sparse checkpoint planned for fast CPU inference"),
    "vision": ("sparse_transfer.vision.train", "AC/DC, AC/DC++, GMP, RigL, the pruning pipeline or sparse transfer "
               "on images"),
    "vision-images": ("sparse_transfer.vision.write_images", "write Fashion-MNIST classes as an image folder"),
    "example-data": ("sparse_transfer.transfer.example_data", "write a small sentiment task for a first offline run"),
}
RECIPE_KINDS = ("transfer", "upstream", "vision")


def usage() -> str:
    lines = ["usage: sparse-transfer COMMAND [arguments]   (COMMAND --help for its arguments)", "", "commands:"]
    lines += [f"  {name:<13} {about}" for name, (_, about) in COMMANDS.items()]
    lines.append(f"  {'recipes':<13} list the shipped recipes (give them to --recipe by name)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "recipes":
        for kind in RECIPE_KINDS:
            print(f"{kind}: {', '.join(recipe_names(kind))}")
        return 0
    if command not in COMMANDS:
        print(f"sparse-transfer: error: unknown command {command!r}; use one of {', '.join(COMMANDS)} or recipes",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if command == "glue":
        return module.main(rest, prog="sparse-transfer glue")
    return module.main(rest)

