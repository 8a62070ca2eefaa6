"""The GLUE tasks: columns and labels as in the hub dataset `nyu-mll/glue`, the
original TSV layout of each task, and the metrics GLUE reports for it."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError


class UnknownTaskError(ConfigurationError):
    pass


@dataclass(frozen=True)
class TsvLayout:
    """Where the original GLUE distribution keeps a task, and which TSV columns feed
    which hub columns (column names, or positions for header-less files)."""

    directory: str
    splits: dict[str, str]  # hub split -> file name
    columns: dict[str, str | int]  # hub column -> TSV column
    header: bool = True


@dataclass(frozen=True)
class GlueTask:
    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None  # None: regression (STS-B)
    metrics: tuple[str, ...]
    main_metric: str
    tsv: TsvLayout
    eval_splits: tuple[str, ...] = ("validation",)

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)


def _pair(first: str, second: str) -> dict[str, str]:
    return {"sentence1": first, "sentence2": second}


TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",), "matthews_correlation",
            TsvLayout("CoLA", {"train": "train.tsv", "validation": "dev.tsv"},
                      {"sentence": 3, "label": 1}, header=False),
        ),
        GlueTask(
            "sst2", ("sentence",), ("negative", "positive"), ("accuracy",), "accuracy",
            TsvLayout("SST-2", {"train": "train.tsv", "validation": "dev.tsv"}, {"sentence": "sentence", "label": "label"}),
        ),
        GlueTask(
            "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"), "f1",
            TsvLayout("MRPC", {"train": "train.tsv", "validation": "dev.tsv"},
                      {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}),
        ),
        GlueTask(
            "stsb", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"), "pearson",
            TsvLayout("STS-B", {"train": "train.tsv", "validation": "dev.tsv"},
                      {**_pair("sentence1", "sentence2"), "label": "score"}),
        ),
        GlueTask(
            "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("accuracy", "f1"), "accuracy",
            TsvLayout("QQP", {"train": "train.tsv", "validation": "dev.tsv"},
                      {"question1": "question1", "question2": "question2", "label": "is_duplicate"}),
        ),
        GlueTask(
            "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",), "accuracy",
            TsvLayout("MNLI", {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                               "validation_mismatched": "dev_mismatched.tsv"},
                      {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"}),
            eval_splits=("validation_matched", "validation_mismatched"),
        ),
        GlueTask(
            "qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",), "accuracy",
            TsvLayout("QNLI", {"train": "train.tsv", "validation": "dev.tsv"},
                      {"question": "question", "sentence": "sentence", "label": "label"}),
        ),
        GlueTask(
            "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",), "accuracy",
            TsvLayout("RTE", {"train": "train.tsv", "validation": "dev.tsv"},
                      {**_pair("sentence1", "sentence2"), "label": "label"}),
        ),
    )
}


def get_task(name: str) -> GlueTask:
    """Case and dash insensitive: `STS-B`, `sts_b` and `stsb` are the same task."""
    key = name.lower().replace("-", "").replace("_", "")
    if key == "wnli":
        raise UnknownTaskError(
            "task wnli is excluded, as in the paper and prior work (its dev set is adversarial to train/dev "
            f"overlap); choose one of {', '.join(TASKS)}"
        )
    if key not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[key]
