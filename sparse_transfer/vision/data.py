"""Datasets: Fashion-MNIST from the original idx files (Debian `dataset-fashion-mnist`),
CIFAR-10/100 through torchvision, ImageNet through an ImageFolder directory, and the user's
own images (`imagefolder`, `hf`: datasets.py)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from sparse_transfer.utils.errors import ConfigurationError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Datasets:
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int  # of the validation images, for FLOP counts
    classes: list[str] | None = None  # own images: the class names, in label order
    mean: list[float] | None = None  # own images: the normalisation used (given or computed)
    std: list[float] | None = None


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an idx file (gzip or plain): two zero bytes, a type code, the rank, then
    big-endian int32 dimensions and the data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    rank = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=rank, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def fashion_mnist(root: str | Path = FASHION_MNIST_DIR, train: bool = True, limit: int = 0) -> TensorDataset:
    """Normalised [N, 1, 28, 28] float images and int64 labels, held in memory;
    `limit` keeps the first N samples (the files are not ordered by class)."""
    prefix = "train" if train else "t10k"
    images = read_idx(Path(root) / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(Path(root) / f"{prefix}-labels-idx1-ubyte.gz")
    if limit:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.copy()).float().div_(255).sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
    return TensorDataset(x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagenet", "imagefolder", "hf")


def build_datasets(config, seed: int = 0) -> Datasets:
    """The datasets of a recipe's `data` section (`DataConfig`); `seed` draws the own images'
    validation hold-out and statistics sample. Bad input fails here, before a run writes anything."""
    dataset, root, train_size = config.dataset, config.root, config.train_size
    if dataset == "fashion_mnist":
        root = root or FASHION_MNIST_DIR
        train, val = fashion_mnist(root, True, config.train_subset), fashion_mnist(root, False, config.val_subset)
        return Datasets(train, val, 10, 1, 28)
    from torchvision import datasets, transforms  # torchvision is the `vision` extra

    from sparse_transfer.vision.datasets import hf_images, image_folder

    if dataset in ("imagefolder", "hf"):
        train, val, classes, stats = (image_folder if dataset == "imagefolder" else hf_images)(config, seed)
        result = Datasets(train, val, len(classes), stats.channels, stats.size, classes, stats.mean, stats.std)
    elif dataset in ("cifar10", "cifar100"):
        normalize = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
        augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        cls = datasets.CIFAR10 if dataset == "cifar10" else datasets.CIFAR100
        to_input = [transforms.ToTensor(), normalize]
        train = cls(root, train=True, download=config.download, transform=transforms.Compose([*augment, *to_input]))
        val = cls(root, train=False, download=config.download, transform=transforms.Compose(to_input))
        result = Datasets(train, val, 10 if dataset == "cifar10" else 100, 3, 32)
    elif dataset == "imagenet":
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_tf = [transforms.RandomResizedCrop(train_size), transforms.RandomHorizontalFlip()]
        val_tf = [transforms.Resize(256), transforms.CenterCrop(224)]  # 0.875 crop ratio
        to_input = [transforms.ToTensor(), normalize]
        train = datasets.ImageFolder(Path(root) / "train", transforms.Compose([*train_tf, *to_input]))
        val = datasets.ImageFolder(Path(root) / "val", transforms.Compose([*val_tf, *to_input]))
        result = Datasets(train, val, len(train.classes), 3, 224)
    else:
        raise ConfigurationError(f"unknown data.dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    drawn = seed if dataset in ("imagefolder", "hf") else None  # own images sorted by class: a seeded draw
    result.train = subset(result.train, config.train_subset, drawn)
    result.val = subset(result.val, config.val_subset, drawn)
    return result


def subset(dataset: Dataset, size: int, seed: int | None) -> Dataset:
    """The first `size` samples (all when 0), or `size` drawn with `seed` (kept in order)."""
    if not size or size >= len(dataset):
        return dataset
    if seed is None:
        return Subset(dataset, range(size))
    drawn = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]
    return Subset(dataset, sorted(drawn.tolist()))
