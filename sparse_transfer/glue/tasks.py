"""The GLUE tasks: columns and labels as in the hub dataset `nyu-mll/glue`, the
original TSV layout of each task, and the metrics GLUE reports for it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sparse_transfer.utils.errors import ConfigurationError


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
    # test split -> (file, name of the prediction file a GLUE submission expects); test files always have a header
    test_splits: dict[str, tuple[str, str]] | None = None
    test_columns: dict[str, str] | None = None  # hub text column -> test TSV column, when not as in `columns`
    numeric_labels: bool = False  # the original files write labels as 0/1 (CoLA, SST-2, MRPC, QQP), not as names

    def test_files(self) -> dict[str, tuple[str, str]]:
        return self.test_splits or {"test": ("test.tsv", self.directory)}

    def test_column_map(self) -> dict[str, str | int]:
        return self.test_columns or {hub: src for hub, src in self.columns.items() if hub != "label"}


@dataclass(frozen=True)
class GlueTask:
    """A GLUE task, or a user's own task read from files (`custom`: no TSV layout,
    labels exactly the training file's, see `custom.py`)."""

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None  # None: regression (STS-B)
    metrics: tuple[str, ...]
    main_metric: str
    tsv: TsvLayout | None
    eval_splits: tuple[str, ...] = ("validation",)
    label_column: str = "label"
    custom: bool = False

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    def with_main_metric(self, metric: str) -> GlueTask:
        """The task ranked by another of its metrics (`--metric_for_best_model`)."""
        metric = metric.removeprefix("eval_")
        if metric not in self.metrics:
            raise ConfigurationError(
                f"--metric_for_best_model {metric} is not a metric of task {self.name}; choose one of "
                f"{', '.join(self.metrics)}")
        return replace(self, main_metric=metric)


def _pair(first: str, second: str) -> dict[str, str]:
    return {"sentence1": first, "sentence2": second}


TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",), "matthews_correlation",
            TsvLayout("CoLA", {"train": "train.tsv", "validation": "dev.tsv"},
                      {"sentence": 3, "label": 1}, header=False, test_columns={"sentence": "sentence"},
                      numeric_labels=True),
        ),
        GlueTask(
            "sst2", ("sentence",), ("negative", "positive"), ("accuracy",), "accuracy",
            TsvLayout("SST-2", {"train": "train.tsv", "validation": "dev.tsv"}, {"sentence": "sentence", "label": "label"},
                      numeric_labels=True),
        ),
        GlueTask(
            "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"), "f1",
            TsvLayout("MRPC", {"train": "train.tsv", "validation": "dev.tsv"},
                      {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}, numeric_labels=True),
        ),
        GlueTask(
            "stsb", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"), "pearson",
            TsvLayout("STS-B", {"train": "train.tsv", "validation": "dev.tsv"},
                      {**_pair("sentence1", "sentence2"), "label": "score"}),
        ),
        GlueTask(
            "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("accuracy", "f1"), "accuracy",
            TsvLayout("QQP", {"train": "train.tsv", "validation": "dev.tsv"},
                      {"question1": "question1", "question2": "question2", "label": "is_duplicate"}, numeric_labels=True),
        ),
        GlueTask(
            "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",), "accuracy",
            TsvLayout("MNLI", {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                               "validation_mismatched": "dev_mismatched.tsv"},
                      {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
                      test_splits={"test_matched": ("test_matched.tsv", "MNLI-m"),
                                   "test_mismatched": ("test_mismatched.tsv", "MNLI-mm")}),
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
