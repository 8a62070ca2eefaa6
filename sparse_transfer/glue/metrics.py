"""GLUE metrics, computed offline with scikit-learn and SciPy (no hub download)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, classification_report, f1_score, matthews_corrcoef

from .tasks import GlueTask

_METRICS = {
    "accuracy": lambda p, y: accuracy_score(y, p),
    "f1": lambda p, y: f1_score(y, p),  # positive class 1 (equivalent / duplicate)
    "f1_macro": lambda p, y: f1_score(y, p, average="macro"),  # own tasks: every class counts alike
    "matthews_correlation": lambda p, y: matthews_corrcoef(y, p),
    "pearson": lambda p, y: pearsonr(p, y)[0],
    "spearmanr": lambda p, y: spearmanr(p, y)[0],
}


def glue_metrics(task: GlueTask, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`predictions` are logits (or regression outputs); returns the task's GLUE metrics."""
    predictions = np.asarray(predictions)
    if task.is_regression:
        predictions = predictions.reshape(-1)
    else:
        predictions = predictions.argmax(axis=-1)
    labels = np.asarray(labels).reshape(-1)
    return {name: float(_METRICS[name](predictions, labels)) for name in task.metrics}


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
