"""`sparse-transfer vision-images`: real Fashion-MNIST classes written as an image folder, read back
unchanged through `data.dataset: imagefolder`."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparse_transfer.vision.data import FASHION_MNIST_DIR, build_datasets, read_idx
from sparse_transfer.vision.recipe import DataConfig
from sparse_transfer.vision.write_images import main

pytestmark = pytest.mark.skipif(not (Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz").exists(),
                                reason=f"Fashion-MNIST idx files not in {FASHION_MNIST_DIR}")


def test_classes_are_written_losslessly_and_read_back(tmp_path, capsys):
    out = tmp_path / "images"
    assert main(["fashion_mnist", str(out), "--classes", "5-6", "--train-per-class", "2", "--val-per-class", "1"]) == 0
    assert capsys.readouterr().out == f"wrote 4 training and 2 validation images to {out}\n"
    assert sorted(p.name for p in (out / "train").iterdir()) == ["5-sandal", "6-shirt"]
    images = read_idx(Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz")
    labels = read_idx(Path(FASHION_MNIST_DIR) / "train-labels-idx1-ubyte.gz")
    first_sandal = int(np.flatnonzero(labels == 5)[0])
    written = np.asarray(Image.open(out / "train" / "5-sandal" / f"{first_sandal:05d}.png"))
    assert np.array_equal(written, images[first_sandal])
    data = build_datasets(DataConfig(dataset="imagefolder", root=str(out)))
    assert data.classes == ["5-sandal", "6-shirt"] and (data.in_channels, data.image_size) == (1, 28)
    assert (len(data.train), len(data.val)) == (4, 2)


def test_a_non_empty_folder_or_bad_classes_are_refused(tmp_path, capsys):
    (tmp_path / "kept.txt").write_text("mine")
    assert main(["fashion_mnist", str(tmp_path), "--classes", "5-9"]) == 2
    error = capsys.readouterr().err
    assert error == f"sparse-transfer vision-images: error: {tmp_path} is not empty; give a new folder\n"
    assert main(["fashion_mnist", str(tmp_path / "new"), "--classes", "5-12"]) == 2
    assert "of Fashion-MNIST classes 0-9" in capsys.readouterr().err and not (tmp_path / "new").exists()
