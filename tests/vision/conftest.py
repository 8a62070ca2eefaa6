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
