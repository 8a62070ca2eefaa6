"""A user's own text classification or regression task, read from CSV/TSV/JSON files
as Hugging Face's text-classification example reads them: text columns found by name,
labels and problem type inferred from the training file."""

from __future__ import annotations

from datasets import Dataset

from sparse_transfer.glue.data import GlueDataError, read_table_files
from sparse_transfer.glue.tasks import GlueTask, get_task

CUSTOM = "custom"
TEXT_COLUMN_NAMES = (("sentence1", "sentence2"), ("sentence",), ("text",))  # searched in this order
CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "matthews_correlation")
REGRESSION_METRICS = ("pearson", "spearmanr")
PROBLEM_TYPES = ("single_label_classification", "regression")


def resolve_task(task: str | None, train_file: str | None = None, text_columns: str | None = None,
                 label_column: str = "label", problem_type: str | None = None,
                 cache_dir: str | None = None) -> GlueTask:
    """A GLUE task by name, or (`--task custom`, or no --task with --train_file) the user's own."""
    if task and task.lower() != CUSTOM:
        return get_task(task)
    if not train_file:
        raise GlueDataError("give --task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte), or --train_file and "
                            "--validation_file for your own task")
    train = read_table_files({"train": train_file}, cache_dir)["train"]
    return custom_task(train, train_file, text_columns, label_column, problem_type)


def custom_task(train: Dataset, source: str, text_columns: str | None = None, label_column: str = "label",
                problem_type: str | None = None) -> GlueTask:
    columns = train.column_names
    if label_column not in columns:
        raise GlueDataError(f"{source} has no label column {label_column!r} (it has {', '.join(columns)}); "
                            "name it `label` or pass --label_column NAME")
    texts = _text_columns(columns, source, text_columns)
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise GlueDataError(f"--problem_type {problem_type} is not one of {', '.join(PROBLEM_TYPES)}")
    values = train[label_column]
    if any(value is None or str(value).strip() == "" for value in values):
        raise GlueDataError(f"{source} has examples without a label in column {label_column!r}")
    is_float = train.features[label_column].dtype.startswith("float")
    if problem_type == "regression" or (problem_type is None and is_float):
        if not all(_is_number(value) for value in values):
            raise GlueDataError(f"{source}: --problem_type regression needs numeric labels in {label_column!r}")
        return GlueTask(CUSTOM, texts, None, REGRESSION_METRICS, "pearson", None, label_column=label_column,
                        custom=True)
    distinct = set(values)
    names = sorted(distinct) if all(isinstance(v, int) for v in distinct) else sorted(str(v) for v in distinct)
    if len(names) < 2:
        raise GlueDataError(f"{source} has a single label ({names[0]}); classification needs at least two")
    return GlueTask(CUSTOM, texts, tuple(str(name) for name in names), CLASSIFICATION_METRICS, "accuracy", None,
                    label_column=label_column, custom=True)


def _text_columns(columns: list[str], source: str, given: str | None) -> tuple[str, ...]:
    if given:
        texts = tuple(name.strip() for name in given.split(",") if name.strip())
        missing = [name for name in texts if name not in columns]
        if not texts or len(texts) > 2 or missing:
            raise GlueDataError(f"--text_columns {given!r} must name one or two columns of {source} "
                                f"(it has {', '.join(columns)})")
        return texts
    for names in TEXT_COLUMN_NAMES:
        if all(name in columns for name in names):
            return names
    raise GlueDataError(f"{source} has no text column named sentence, text or sentence1 + sentence2 "
                        f"(it has {', '.join(columns)}); pass --text_columns NAME or --text_columns A,B")


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
