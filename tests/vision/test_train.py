"""End-to-end runs of the training entry point on a small real Fashion-MNIST subset."""

from pathlib import Path

import pytest
import torch

from sparse_transfer.vision.analysis import read_json_lines
from sparse_transfer.vision.data import FASHION_MNIST_DIR
from sparse_transfer.vision.recipe import load_recipe
from sparse_transfer.vision.train import train

pytestmark = [
    pytest.mark.skipif(
        not (Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").exists(),
        reason=f"Fashion-MNIST idx files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
    ),
    pytest.mark.usefixtures("one_thread"),
]
# A ResNet-8 on 256 images for 6 epochs: dense 0, sparse 1-2 (30%), dense 3, sparse 4-5
# (50%); kept small: the whole vision suite should stay under two minutes on 2 cores.
SMALL = ["epochs=6", "model.name=cifar_resnet8", "data.train_subset=256", "data.val_subset=256", "data.batch_size=32",
         "optim.lr=0.8", "sparsity.target=0.5", "sparsity.ramp_from=0.3", "sparsity.warmup_fraction=0.2",
         "sparsity.phase_length=2", "sparsity.final_dense=1", "sparsity.final_sparse=1"]
# 4 epochs: dense 0, sparse 1-3; one job stops after epoch 1, in the middle of the phase.
SHORT = ["epochs=4", "data.train_subset=128", "sparsity.warmup_fraction=0.25", "sparsity.final_dense=0"]


def _prunable(model):
    weights = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim > 1]
    return sum(w.numel() for w in weights), sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)


def _run(tmp_path, recipe, *overrides, resume=False):
    return train(load_recipe(recipe, [*SMALL, f"output_dir={tmp_path}", *overrides]), resume=resume)


@pytest.mark.slow
def test_acdc_end_to_end_learns_and_ends_exactly_sparse(tmp_path):
    result = _run(tmp_path, "fashion_mnist_acdc")
    log = read_json_lines(tmp_path / "log.jsonl")
    assert [r["phase"] for r in log] == ["dense", "sparse", "sparse", "dense", "sparse", "sparse"]
    assert log[-1]["val_top1"] > 0.4  # 10 classes: chance is 0.1
    total, zeros = _prunable(result.model)
    assert zeros == round(0.5 * total) and log[-1]["sparsity"] == zeros / total
    assert log[1]["mask_sparsity"] == round(0.3 * total) / total  # the ramp's first sparse phase
    assert log[0]["inference_flops"] == log[0]["dense_inference_flops"] > log[-1]["inference_flops"]
    assert 0.0 < log[4]["mask_iou"] < 1.0  # the second compression mask moved
    # the best dense checkpoint is a dense-phase model, not the final sparse one
    assert max((r for r in log if r["phase"] == "dense"), key=lambda r: r["val_top1"])["epoch"] == 3
    best = type(result.model)(8, 10, 1)
    best.load_state_dict(torch.load(result.best_dense_path))
    assert _prunable(best)[1] < 0.1 * total
    assert (tmp_path / "accuracy.png").exists() and (tmp_path / "phases.json").exists()


@pytest.mark.slow
def test_resume_mid_phase_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    whole = _run(tmp_path / "whole", "fashion_mnist_acdc", *SHORT)
    _run(tmp_path / "split", "fashion_mnist_acdc", *SHORT, "epochs_per_job=2")
    assert not (tmp_path / "split" / "final.pt").exists()
    resumed = _run(tmp_path / "split", "fashion_mnist_acdc", *SHORT, resume=True)
    assert [r["phase"] for r in resumed.history] == ["dense", "sparse", "sparse", "sparse"]
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["val_top1"] for r in resumed.history] == [r["val_top1"] for r in whole.history]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fashion_mnist_gmp", "fashion_mnist_rigl"])
def test_baselines_end_to_end_reach_the_exact_target(tmp_path, recipe):
    result = _run(tmp_path, recipe, "data.train_subset=128", "sparsity.prune_every=1")
    total, zeros = _prunable(result.model)
    assert zeros == round(0.5 * total)
    assert result.history[-1]["mask_sparsity"] == zeros / total
