"""Own models: torchvision and timm names, a factory by Python path, starting weights
(safetensors or a weights-only torch state dict) with the classifier fitted to the classes."""

import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.vision.models import build_model, classifier_name
from sparse_transfer.vision.sparsity import prunable_weights
from sparse_transfer.vision.weights import load_weights, read_state_dict


def ten_class_net():
    """A factory that takes no arguments: its 10-class classifier is replaced to fit."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


def net_with_arguments(num_classes, in_channels, hidden=4):
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(hidden, num_classes))


def test_torchvision_names_fit_classes_and_grey_images():
    model = build_model("torchvision:mobilenet_v3_small", 3, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert classifier_name(model) == "classifier.3"
    with pytest.raises(ConfigurationError, match="unknown model torchvision:resnet_nope"):
        build_model("torchvision:resnet_nope", 3)


def test_a_factory_by_python_path_gets_what_it_takes():
    model = build_model(f"{__name__}:ten_class_net", 3, in_channels=1)
    assert model[-1].out_features == 3 and model(torch.randn(2, 1, 6, 6)).shape == (2, 3)
    model = build_model(f"{__name__}:net_with_arguments", 5, in_channels=3, kwargs={"hidden": 6})
    assert model[0].in_channels == 3 and model[-1].in_features == 6 and model[-1].out_features == 5
    with pytest.raises(ConfigurationError, match="cannot import the factory"):
        build_model(f"{__name__}:missing_factory", 3)


def test_timm_names():
    timm = pytest.importorskip("timm", reason="timm is optional (the [vision] extra); pip install timm")
    assert timm is not None
    model = build_model("timm:vit_tiny_patch16_224", 3, in_channels=1, kwargs={"img_size": 16, "patch_size": 8,
                                                                              "depth": 1})
    assert classifier_name(model) == "head" and model(torch.randn(2, 1, 16, 16)).shape == (2, 3)
    assert "head.weight" in prunable_weights(model)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_load_exactly_and_the_classifier_is_replaced_to_fit(tmp_path, suffix):
    torch.manual_seed(0)
    source = build_model("cifar_resnet8", 10, 1)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"model": state}, path)
    target = build_model("cifar_resnet8", 4, 1)
    load_weights(target, read_state_dict(path), path, classifier_name(target))
    for name, value in target.state_dict().items():
        if name.startswith("fc."):
            assert value.shape[0] == 4
        else:
            assert torch.equal(value, state[name]), name
    same = build_model("cifar_resnet8", 10, 1)  # the classifier fits: it is loaded too
    load_weights(same, read_state_dict(path), path, classifier_name(same))
    assert torch.equal(same.fc.weight, source.fc.weight)


class Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_weights_that_do_not_fit_or_would_run_code_are_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(build_model("cifar_resnet8", 10, 1).state_dict(), path)
    wider = build_model("cifar_resnet8", 10, 1, width=2)
    with pytest.raises(ConfigurationError, match=r"resnet.pt does not fit the model \(CifarResNet\): shapes: conv1"):
        load_weights(wider, read_state_dict(path), path, "fc")
    other = build_model("vgg_small", 10, 1)
    with pytest.raises(ConfigurationError, match=r"missing keys: 0.weight, .*unexpected keys: conv1.weight"):
        load_weights(other, read_state_dict(path), path, classifier_name(other))
    code = tmp_path / "code.pt"
    code.write_bytes(pickle.dumps({"conv1.weight": Payload()}, protocol=2))
    with pytest.raises(ConfigurationError, match=r"code.pt is neither a safetensors file nor a state dict that loads "
                                                 r"with weights_only=True .*WeightsUnpickler error"):
        read_state_dict(code)
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_state_dict(tmp_path / "nothing.pt")
