import pytest
import torch
from torch import nn


class TinyConvNet(nn.Sequential):
    """Stem conv, one inner conv, a classifier: enough for FLD and channel checks."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(1, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )


@pytest.fixture
def one_thread():
    # Test machines share their 2 cores: two OpenMP threads then stall each other (a run
    # was 40x slower), while one thread loses at most half the speed on an idle machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyConvNet()


def _sgd_steps(model, optimizer, steps, seed=0):
    """A few optimizer steps on seeded random classification batches."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 1, 6, 6, generator=generator)
        y = torch.randint(0, 4, (8,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture
def sgd_steps():
    return _sgd_steps


def write_images(folder, values, size=(8, 8), mode="L"):
    """One constant image per value (a grey level, or an RGB triple) in `folder`, as PNGs."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, value in enumerate(values):
        Image.new(mode, size, value).save(folder / f"{index}.png")


def noise_folder(root, classes=3, per_class=6, size=8, seed=0):
    """root/train/<c>/ and root/val/<c>/ of grey images whose brightness depends on the class,
    plus noise: a task a tiny model can learn a little in a few steps."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", max(1, per_class // 2))):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = np.clip(rng.normal(60 + 70 * c, 30, (size, size)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{index}.png")
    return root
