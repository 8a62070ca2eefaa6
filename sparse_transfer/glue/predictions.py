"""Predictions on unlabelled rows: GLUE submission files (`{TASK}.tsv`, `index` and
`prediction`, labels written as the original GLUE files write them) and, for a user's
own task, the input rows with the prediction and every class's probability as CSV."""

from __future__ import annotations

import os

import numpy as np
import torch
from datasets import Dataset

from sparse_transfer.glue.tasks import GlueTask
from sparse_transfer.utils.io import atomic_open

SUBMISSION_DIR = "predictions"
OWN_TASK_FILE = "predictions.csv"


def predicted_values(task: GlueTask, logits: np.ndarray) -> list:
    """Floats for regression; for classification the label as the task's files write it."""
    logits = np.asarray(logits)
    if task.is_regression:
        return [float(value) for value in logits.reshape(-1)]
    indices = logits.argmax(axis=-1)
    if task.tsv is not None and task.tsv.numeric_labels:
        return [int(index) for index in indices]
    return [task.label_names[index] for index in indices]


def class_probabilities(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64), dim=-1).numpy()


def write_submission(task: GlueTask, split: str, logits: np.ndarray, output_dir: str) -> str:
    """`predictions/{TASK}.tsv` (`MNLI-m.tsv` / `MNLI-mm.tsv` for MNLI's two test sets)."""
    name = task.tsv.test_files()[split][1] if task.tsv else task.name
    path = os.path.join(output_dir, SUBMISSION_DIR, f"{name}.tsv")
    with atomic_open(path) as f:
        f.write("index\tprediction\n")
        for index, value in enumerate(predicted_values(task, logits)):
            f.write(f"{index}\t{value:.3f}\n" if task.is_regression else f"{index}\t{value}\n")
    return path


def write_own_predictions(task: GlueTask, rows: Dataset, logits: np.ndarray, output_dir: str) -> str:
    """The test file's rows plus `prediction` and, for classification, `probability_<label>` per class."""
    table = rows.to_pandas()
    table["prediction"] = predicted_values(task, logits)
    if not task.is_regression:
        for name, column in zip(task.label_names, class_probabilities(logits).T):
            table[f"probability_{name}"] = column
    path = os.path.join(output_dir, OWN_TASK_FILE)
    with atomic_open(path, newline="") as f:
        table.to_csv(f, index=False)
    return path
