"""GLUE metrics against values computed by hand."""

import math

import numpy as np
import pytest

from sparse_transfer.glue import get_task, glue_metrics


def logits_for(classes, num_labels=2):
    return np.eye(num_labels)[classes]


# predictions 1,1,0,0,1 vs labels 1,0,0,1,1: TP=2, FP=1, FN=1, TN=1
PREDICTED, GOLD = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
ACCURACY = 3 / 5
F1 = 2 * 2 / (2 * 2 + 1 + 1)  # 2TP / (2TP + FP + FN) = 2/3
MCC = (2 * 1 - 1 * 1) / math.sqrt((2 + 1) * (2 + 1) * (1 + 1) * (1 + 1))  # 1/6


@pytest.mark.parametrize("task_name, expected", [
    ("rte", {"accuracy": ACCURACY}),
    ("qnli", {"accuracy": ACCURACY}),
    ("sst2", {"accuracy": ACCURACY}),
    ("mrpc", {"f1": F1, "accuracy": ACCURACY}),
    ("qqp", {"accuracy": ACCURACY, "f1": F1}),
    ("cola", {"matthews_correlation": MCC}),
])
def test_classification_metrics(task_name, expected):
    assert glue_metrics(get_task(task_name), logits_for(PREDICTED), np.array(GOLD)) == pytest.approx(expected)


def test_mnli_three_way_accuracy():
    predicted, gold = [0, 1, 2, 2], [0, 1, 1, 2]
    assert glue_metrics(get_task("mnli"), logits_for(predicted, 3), np.array(gold)) == {"accuracy": 0.75}


def test_stsb_pearson_and_spearman():
    predicted = np.array([[1.0], [2.0], [3.0], [5.0]])
    gold = np.array([1.0, 3.0, 2.0, 4.0])
    # Pearson by hand: x mean 2.75, y mean 2.5; sum dx*dy = 5.5; sum dx^2 = 8.75; sum dy^2 = 5
    pearson = 5.5 / math.sqrt(8.75 * 5)
    # ranks x: 1,2,3,4; y: 1,3,2,4 -> d^2 = 0,1,1,0 -> 1 - 6*2 / (4*15) = 0.8
    assert glue_metrics(get_task("stsb"), predicted, gold) == pytest.approx({"pearson": pearson, "spearmanr": 0.8})


def test_the_metric_is_an_evaluate_module_that_loads_offline_from_the_package():
    import evaluate

    from sparse_transfer.glue.metrics import load_metric

    metric = load_metric("mrpc")
    assert isinstance(metric, evaluate.EvaluationModule)
    assert metric.compute(predictions=PREDICTED, references=GOLD) == pytest.approx({"accuracy": ACCURACY, "f1": F1})
    assert load_metric("cola").compute(predictions=PREDICTED, references=GOLD) == pytest.approx(
        {"matthews_correlation": MCC})
    scores = load_metric("classification").compute(predictions=PREDICTED, references=GOLD)
    assert scores == pytest.approx({"accuracy": ACCURACY, "f1_macro": (F1 + 0.5) / 2, "matthews_correlation": MCC})
