"""GLUE data, three ways into one shape: the hub dataset `nyu-mll/glue`, a directory
in the original GLUE TSV layout, or CSV / JSON / TSV files like Hugging Face's
run_glue. Whatever the source, the result has the hub's columns and features
(e.g. RTE `not_entailment` = 1), so the rest of the pipeline has one code path.
"""

from __future__ import annotations

import csv
import os

from datasets import ClassLabel, DatasetDict, Features, Value, load_dataset

from ..errors import ConfigurationError
from .tasks import GlueTask


class GlueDataError(ConfigurationError):
    pass


def hub_features(task: GlueTask) -> Features:
    label = Value("float32") if task.is_regression else ClassLabel(names=list(task.label_names))
    return Features({**{c: Value("string") for c in task.text_columns}, "label": label, "idx": Value("int32")})


def load_glue(
    task: GlueTask,
    data_dir: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    cache_dir: str | None = None,
) -> DatasetDict:
    """Splits `train` and the task's evaluation splits, with the hub's features."""
    if train_file or validation_file:
        return _load_files(task, train_file, validation_file, cache_dir)
    if data_dir:
        return _load_glue_tsv(task, data_dir, cache_dir)
    return load_dataset("nyu-mll/glue", task.name, cache_dir=cache_dir)


def _load_glue_tsv(task: GlueTask, data_dir: str, cache_dir: str | None) -> DatasetDict:
    layout = task.tsv
    directory = os.path.join(data_dir, layout.directory)
    if not os.path.isdir(directory):
        raise GlueDataError(
            f"data directory {directory} not found: --data_dir must hold the original GLUE layout "
            f"({layout.directory}/{', '.join(layout.splits.values())})"
        )
    splits = {}
    for split, filename in layout.splits.items():
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            raise GlueDataError(f"missing file {path} for task {task.name}; expected {', '.join(layout.splits.values())}")
        splits[split] = path
    raw, columns = {}, {}
    for split, path in splits.items():
        # Each file has its own header (MNLI's dev files carry label1..label5).
        header = _tsv_header(path)
        column_names = header if layout.header else [f"column{i}" for i in range(len(header))]
        raw[split] = load_dataset(
            "csv",
            data_files={"train": path},
            split="train",
            delimiter="\t",
            quoting=csv.QUOTE_NONE,  # GLUE sentences contain quote characters
            keep_default_na=False,  # "NA" and "null" are words here, not missing values
            encoding="utf-8-sig",  # MRPC starts with a byte-order mark
            header=0 if layout.header else None,
            column_names=None if layout.header else column_names,
            features=Features({name: Value("string") for name in column_names}),
            cache_dir=cache_dir,
        )
        columns = {hub: (column_names[src] if isinstance(src, int) else src) for hub, src in layout.columns.items()}
    return _to_hub_format(task, DatasetDict(raw), columns, source=directory)


def _tsv_header(path: str) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), [])


def _load_files(task: GlueTask, train_file: str | None, validation_file: str | None, cache_dir) -> DatasetDict:
    if not (train_file and validation_file):
        raise GlueDataError("give both --train_file and --validation_file (CSV, JSON or TSV)")
    files = {"train": train_file, task.eval_splits[0]: validation_file}
    extensions = set()
    for path in files.values():
        if not os.path.isfile(path):
            raise GlueDataError(f"missing file {path}")
        extensions.add(path.rsplit(".", 1)[-1].lower())
    if len(extensions) != 1 or not extensions <= {"csv", "json", "jsonl", "tsv"}:
        raise GlueDataError(f"--train_file and --validation_file must both be .csv, .json(l) or .tsv, got {extensions}")
    (extension,) = extensions
    if extension in ("json", "jsonl"):
        raw = load_dataset("json", data_files=files, cache_dir=cache_dir)
    else:
        raw = load_dataset("csv", data_files=files, cache_dir=cache_dir, keep_default_na=False,
                           **({"delimiter": "\t", "quoting": csv.QUOTE_NONE} if extension == "tsv" else {}))
    columns = {c: c for c in (*task.text_columns, "label")}
    return _to_hub_format(task, raw, columns, source=", ".join(files.values()))


def _to_hub_format(task: GlueTask, raw: DatasetDict, columns: dict[str, str], source: str) -> DatasetDict:
    """Rename to hub columns, turn labels into the hub's ints (or floats), add `idx`."""
    for split, dataset in raw.items():
        missing = [c for c in columns.values() if c not in dataset.column_names]
        if missing:
            raise GlueDataError(
                f"{split} data in {source} has no column {missing[0]!r} needed by task {task.name} "
                f"(it has {', '.join(dataset.column_names)})"
            )
    label_column = columns["label"]

    def convert(example, index):
        row = {hub: str(example[src]) for hub, src in columns.items() if hub != "label"}
        row["label"] = _label(task, example[label_column], source)
        row["idx"] = index
        return row

    features = hub_features(task)
    return DatasetDict(
        {
            split: dataset.map(convert, with_indices=True, remove_columns=dataset.column_names, features=features,
                               desc=f"{task.name} {split} to hub format")
            for split, dataset in raw.items()
        }
    )


def _label(task: GlueTask, value, source: str):
    text = str(value).strip()
    if task.is_regression:
        try:
            return float(text)
        except ValueError:
            raise GlueDataError(f"label {text!r} in {source} is not a number, as task {task.name} needs") from None
    if text in task.label_names:
        return task.label_names.index(text)
    if text.isdigit() and int(text) < task.num_labels:
        return int(text)
    raise GlueDataError(
        f"label {text!r} in {source} does not fit task {task.name}: use 0..{task.num_labels - 1} "
        f"or {', '.join(task.label_names)}"
    )


def tokenize(raw: DatasetDict, tokenizer, task: GlueTask, max_seq_length: int = 128,
             overwrite_cache: bool = False) -> DatasetDict:
    """Truncate to `max_seq_length`; padding is dynamic, per batch (DataCollatorWithPadding)."""

    def encode(batch):
        return tokenizer(*(batch[c] for c in task.text_columns), truncation=True, max_length=max_seq_length)

    return raw.map(encode, batched=True, remove_columns=list(task.text_columns),
                   load_from_cache_file=not overwrite_cache, desc="tokenizing")
