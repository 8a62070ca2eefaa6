"""The three-stage pipeline through the training entry point, on a small real
Fashion-MNIST subset (the MLP recipe, 2 + 2 epochs)."""

from pathlib import Path

import pytest

from sparse_transfer.utils.typed_config import RECIPE_DIR
from sparse_transfer.vision.analysis import read_json_lines
from sparse_transfer.vision.data import FASHION_MNIST_DIR
from sparse_transfer.vision.plain_models import mlp
from sparse_transfer.vision.recipe import RecipeError, load_recipe
from sparse_transfer.vision.train import main, train

RECIPES = RECIPE_DIR / "vision"
SMALL = ["epochs=4", "pipeline.pre_pruning_epochs=2", "data.train_subset=512", "data.val_subset=512",
         "data.batch_size=64", "sparsity.target=0.9"]  # fmt: skip
needs_data = pytest.mark.skipif(
    not (Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST idx files not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)


def _run(tmp_path, *overrides):
    return train(load_recipe("fashion_mnist_pipeline_mlp", [*SMALL, f"output_dir={tmp_path}", *overrides]))


@needs_data
@pytest.mark.slow
def test_full_pipeline_keeps_exact_zeros_and_ends_as_a_plain_relu_network(tmp_path):
    result = _run(tmp_path)
    log = read_json_lines(tmp_path / "log.jsonl")
    assert [r["phase"] for r in log] == ["pre-pruning"] * 2 + ["post-pruning"] * 2
    # stage 1: the regularizer lowers the expected density from 0.9; the top-k mask moves
    assert 0.9 > log[0]["expected_density"] > log[1]["expected_density"]
    assert 0.0 < log[1]["mask_iou"] < 1.0 and log[1]["collapse"] is None
    # stage 3: exactly round(0.9 * 266 200) zeros after every epoch, none where the mask keeps
    weights = [p for p in result.model.parameters() if p.ndim == 2]
    total = sum(w.numel() for w in weights)
    assert sum(int((w == 0).sum()) for w in weights) == round(0.9 * total) == 239580
    assert all(r["mask_violations"] == 0 and r["sparsity"] == 239580 / total for r in log[2:])
    smoothing = [(r["relu_weight"], r["skip_weight"], r["label_smoothing"]) for r in log[2:]]
    assert smoothing == [(0.0, 0.5, 0.1), (1.0, 0.0, 0.0)]
    assert log[-1]["val_top1"] > 0.5  # 10 classes: chance is 0.1
    # the final model is the plain MLP: same modules, parameters and state-dict keys, no hooks
    plain = mlp(10)
    assert [type(m) for m in result.model] == [type(m) for m in plain]
    assert sorted(result.model.state_dict()) == sorted(plain.state_dict())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in result.model.modules())
    assert (tmp_path / "final.pt").exists() and (tmp_path / "accuracy.png").exists()


@needs_data
@pytest.mark.slow
def test_diverging_stage_one_is_reported_as_a_collapse(tmp_path, capsys):
    _run(tmp_path, "optim.lr=1000000.0", "epochs=2", "pipeline.pre_pruning_epochs=1")
    log = read_json_lines(tmp_path / "log.jsonl")
    assert log[0]["collapse"] is not None
    printed = capsys.readouterr().out
    assert "warning: pre-pruning training collapsed at epoch 0: training loss is nan (the paper reports that ZerO " \
        "init and learned masks together can collapse); try pipeline.zero_init=false or pipeline.learned_mask=false " \
        "or a lower optim.lr" in printed


def test_a_run_without_post_pruning_epochs_is_refused_with_the_fix(capsys):
    with pytest.raises(RecipeError, match=r"pre_pruning_epochs=20 leaves no post-pruning epoch.*between 0 and 19$"):
        load_recipe(RECIPES / "fashion_mnist_pipeline_mlp.yaml", ["pipeline.pre_pruning_epochs=20"])
    assert main(["--recipe", "fashion_mnist_pipeline_mlp", "pipeline.estimator=gumbel"]) == 2
    assert capsys.readouterr().err.startswith("sparse-transfer vision: error: unknown pipeline.estimator 'gumbel'; use one of")
