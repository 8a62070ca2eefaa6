"""Under-/over-training verdicts on synthetic per-epoch curves."""

import pytest

from sparse_transfer.transfer.verdict import THRESHOLDS, loss_key, training_verdict


def curve(metrics, losses):
    return [{"epoch": i + 1, "eval_accuracy": m, "eval_loss": l} for i, (m, l) in enumerate(zip(metrics, losses))]


@pytest.mark.parametrize("metrics, losses, expected, best_epoch", [
    ([0.60, 0.65, 0.70], [0.9, 0.8, 0.7], "undertrained", 3),          # both still improving at the end
    ([0.60, 0.70, 0.68], [0.9, 0.7, 0.80], "overfitting", 2),          # loss 14% above the best epoch's
    ([0.60, 0.70, 0.69], [0.9, 0.7, 0.72], "converged", 2),            # loss up 2.9%: under the 5% threshold
    ([0.60, 0.70, 0.701], [0.9, 0.7, 0.69], "converged", 3),           # +0.1 point: not "still rising"
    ([0.60, 0.65, 0.70], [0.9, 0.8, 0.85], "converged", 3),            # metric up but loss up: not undertrained
    ([0.70, 0.70, 0.70], [0.7, 0.8, 0.9], "overfitting", 1),           # ties: the earliest epoch is the best
    ([0.70], [0.7], "undetermined", 1),
])
def test_verdicts_on_synthetic_curves(metrics, losses, expected, best_epoch):
    verdict = training_verdict(curve(metrics, losses), "eval_accuracy")
    assert verdict["verdict"] == expected
    assert verdict["best_epoch"] == best_epoch and verdict["epochs"] == len(metrics)
    assert verdict["advice"]
    assert "gradual_unfreeze" not in verdict["advice"]  # not measured to beat training longer


def test_undertrained_advice_names_the_measured_best_recipe():
    verdict = training_verdict(curve([0.60, 0.65, 0.70], [0.9, 0.8, 0.7]), "eval_accuracy")
    assert "--recipe extended_dense_transfer" in verdict["advice"] and "--num_train_epochs" in verdict["advice"]


def test_thresholds_live_in_one_place_and_move_the_verdict():
    rows = curve([0.60, 0.70, 0.69], [0.9, 0.7, 0.72])
    assert THRESHOLDS.loss_rise == 0.05 and THRESHOLDS.metric_rise == 0.002
    from sparse_transfer.transfer.verdict import VerdictThresholds

    assert training_verdict(rows, "eval_accuracy", thresholds=VerdictThresholds(loss_rise=0.02))["verdict"] == \
        "overfitting"


def test_mnli_keys():
    rows = [{"epoch": 1, "eval_matched_accuracy": 0.5, "eval_matched_loss": 1.0},
            {"epoch": 2, "eval_matched_accuracy": 0.6, "eval_matched_loss": 0.9}]
    assert loss_key("eval_matched_accuracy", "accuracy") == "eval_matched_loss"
    assert training_verdict(rows, "eval_matched_accuracy", "eval_matched_loss")["verdict"] == "undertrained"
