"""Plain feed-forward models for the end-to-end pruning pipeline: no built-in skip
connections and every activation an `nn.ReLU` module, so the pipeline's smoothing can
swap activations and add (then remove) identity paths on any of them.

* `mlp`: LeNet-300-100 (hidden widths 300 and 100, times `width`);
* `vgg_small`: a VGG-style CNN for 28x28 images, 32-32-M-64-64-M-128-M channels;
* `vgg16`: VGG-16 with BatchNorm (configuration D), one linear classifier, for CIFAR.
"""

from __future__ import annotations

from torch import nn

POOL = "M"
VGG_LAYERS = {
    "vgg_small": [32, 32, POOL, 64, 64, POOL, 128, POOL],
    "vgg16": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
}


def mlp(num_classes: int, in_channels: int = 1, width: int = 1, image_size: int = 28) -> nn.Sequential:
    hidden = [300 * width, 100 * width]
    layers, features = [nn.Flatten()], in_channels * image_size * image_size
    for size in hidden:
        layers += [nn.Linear(features, size), nn.ReLU(inplace=True)]
        features = size
    return nn.Sequential(*layers, nn.Linear(features, num_classes))


def vgg(config: str, num_classes: int, in_channels: int = 3, width: int = 1) -> nn.Sequential:
    layers, channels = [], in_channels
    for entry in VGG_LAYERS[config]:
        if entry == POOL:
            layers.append(nn.MaxPool2d(2))
            continue
        out = entry * width
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def build_plain_model(name: str, num_classes: int, in_channels: int, width: int = 1, image_size: int = 28) -> nn.Module:
    if name == "mlp":
        return mlp(num_classes, in_channels, width, image_size)
    return vgg(name, num_classes, in_channels, width)


PLAIN_MODELS = ("mlp", *VGG_LAYERS)
