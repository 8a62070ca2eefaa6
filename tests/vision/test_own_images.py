"""Own images: image folders and `datasets` image datasets, with the size, channels, mean and
std computed from tiny generated images where the recipe does not give them."""

import pytest
import torch
from conftest import write_images

from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.vision.data import build_datasets
from sparse_transfer.vision.recipe import DataConfig


def _data(root, **values):
    return build_datasets(DataConfig(dataset=values.pop("dataset", "imagefolder"), root=str(root), **values))


def test_grey_folder_mean_std_and_size_are_computed_from_the_images(tmp_path):
    # half the training pixels are 0, half 1: mean 0.5 and (population) std 0.5 exactly
    write_images(tmp_path / "train" / "dark", [0, 0])
    write_images(tmp_path / "train" / "light", [255, 255])
    write_images(tmp_path / "val" / "dark", [0])
    write_images(tmp_path / "val" / "light", [255])
    data = _data(tmp_path)
    assert data.classes == ["dark", "light"] and data.num_classes == 2
    assert (data.in_channels, data.image_size, data.mean, data.std) == (1, 8, [0.5], [0.5])
    assert len(data.train) == 4 and len(data.val) == 2
    image, label = data.val[1]
    assert label == 1 and image.shape == (1, 8, 8) and torch.equal(image, torch.ones(1, 8, 8))  # (1 - 0.5) / 0.5
    # given values win over computed ones; channels=3 converts the grey images
    given = _data(tmp_path, mean=[0.25, 0.25, 0.25], std=[0.25, 0.25, 0.25], channels=3, image_size=4)
    assert given.val[0][0].shape == (3, 4, 4) and torch.equal(given.val[0][0], torch.full((3, 4, 4), -1.0))


def test_colour_folder_per_channel_statistics_and_a_constant_channel(tmp_path):
    write_images(tmp_path / "train" / "red", [(255, 0, 0)] * 3, mode="RGB")
    write_images(tmp_path / "train" / "black", [(0, 0, 0)], mode="RGB")
    write_images(tmp_path / "val" / "red", [(255, 0, 0)], mode="RGB")
    write_images(tmp_path / "val" / "black", [(0, 0, 0)], mode="RGB")
    data = _data(tmp_path)
    assert data.in_channels == 3 and data.mean == [0.75, 0.0, 0.0]
    assert data.std == pytest.approx([0.75 ** 0.5 * 0.5, 1.0, 1.0])  # sqrt(p(1-p)); constant channels get 1


def test_size_is_the_median_shorter_side_and_images_are_squared(tmp_path):
    for split in ("train", "val"):
        for name in ("a", "b"):
            write_images(tmp_path / split / name / "wide", [10], size=(10, 6))
            write_images(tmp_path / split / name / "square", [30], size=(8, 8))
    data = _data(tmp_path)
    assert data.image_size == 7  # shorter sides of the training images: 6, 6, 8, 8
    assert [data.train[i][0].shape for i in range(4)] == [(1, 7, 7)] * 4


def test_val_fraction_holds_out_a_seeded_disjoint_part(tmp_path):
    write_images(tmp_path / "a", range(0, 50, 10))
    write_images(tmp_path / "b", range(100, 150, 10))
    first, again, other = (_data(tmp_path, val_fraction=0.4, augment="none") for _ in range(3))
    assert (len(first.train), len(first.val)) == (6, 4)
    kept, held_out = first.train.base.indices, first.val.base.indices
    assert not set(kept) & set(held_out) and sorted(kept + held_out) == list(range(10))
    assert again.val.base.indices == held_out
    other_seed = build_datasets(DataConfig(dataset="imagefolder", root=str(tmp_path), val_fraction=0.4), seed=1)
    assert other_seed.val.base.indices != held_out


def test_hf_saved_dataset_with_named_columns_and_string_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    def table(levels, names):
        images = [Image.new("L", (8, 8), level) for level in levels]
        return datasets.Dataset.from_dict({"picture": images, "kind": names},
                                          features=datasets.Features({"picture": datasets.Image(),
                                                                      "kind": datasets.Value("string")}))

    splits = datasets.DatasetDict({"train": table([0, 255, 0, 255], ["cat", "dog", "cat", "dog"]),
                                   "test": table([255], ["dog"])})
    splits.save_to_disk(str(tmp_path / "saved"))
    data = _data(tmp_path / "saved", dataset="hf", image_column="picture", label_column="kind", val_split="test")
    assert data.classes == ["cat", "dog"] and (data.mean, data.std, data.image_size) == ([0.5], [0.5], 8)
    assert data.val[0][1] == 1 and torch.equal(data.val[0][0], torch.ones(1, 8, 8))


def test_hf_imagefolder_reads_the_same_folder_as_imagefolder(tmp_path):
    pytest.importorskip("datasets")
    write_images(tmp_path / "train" / "dark", [0, 0])
    write_images(tmp_path / "train" / "light", [255, 255])
    write_images(tmp_path / "val" / "dark", [0])
    write_images(tmp_path / "val" / "light", [255])
    hf, folder = _data(tmp_path, dataset="hf"), _data(tmp_path)
    assert hf.classes == folder.classes and (hf.mean, hf.std) == (folder.mean, folder.std)
    assert sorted(label for _, label in hf.val) == [0, 1]


@pytest.mark.parametrize("layout, message", [
    ("loose", "has no class sub-folders"),
    ("empty_class", r"class folder .*empty holds no images"),
    ("mixed", r"images of mixed channel counts in .*: .* is grey, .* is colour; set data.channels=1"),
    ("no_val", r"has no val/ folder of classes; add one or set data.val_fraction"),
])
def test_bad_folders_are_one_line_errors(tmp_path, layout, message):
    if layout == "loose":
        write_images(tmp_path, [0, 255])
    elif layout == "empty_class":
        write_images(tmp_path / "full", [0, 255])
        (tmp_path / "empty").mkdir()
    elif layout == "mixed":
        write_images(tmp_path / "grey", [0, 255])
        write_images(tmp_path / "colour", [(1, 2, 3)], mode="RGB")
    else:
        write_images(tmp_path / "train" / "a", [0])
    with pytest.raises(ConfigurationError, match=message):
        _data(tmp_path, val_fraction=0.0 if layout == "no_val" else 0.5)
