"""`sparse-transfer vision-images fashion_mnist DIR [--classes 5-9]`: write real Fashion-MNIST
images (the idx files of Debian's `dataset-fashion-mnist`) as an image folder,
`DIR/train/<label>-<name>/<index>.png` and `DIR/val/...` (the test set), lossless 28x28 grey
PNGs. A few classes and a per-class count give a small own-images task offline, read back by
`data.dataset: imagefolder`."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from sparse_transfer.utils.arguments import int_list
from sparse_transfer.utils.errors import ConfigurationError, exit_status
from sparse_transfer.vision.data import FASHION_MNIST_DIR, read_idx

FASHION_MNIST_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle-boot"]


def parse_classes(text: str) -> list[int]:
    """`5-9` or `0,2,4` -> class indices."""
    classes = int_list(text)
    if not classes or not all(0 <= c < len(FASHION_MNIST_CLASSES) for c in classes):
        raise ConfigurationError(f"--classes {text!r} is not a range (5-9) or a list (0,2,4) of Fashion-MNIST "
                                 "classes 0-9")
    return classes


def write_fashion_mnist(out: str | Path, classes: list[int], train_per_class: int = 0, val_per_class: int = 0,
                        root: str | Path = FASHION_MNIST_DIR) -> dict[str, int]:
    """The images of `classes` (the first N of each per split; 0 = all); returns counts per split."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigurationError(f"{out} is not empty; give a new folder")
    counts = {}
    for split, prefix, limit in (("train", "train", train_per_class), ("val", "t10k", val_per_class)):
        images = read_idx(Path(root) / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(Path(root) / f"{prefix}-labels-idx1-ubyte.gz")
        written = {c: 0 for c in classes}
        for index, (image, label) in enumerate(zip(images, labels)):
            label = int(label)
            if label not in written or (limit and written[label] >= limit):
                continue
            folder = out / split / f"{label}-{FASHION_MNIST_CLASSES[label]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(folder / f"{index:05d}.png")
            written[label] += 1
        counts[split] = sum(written.values())
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparse-transfer vision-images", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["fashion_mnist"])
    parser.add_argument("out", help="a new folder: OUT/train/<class>/ and OUT/val/<class>/")
    parser.add_argument("--classes", default="0-9", help="a range (5-9) or a list (0,2,4)")
    parser.add_argument("--train-per-class", type=int, default=0, help="the first N of each class (0 = all)")
    parser.add_argument("--val-per-class", type=int, default=0)
    parser.add_argument("--root", default=FASHION_MNIST_DIR, help="the folder of the idx files")
    args = parser.parse_args(argv)

    def run() -> None:
        counts = write_fashion_mnist(args.out, parse_classes(args.classes), args.train_per_class,
                                     args.val_per_class, args.root)
        print(f"wrote {counts['train']} training and {counts['val']} validation images to {args.out}")

    return exit_status(parser.prog, run)
