"""Models: torchvision ResNet-18/50 and MobileNets, plus a CIFAR-style ResNet (three
stages of torchvision BasicBlocks, 16/32/64 channels times `width`) for 28x28 and
32x32 inputs, where the ImageNet stem would downsample too much."""

from __future__ import annotations

from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock

from sparse_transfer.vision.plain_models import PLAIN_MODELS, build_plain_model

TORCHVISION = {
    "resnet18": models.resnet18,
    "resnet50": models.resnet50,
    "mobilenet_v2": models.mobilenet_v2,
    "mobilenet_v3_small": models.mobilenet_v3_small,
    "mobilenet_v3_large": models.mobilenet_v3_large,
}


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: int = 1):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 56, ...), not {depth}")
        blocks = (depth - 2) // 6
        channels = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        stages, planes = [], channels[0]
        for stage, out in enumerate(channels):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                downsample = None
                if stride != 1 or planes != out:
                    downsample = nn.Sequential(nn.Conv2d(planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                stages.append(BasicBlock(planes, out, stride, downsample))
                planes = out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def build_model(name: str, num_classes: int, in_channels: int = 3, width: int = 1) -> nn.Module:
    """`cifar_resnet20` (any depth 6n + 2), a plain model (plain_models.py) or a
    torchvision architecture, untrained."""
    if name.startswith("cifar_resnet"):
        return CifarResNet(int(name.removeprefix("cifar_resnet")), num_classes, in_channels, width)
    if name in PLAIN_MODELS:
        return build_plain_model(name, num_classes, in_channels, width)
    if name not in TORCHVISION:
        raise ValueError(f"unknown model {name!r}; use cifar_resnet<6n+2> or one of {sorted([*TORCHVISION, *PLAIN_MODELS])}")
    model = TORCHVISION[name](weights=None, num_classes=num_classes)
    if in_channels != 3:  # grey images: swap the stem convolution for one with fewer inputs
        parent, attr, stem = _first_conv(model)
        grey_stem = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
        setattr(parent, attr, grey_stem)
    return model


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            return model.get_submodule(parent_name), attr, module
    raise ValueError("the model has no convolution")
