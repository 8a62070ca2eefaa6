"""The recipe pieces around the training loop: LR and resolution schedules, the
weight-decay split, idx parsing and the models."""

import gzip
import struct

import numpy as np
import pytest
import torch

from sparse_transfer.schedules import warmup_linear_decay
from sparse_transfer.vision.data import read_idx
from sparse_transfer.vision.loop import parameter_groups
from sparse_transfer.vision.models import build_model
from sparse_transfer.vision.schedules import resolution_at


def test_lr_warms_up_linearly_to_the_peak_then_decays_to_zero():
    factor = warmup_linear_decay(warmup_steps=4, total_steps=12)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert [factor(s) for s in range(4, 13)] == [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8])


def test_progressive_resizing_steps_and_ramps():
    # the AC/DC++ ImageNet setting: 160 px for the first 80%, then 192
    assert [resolution_at(e, 10, 160, 192, 0.8, 0.8, 32) for e in (0, 7, 8, 9)] == [160, 160, 192, 192]
    # a linear ramp over epochs 2-6, rounded down to multiples of 32
    assert [resolution_at(e, 10, 128, 256, 0.2, 0.6, 32) for e in range(8)] == [128, 128, 128, 160, 192, 224, 256, 256]


def test_weight_decay_skips_batchnorm_and_biases():
    model = build_model("cifar_resnet8", 10, 1)
    decay, no_decay = parameter_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim == 4 or names[id(p)] == "fc.weight" for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {"bn1.weight", "bn1.bias", "fc.bias"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_read_idx_parses_header_and_data(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x00\x00\x08\x03" + struct.pack(">iii", 2, 3, 4) + data.tobytes())
    assert np.array_equal(read_idx(path), data)
    floats = tmp_path / "floats-idx1"  # type code 0x0d: float32, not an image file
    floats.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">i", 1) + b"\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(floats)


def test_models_for_small_and_grey_images():
    model = build_model("cifar_resnet20", 10, 1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 19 + 2  # 19 3x3 convs + 2 shortcuts
    assert build_model("resnet18", 100, 1)(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="6n"):
        build_model("cifar_resnet21", 10)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg11", 10)
