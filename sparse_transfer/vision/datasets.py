"""Own images: any folder of class sub-folders (`data.dataset: imagefolder`, read by torchvision's
`ImageFolder`) or any Hugging Face `datasets` image dataset (`data.dataset: hf`: a local
`imagefolder`, Parquet or Arrow directory, a `save_to_disk` directory, or a hub name online).

Splits: `ROOT/train/<class>/` and `ROOT/val/<class>/` (hf: the `train` and `validation` splits),
or one set of classes with a seeded `data.val_fraction` held out. Image size, channels, mean
and std come from the recipe; where they are not given they are computed from the data: the
channel count from every image's mode (grey or colour; a mix is an error unless `data.channels`
converts them), the size as the median shorter side and the mean/std per channel (population
std over all pixels) of a seeded sample of `data.stats_samples` training images. A constant
channel gets std 1. Every image is resized (shorter side) and centre-cropped to a square.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from sparse_transfer.utils.errors import ConfigurationError

GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # PIL modes read as one channel; the rest as RGB
AUGMENTS = ("none", "flip", "crop_flip")


@dataclass
class ImageStats:
    size: int
    channels: int
    mean: list[float]
    std: list[float]


class Transformed(Dataset):
    """(transform(image), label) over a dataset of (PIL image, label)."""

    def __init__(self, base: Dataset, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        image, label = self.base[index]
        return self.transform(image), label


class HFImages(Dataset):
    """(PIL image, class index) from a `datasets.Dataset`'s image and label columns."""

    def __init__(self, table, image_column: str, label_column: str, index_of: dict | None):
        self.table = table.select_columns([image_column, label_column])
        self.image_column, self.label_column, self.index_of = image_column, label_column, index_of

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index):
        row = self.table[int(index)]
        label = row[self.label_column]
        return row[self.image_column], self.index_of[label] if self.index_of is not None else int(label)


def _open(path: str) -> Image.Image:
    with open(path, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return image


def _channels(mode: str) -> int:
    return 1 if mode in GREY_MODES else 3


def check_channels(modes: dict[str, str], where: str) -> int:
    """The one channel count of images named by `modes` (name -> PIL mode), or a one-line error."""
    by_channels: dict[int, str] = {}
    for name, mode in modes.items():
        by_channels.setdefault(_channels(mode), f"{name} ({mode})")
    if len(by_channels) > 1:
        raise ConfigurationError(
            f"images of mixed channel counts in {where}: {by_channels[1]} is grey, {by_channels[3]} is colour; "
            "set data.channels=1 or data.channels=3 to convert every image"
        )
    return next(iter(by_channels), 3)


def _checked_folder(directory: Path):
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not any(entry.is_dir() for entry in os.scandir(directory)):
        raise ConfigurationError(
            f"{directory} has no class sub-folders; put each class's images in {directory}/<class>/ "
            f"(or train/<class>/ and val/<class>/)"
        )
    folder = ImageFolder(str(directory), loader=_open, allow_empty=True)
    counts = Counter(folder.targets)
    for index, name in enumerate(folder.classes):
        if not counts[index]:
            raise ConfigurationError(
                f"class folder {directory / name} holds no images ({', '.join(IMG_EXTENSIONS)}); add images or "
                "remove the folder"
            )
    return folder


def _split(count: int, fraction: float, seed: int, where: str) -> tuple[list[int], list[int]]:
    held_out = round(count * fraction)
    if not 0 < fraction < 1 or not 0 < held_out < count:
        raise ConfigurationError(f"data.val_fraction={fraction} leaves no training or no validation image of the "
                                 f"{count} in {where}; give a value in (0, 1)")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[held_out:]), sorted(order[:held_out])


def measure(train: Dataset, config, seed: int, channels: int) -> ImageStats:
    """Size, mean and std of the recipe, with the missing ones computed on a seeded sample."""
    from torchvision import transforms

    count = min(len(train), config.stats_samples or len(train))
    sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    images = [train[i][0] for i in sample]
    size = config.image_size or int(statistics.median(min(image.size) for image in images))
    if config.mean and config.std:
        return ImageStats(size, channels, list(config.mean), list(config.std))
    to_tensor = transforms.Compose(_resize(size, channels) + [transforms.ToTensor()])
    pixels = torch.stack([to_tensor(image) for image in images]).transpose(0, 1).reshape(channels, -1).double()
    mean = config.mean or pixels.mean(dim=1).tolist()
    std = config.std or [s if s > 0 else 1.0 for s in pixels.std(dim=1, correction=0).tolist()]
    return ImageStats(size, channels, [float(m) for m in mean], [float(s) for s in std])


def _resize(size: int, channels: int) -> list:
    from torchvision import transforms

    convert = partial(Image.Image.convert, mode="L" if channels == 1 else "RGB")
    return [transforms.Lambda(convert), transforms.Resize(size), transforms.CenterCrop(size)]


def image_transforms(stats: ImageStats, augment: str):
    """The training and the validation transform."""
    from torchvision import transforms

    if augment not in AUGMENTS:
        raise ConfigurationError(f"unknown data.augment {augment!r}; use one of {', '.join(AUGMENTS)}")
    extra = {
        "none": [],
        "flip": [transforms.RandomHorizontalFlip()],
        "crop_flip": [transforms.RandomCrop(stats.size, padding=stats.size // 8), transforms.RandomHorizontalFlip()],
    }[augment]
    to_input = [transforms.ToTensor(), transforms.Normalize(stats.mean, stats.std)]
    base = _resize(stats.size, stats.channels)
    return transforms.Compose(base + extra + to_input), transforms.Compose(base + to_input)


def _check_sizes(config) -> None:
    for key in ("mean", "std"):
        values = getattr(config, key)
        if values and config.channels and len(values) != config.channels:
            raise ConfigurationError(f"data.{key} has {len(values)} values for data.channels={config.channels}")
    if bool(config.mean) != bool(config.std):
        raise ConfigurationError("give both data.mean and data.std, or neither (both are then computed)")


def image_folder(config, seed: int):
    """`data.dataset: imagefolder`: (train, val, classes, stats) with transforms applied."""
    _check_sizes(config)
    root = Path(config.root)
    if not config.root or not root.is_dir():
        raise ConfigurationError(f"data.root {config.root!r} is not a folder; give a folder of class sub-folders")
    train_dir, val_dir = root / config.train_split, root / (config.val_split or "val")
    if not train_dir.is_dir():  # no train/ folder: the classes are the root's sub-folders
        train_dir, val_dir = root, None
    elif not val_dir.is_dir():
        val_dir = None
    train = _checked_folder(train_dir)
    if val_dir is None and not config.val_fraction:
        raise ConfigurationError(f"{root} has no {config.val_split or 'val'}/ folder of classes; add one or set "
                                 "data.val_fraction=0.1 to hold out training images")
    val = _checked_folder(val_dir) if val_dir is not None else None
    if val is not None and val.classes != train.classes:
        raise ConfigurationError(f"the classes of {val_dir} ({', '.join(val.classes)}) differ from those of "
                                 f"{train_dir} ({', '.join(train.classes)})")
    channels = config.channels
    if not channels:  # headers only: PIL reads no pixels here
        paths = [path for path, _ in train.samples + (val.samples if val is not None else [])]
        modes = {}
        for path in paths:
            with Image.open(path) as image:
                modes[path] = image.mode
        channels = check_channels(modes, str(root))
    classes = train.classes
    if val is None:
        kept, held_out = _split(len(train), config.val_fraction, seed, str(train_dir))
        train, val = Subset(train, kept), Subset(train, held_out)
    return _with_transforms(train, val, classes, config, seed, channels)


def _with_transforms(train, val, classes, config, seed, channels):
    stats = measure(train, config, seed, channels)
    train_tf, val_tf = image_transforms(stats, config.augment)
    return Transformed(train, train_tf), Transformed(val, val_tf), list(classes), stats


def _load_hf(source: str):
    from datasets import load_dataset, load_from_disk

    path = Path(source)
    try:
        if not path.is_dir():
            return load_dataset(source)  # a hub name (online)
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return load_from_disk(str(path))
        for builder in ("parquet", "arrow"):
            if any(path.rglob(f"*.{builder}")):
                return load_dataset(builder, data_dir=str(path))
        return load_dataset("imagefolder", data_dir=str(path))
    except (OSError, ValueError) as problem:
        first = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
        raise ConfigurationError(f"data.root {source}: cannot be read as a datasets image dataset: {first}") from None


def hf_images(config, seed: int):
    """`data.dataset: hf`: (train, val, classes, stats) with transforms applied."""
    from datasets import ClassLabel, DatasetDict
    from datasets import Image as ImageFeature

    _check_sizes(config)
    if not config.root:
        raise ConfigurationError("data.root is empty; give a datasets directory or a hub name for data.dataset=hf")
    loaded = _load_hf(config.root)
    splits = loaded if isinstance(loaded, DatasetDict) else DatasetDict({config.train_split: loaded})
    val_name = config.val_split or "validation"
    if config.train_split not in splits:
        raise ConfigurationError(f"{config.root} has no split {config.train_split!r} (splits: {', '.join(splits)}); "
                                 "set data.train_split")
    train = splits[config.train_split]
    for column in (config.image_column, config.label_column):
        if column not in train.column_names:
            key = "image_column" if column == config.image_column else "label_column"
            raise ConfigurationError(f"{config.root} has no column {column!r} (columns: "
                                     f"{', '.join(train.column_names)}); set data.{key}")
    if val_name in splits:
        val = splits[val_name]
    elif config.val_fraction:
        kept, held_out = _split(len(train), config.val_fraction, seed, config.root)
        train, val = train.select(kept), train.select(held_out)
    else:
        raise ConfigurationError(f"{config.root} has no split {val_name!r} (splits: {', '.join(splits)}); set "
                                 "data.val_split or data.val_fraction=0.1")
    feature = train.features[config.label_column]
    if isinstance(feature, ClassLabel):
        classes, index_of = list(feature.names), None
    else:
        values = sorted(set(train[config.label_column]))
        classes, index_of = [str(v) for v in values], {v: i for i, v in enumerate(values)}
        unknown = set(val[config.label_column]) - set(values)
        if unknown:
            raise ConfigurationError(f"{config.root}: validation labels {sorted(unknown)[:5]} never occur in training")
    if not isinstance(train.features[config.image_column], ImageFeature):
        train = train.cast_column(config.image_column, ImageFeature())
        val = val.cast_column(config.image_column, ImageFeature())
    channels = config.channels
    if not channels:
        channels = check_channels(_hf_modes(train, config.image_column) | _hf_modes(val, config.image_column),
                                  config.root)
    wrapped = [HFImages(t, config.image_column, config.label_column, index_of) for t in (train, val)]
    return _with_transforms(*wrapped, classes, config, seed, channels)


def _hf_modes(table, column: str) -> dict[str, str]:
    """Row -> PIL mode of every image, from the encoded bytes (headers only)."""
    import io

    from datasets import Image as ImageFeature

    raw = table.select_columns([column]).cast_column(column, ImageFeature(decode=False))
    modes = {}
    for start in range(0, len(raw), 1000):
        for offset, entry in enumerate(raw[start:start + 1000][column]):
            source = io.BytesIO(entry["bytes"]) if entry.get("bytes") else entry["path"]
            with Image.open(source) as image:
                modes[f"row {start + offset}"] = image.mode
    return modes
