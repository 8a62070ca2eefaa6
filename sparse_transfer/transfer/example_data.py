"""A small English sentiment task written on the spot, so that a first run needs neither
the hub nor a download: short reviews built from templates and word lists, labelled
`positive` / `negative`, with negations ("not good") that flip the label, so that the
task needs more than a word list. `sparse-transfer example-data DIR` writes `train.csv`
and `dev.csv` (columns `sentence`, `label`) for `sparse-transfer glue --train_file ...`."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from sparse_transfer.utils.errors import ConfigurationError, exit_status
from sparse_transfer.utils.io import write_csv

POSITIVE = ["good", "great", "lovely", "wonderful", "brilliant", "charming", "delightful", "moving", "superb", "fine"]
NEGATIVE = ["bad", "awful", "dull", "boring", "terrible", "clumsy", "tedious", "weak", "poor", "dreadful"]
SUBJECTS = ["the film", "the story", "the acting", "the music", "this book", "the ending", "the cast", "the script",
            "the show", "the direction", "the dialogue", "this album"]
INTENSIFIERS = ["", "", "really ", "truly ", "quite ", "rather ", "very "]
TEMPLATES = ["{subject} was {word}.", "{subject} is {word}.", "i found {subject} {word}.",
             "honestly , {subject} felt {word}.", "{subject} seemed {word} to me."]


def example_sentence(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    negated = rng.random() < 0.3  # "not good" is negative, "not bad" positive
    words = POSITIVE if positive != negated else NEGATIVE
    word = ("not " if negated else rng.choice(INTENSIFIERS)) + rng.choice(words)
    sentence = rng.choice(TEMPLATES).format(subject=rng.choice(SUBJECTS), word=word)
    return sentence, "positive" if positive else "negative"


def write_example_task(directory: str | Path, train_size: int = 2000, dev_size: int = 500, seed: int = 0) -> list[Path]:
    """`train.csv` and `dev.csv` in `directory`; the same files for the same seed."""
    if train_size < 2 or dev_size < 2:
        raise ConfigurationError(f"the example task needs at least 2 training and 2 dev rows, got {train_size} and "
                                 f"{dev_size}")
    rng = random.Random(seed)
    paths = []
    for name, size in (("train.csv", train_size), ("dev.csv", dev_size)):
        rows = [dict(zip(("sentence", "label"), example_sentence(rng))) for _ in range(size)]
        path = Path(directory) / name
        write_csv(rows, path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparse-transfer example-data", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where train.csv and dev.csv are written")
    parser.add_argument("--train_size", type=int, default=2000)
    parser.add_argument("--dev_size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def run() -> None:
        for path in write_example_task(args.directory, args.train_size, args.dev_size, args.seed):
            print(f"wrote {path}")

    return exit_status(parser.prog, run)
