"""GLUE metrics through Hugging Face `evaluate`, offline: the package ships its own
`evaluate` module (`glue_metric/`), whose definitions are scikit-learn's and SciPy's, the
same as `evaluate.load("glue", task)` fetches from the hub online."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
    matthews_corrcoef,
)

from sparse_transfer.glue.tasks import GlueTask

METRIC_MODULE = Path(__file__).resolve().parent / "glue_metric"
METRICS = {
    "accuracy": lambda p, y: accuracy_score(y, p),
    "f1": lambda p, y: f1_score(y, p),  # positive class 1 (equivalent / duplicate)
    "f1_macro": lambda p, y: f1_score(y, p, average="macro"),  # own tasks: every class counts alike
    "matthews_correlation": lambda p, y: matthews_corrcoef(y, p),
    "pearson": lambda p, y: pearsonr(p, y)[0],
    "spearmanr": lambda p, y: spearmanr(p, y)[0],
}


def metric_names(config_name: str) -> tuple[str, ...]:
    """What the metric module reports for a GLUE task or an own task's kind."""
    from sparse_transfer.glue.custom import CLASSIFICATION_METRICS, REGRESSION_METRICS
    from sparse_transfer.glue.tasks import TASKS

    own_tasks = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}
    return own_tasks[config_name] if config_name in own_tasks else TASKS[config_name].metrics


def metric_config(task: GlueTask) -> str:
    if task.custom:
        return "regression" if task.is_regression else "classification"
    return task.name


@functools.lru_cache(maxsize=None)
def load_metric(config_name: str):
    """The `evaluate` module for a GLUE task name (or `classification` / `regression`),
    loaded from the package: no hub, and nothing written to disk (every process of a
    distributed run computes on its own)."""
    import evaluate

    return evaluate.load(str(METRIC_MODULE), config_name, keep_in_memory=True)


def glue_metrics(task: GlueTask, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`predictions` are logits (or regression outputs); returns the task's GLUE metrics."""
    predictions = np.asarray(predictions)
    if task.is_regression:
        predictions = predictions.reshape(-1)
    else:
        predictions = predictions.argmax(axis=-1)
    labels = np.asarray(labels).reshape(-1)
    scores = load_metric(metric_config(task)).compute(predictions=predictions, references=labels)
    return {name: scores[name] for name in task.metrics}


def per_class_report(task: GlueTask, logits: np.ndarray, labels: np.ndarray) -> dict:
    """Precision, recall, F1 and support of every class, by label name (classification only)."""
    predictions = np.asarray(logits).argmax(axis=-1)
    return classification_report(np.asarray(labels).reshape(-1), predictions, labels=list(range(task.num_labels)),
                                 target_names=list(task.label_names), output_dict=True, zero_division=0)


def metrics_function(task: GlueTask):
    """A `compute_metrics` for `Trainer`."""

    def compute_metrics(eval_prediction):
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        return glue_metrics(task, logits, eval_prediction.label_ids)

    return compute_metrics
