"""Models: torchvision ResNet-18/50 and MobileNets, plus a CIFAR-style ResNet (three
stages of torchvision BasicBlocks, 16/32/64 channels times `width`) for 28x28 and
32x32 inputs, where the ImageNet stem would downsample too much; the plain models of
plain_models.py; and the user's own: `torchvision:<name>` (any torchvision classification
architecture: ViT, ConvNeXt, ...), `timm:<name>` (timm is optional) or `package.module:factory`
(a function returning an `nn.Module`; it gets `num_classes` / `in_channels` when it takes them).
The classifier, timm's `get_classifier()` or else the model's last `nn.Linear`, is replaced
to fit the number of classes where it does not."""

from __future__ import annotations

import importlib
import inspect

from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock

from sparse_transfer.utils.typed_config import RecipeError
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


def build_model(
    name: str, num_classes: int, in_channels: int = 3, width: int = 1, image_size: int = 28, kwargs: dict | None = None
) -> nn.Module:
    """`cifar_resnet20` (any depth 6n + 2), a plain model (plain_models.py), a torchvision
    architecture, `torchvision:<name>`, `timm:<name>` or `package.module:factory`, untrained,
    its classifier fitting `num_classes` and its stem `in_channels`."""
    kwargs = kwargs or {}
    if name.startswith("cifar_resnet"):
        return CifarResNet(int(name.removeprefix("cifar_resnet")), num_classes, in_channels, width)
    if name in PLAIN_MODELS:
        return build_plain_model(name, num_classes, in_channels, width, image_size)
    if name.startswith("timm:"):
        model = _timm_model(name.removeprefix("timm:"), num_classes, in_channels, kwargs)
    elif name.startswith("torchvision:") or name in TORCHVISION:
        model = _torchvision_model(name.removeprefix("torchvision:"), num_classes, kwargs)
    elif ":" in name:
        model = _factory_model(name, num_classes, in_channels, kwargs)
    else:
        raise RecipeError(
            f"unknown model {name!r}; use cifar_resnet<6n+2>, one of {sorted([*TORCHVISION, *PLAIN_MODELS])}, "
            "torchvision:<name>, timm:<name> or package.module:factory"
        )
    replace_classifier(model, num_classes)
    _fit_stem(model, in_channels)
    return model


def _torchvision_model(name: str, num_classes: int, kwargs: dict) -> nn.Module:
    if name not in models.list_models(module=models):
        raise RecipeError(f"unknown model torchvision:{name}; use a torchvision classification model "
                          f"(torchvision.models.list_models(): resnet18, vit_b_16, convnext_tiny, ...)")
    return models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def _timm_model(name: str, num_classes: int, in_channels: int, kwargs: dict) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise RecipeError(f"model timm:{name} needs timm: pip install 'sparse-transfer[vision]' (or timm)") from None
    if not timm.is_model(name):
        raise RecipeError(f"unknown model timm:{name}; timm.list_models() names the architectures")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)


def _factory_model(path: str, num_classes: int, in_channels: int, kwargs: dict) -> nn.Module:
    module_name, _, attr = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as problem:
        raise RecipeError(f"model.name {path}: cannot import the factory ({problem}); give package.module:function")
    accepted = inspect.signature(factory).parameters
    offered = {"num_classes": num_classes, "in_channels": in_channels, "in_chans": in_channels}
    model = factory(**{key: value for key, value in offered.items() if key in accepted}, **kwargs)
    if not isinstance(model, nn.Module):
        raise RecipeError(f"model.name {path} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def classifier_name(model: nn.Module) -> str:
    """The module name of the classifier: timm's `get_classifier()`, else the last nn.Linear."""
    get_classifier = getattr(model, "get_classifier", None)
    wanted = get_classifier() if callable(get_classifier) else None
    linear = ""
    for name, module in model.named_modules():
        if wanted is not None and module is wanted:
            return name
        if isinstance(module, nn.Linear):
            linear = name
    if not linear:
        raise RecipeError(f"{type(model).__name__} has no nn.Linear classifier to fit to the classes")
    return linear


def replace_classifier(model: nn.Module, num_classes: int, always: bool = False) -> str:
    """A new classifier with `num_classes` outputs where the old one has another count (or
    `always`: sparse transfer's new task); returns its module name."""
    name = classifier_name(model)
    old = model.get_submodule(name)
    if always or old.out_features != num_classes:
        parent_name, _, attr = name.rpartition(".")
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        setattr(model.get_submodule(parent_name), attr, new.to(old.weight.device, old.weight.dtype))
    return name


def _fit_stem(model: nn.Module, in_channels: int) -> None:
    parent, attr, stem = _first_conv(model)
    if stem is not None and stem.in_channels != in_channels:  # grey images: a stem with fewer inputs
        grey_stem = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                              bias=stem.bias is not None)
        setattr(parent, attr, grey_stem)


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d | None]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            return model.get_submodule(parent_name), attr, module
    return model, "", None


def model_for(config, data) -> nn.Module:
    """The model of a recipe's `model` section (`ModelConfig`) for `data` (a `Datasets`)."""
    return build_model(config.name, data.num_classes, data.in_channels, config.width, data.image_size, config.kwargs)
