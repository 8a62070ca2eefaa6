"""Sparse transfer (`kind: transfer`) on a tiny generated image folder: the checkpoint's zeros are
kept exactly, linear mode changes nothing but the new classifier, resume continues exactly,
and bad input is one line with exit status 2 and no output folder."""

import pytest
import torch
import yaml
from conftest import noise_folder, write_images
from torch import nn

from sparse_transfer.vision.analysis import read_json_lines
from sparse_transfer.vision.models import build_model
from sparse_transfer.vision.recipe import load_recipe
from sparse_transfer.vision.sparsity import prunable_weights, target_masks
from sparse_transfer.vision.train import main, train

# cifar_resnet8 on 8x8 grey images: 18 training images of 3 classes, batch 6
TINY = ["model.name=cifar_resnet8", "data.dataset=imagefolder", "data.batch_size=6", "optim.lr=0.4",
        "optim.warmup_epochs=0", "data.augment=none"]
pytestmark = pytest.mark.usefixtures("one_thread")


def sparse_checkpoint(path, sparsity=0.9, classes=4):
    """A 90% sparse cifar_resnet8 state dict (global magnitude masks, classifier included) with
    BatchNorm statistics that are not the defaults."""
    torch.manual_seed(1)
    model = build_model("cifar_resnet8", classes, 1)
    masks = target_masks(prunable_weights(model), sparsity)
    with torch.no_grad():
        for name, weight in prunable_weights(model).items():
            weight.mul_(masks[name])
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.9, 1.1)
    torch.save(model.state_dict(), path)
    return model.state_dict()


@pytest.fixture
def task(tmp_path):
    noise_folder(tmp_path / "images")
    state = sparse_checkpoint(tmp_path / "sparse.pt")
    return tmp_path, state


def _transfer(tmp_path, mode, *overrides, out="run", resume=False):
    recipe = load_recipe("fashion_mnist_transfer_linear", [
        *TINY, f"data.root={tmp_path / 'images'}", f"model.weights={tmp_path / 'sparse.pt'}", f"transfer.mode={mode}",
        f"output_dir={tmp_path / out}", "epochs=2", *overrides])
    return train(recipe, resume=resume)


def _body(state):
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def test_linear_transfer_trains_only_the_new_classifier(task):
    tmp_path, start = task
    result = _transfer(tmp_path, "linear")
    untrained = _transfer(tmp_path, "linear", "optim.lr=0", out="untrained").model.state_dict()  # the new head
    final = result.model.state_dict()
    for name, value in _body(start).items():  # weights, BatchNorm statistics and counters alike
        assert torch.equal(final[name], value), name
    assert final["fc.weight"].shape == (3, 64)
    assert not torch.equal(final["fc.weight"], untrained["fc.weight"])  # the new classifier trained
    assert not torch.equal(untrained["fc.weight"][:3], start["fc.weight"][:3])  # and was new
    assert torch.equal(torch.load(tmp_path / "run" / "final.pt")["fc.weight"], final["fc.weight"])
    log = read_json_lines(tmp_path / "run" / "log.jsonl")
    body = {k: v for k, v in prunable_weights(result.model).items() if not k.startswith("fc.")}
    zeros = sum(int((_body(start)[k] == 0).sum()) for k in body)
    assert [r["sparsity"] for r in log] == [zeros / sum(w.numel() for w in body.values())] * 2
    assert (tmp_path / "run" / "accuracy.png").exists() and (tmp_path / "run" / "data.json").exists()


def test_full_transfer_keeps_the_exact_zeros_and_trains_the_rest(task):
    tmp_path, start = task
    result = _transfer(tmp_path, "full")
    final = result.model.state_dict()
    for name in prunable_weights(result.model):
        if name.startswith("fc."):
            continue
        assert torch.equal(final[name] == 0, start[name] == 0), name  # the same positions, exactly
        assert int((final[name] == 0).sum()) == int((start[name] == 0).sum())
    assert not torch.equal(final["conv1.weight"], start["conv1.weight"])  # the kept weights trained
    log = read_json_lines(tmp_path / "run" / "log.jsonl")
    assert [r["mask_violations"] for r in log] == [0, 0]
    assert log[0]["mask_sparsity"] == log[-1]["sparsity"] > 0.85


def test_resumed_transfer_gives_the_weights_of_an_uninterrupted_one(task):
    tmp_path, _ = task
    whole = _transfer(tmp_path, "full", "epochs=3", out="whole")
    _transfer(tmp_path, "full", "epochs=3", "epochs_per_job=1", out="split")
    assert not (tmp_path / "split" / "final.pt").exists()
    resumed = _transfer(tmp_path, "full", "epochs=3", out="split", resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["val_top1"] for r in resumed.history] == [r["val_top1"] for r in whole.history]


class ShiftOnLoad(nn.Module):
    """A model whose loading shifts every weight: the checkpoint's zeros do not survive."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, num_classes)

        self.register_load_state_dict_post_hook(self.shift)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))

    @staticmethod
    @torch.no_grad()
    def shift(module, incompatible_keys):
        module.conv.weight.add_(1.0)


def shift_on_load(num_classes):
    return ShiftOnLoad(num_classes)


def _recipe_file(tmp_path, **model):
    recipe = {"kind": "transfer", "epochs": 1, "output_dir": str(tmp_path / "out"),
              "model": {"name": "cifar_resnet8", "weights": str(tmp_path / "sparse.pt"), **model},
              "data": {"dataset": "imagefolder", "root": str(tmp_path / "images"), "batch_size": 6}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


BAD_INPUTS = {
    "no class folders": (lambda p: write_images(p / "loose", [0, 255]), {}, ["data.root={p}/loose"],
                         r"loose has no class sub-folders; put each class's images in"),
    "empty class": (lambda p: (p / "images" / "train" / "class9").mkdir(), {}, [],
                    r"class folder .*images/train/class9 holds no images"),
    "mixed channels": (lambda p: write_images(p / "images" / "val" / "class0", [(1, 2, 3)], mode="RGB"), {}, [],
                       r"images of mixed channel counts in .*images: .* is grey, .* is colour"),
    "weights that do not fit": (lambda p: None, {"width": 2}, [],
                                r"sparse.pt does not fit the model \(CifarResNet\): shapes: conv1.weight"),
    "zeros lost on loading": (lambda p: torch.save(ShiftOnLoad(4).state_dict(), p / "sparse.pt"),
                              {"name": f"{__name__}:shift_on_load"}, [],
                              r"sparse.pt: the zeros of conv.weight do not survive loading"),
    "a dense checkpoint": (lambda p: torch.save(build_model("cifar_resnet8", 4, 1).state_dict(), p / "sparse.pt"),
                           {}, [], r"sparse.pt has no zero in its \d+ prunable weights; give a sparse checkpoint, or "
                                   r"set transfer.sparse=false"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(task, capsys, case):
    tmp_path, _ = task
    prepare, model, overrides, message = BAD_INPUTS[case]
    with torch.no_grad():
        prepare(tmp_path)
    # the zeros of ShiftOnLoad's file must exist for the check to be about loading
    if case == "zeros lost on loading":
        state = torch.load(tmp_path / "sparse.pt")
        state["conv.weight"][0] = 0
        torch.save(state, tmp_path / "sparse.pt")
    argv = ["--recipe", _recipe_file(tmp_path, **model), *(o.format(p=tmp_path) for o in overrides)]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparse-transfer vision: error: ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_recipes_that_cannot_run_are_refused(tmp_path):
    from sparse_transfer.vision.recipe import RecipeError

    with pytest.raises(RecipeError, match="kind: transfer needs model.weights"):
        load_recipe("fashion_mnist_transfer_full", ["model.weights=''"])
    with pytest.raises(RecipeError, match="unknown transfer.mode 'partial'; use one of linear, full"):
        load_recipe("fashion_mnist_transfer_full", ["transfer.mode=partial"])
    with pytest.raises(RecipeError, match="sparsity.method must stay dense"):
        load_recipe("fashion_mnist_transfer_full", ["sparsity.method=acdc"])
    with pytest.raises(RecipeError, match="sparsity.method=pipeline trains from its own initialization"):
        load_recipe("fashion_mnist_pipeline_mlp", ["model.weights=start.pt"])
    with pytest.raises(RecipeError, match="unknown kind 'fit'; use one of train, transfer"):
        train(load_recipe(None, ["kind=fit", f"output_dir={tmp_path / 'out'}"]))
    assert not (tmp_path / "out").exists()
