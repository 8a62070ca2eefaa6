"""GLUE data, three ways into one shape: the hub dataset `nyu-mll/glue`, a directory
in the original GLUE TSV layout, or CSV / JSON / TSV files like Hugging Face's
run_glue. Whatever the source, the result has the hub's columns and features
(e.g. RTE `not_entailment` = 1), so the rest of the pipeline has one code path.
"""

from __future__ import annotations

import csv
import os

from datasets import ClassLabel, DatasetDict, Features, Value, load_dataset

from sparse_transfer.glue.tasks import GlueTask
from sparse_transfer.utils.errors import ConfigurationError


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
    if train_file or validation_file or task.custom:
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
        raw[split] = _read_glue_tsv(path, column_names, layout.header, cache_dir)
        columns = {hub: (column_names[src] if isinstance(src, int) else src) for hub, src in layout.columns.items()}
    return _to_hub_format(task, DatasetDict(raw), columns, source=directory)


def _read_glue_tsv(path: str, column_names: list[str], header: bool, cache_dir: str | None):
    """One GLUE TSV file, every column a string."""
    return load_dataset(
        "csv",
        data_files={"train": path},
        split="train",
        delimiter="\t",
        quoting=csv.QUOTE_NONE,  # GLUE sentences contain quote characters
        keep_default_na=False,  # "NA" and "null" are words here, not missing values
        encoding="utf-8-sig",  # MRPC starts with a byte-order mark
        header=0 if header else None,
        column_names=None if header else column_names,
        features=Features({name: Value("string") for name in column_names}),
        cache_dir=cache_dir,
    )


def _tsv_header(path: str) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), [])


FILE_KINDS = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json"}  # extension -> datasets builder
FLAGS = {"train": "--train_file", "validation": "--validation_file", "test": "--test_file"}


def read_table_files(files: dict[str, str], cache_dir: str | None = None) -> DatasetDict:
    """CSV, TSV or JSON(L) files with a header (split -> path), all of one kind, each checked
    for existence, format and at least one row (one-line errors naming the file and flag)."""
    kinds = set()
    for split, path in files.items():
        flag = FLAGS.get(split, split)
        if not os.path.isfile(path):
            raise GlueDataError(f"{flag} {path} does not exist")
        extension = path.rsplit(".", 1)[-1].lower()
        if extension not in FILE_KINDS:
            raise GlueDataError(f"{flag} {path} is not a .csv, .tsv, .json or .jsonl file; convert it to one of those")
        lines = _first_lines(path, 2)
        if not lines:
            raise GlueDataError(f"{flag} {path} is empty; it needs a header and at least one example")
        if FILE_KINDS[extension] == "csv" and len(lines) < 2:
            raise GlueDataError(f"{flag} {path} has a header but no examples")
        kinds.add(extension)
    if len(kinds) != 1:
        raise GlueDataError(f"{', '.join(FLAGS.get(s, s) for s in files)} must be files of one kind, got "
                            f"{', '.join(sorted(kinds))}")
    (extension,) = kinds
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if extension == "tsv" else {}
    if FILE_KINDS[extension] == "csv":
        options["keep_default_na"] = False  # "NA" and "null" are words here, not missing values
    try:
        raw = load_dataset(FILE_KINDS[extension], data_files=files, cache_dir=cache_dir, **options)
    except Exception as error:  # pyarrow and pandas raise many kinds for a malformed file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GlueDataError(f"cannot read {', '.join(files.values())} as {extension} ({message}); "
                            "check the file's format and header") from None
    return raw


def _first_lines(path: str, count: int) -> list[str]:
    """Up to `count` non-blank lines from the start of the file."""
    lines = []
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            if line.strip():
                lines.append(line)
                if len(lines) == count:
                    break
    return lines


def _load_files(task: GlueTask, train_file: str | None, validation_file: str | None, cache_dir) -> DatasetDict:
    if not (train_file and validation_file):
        raise GlueDataError("give both --train_file and --validation_file (CSV, JSON or TSV)")
    raw = read_table_files({"train": train_file, "validation": validation_file}, cache_dir)
    raw = DatasetDict({"train": raw["train"], task.eval_splits[0]: raw["validation"]})
    columns = {c: c for c in task.text_columns} | {"label": task.label_column}
    return _to_hub_format(task, raw, columns, source=f"{train_file}, {validation_file}")


def load_test(task: GlueTask, data_dir: str | None = None, test_file: str | None = None,
              cache_dir: str | None = None) -> DatasetDict:
    """Unlabelled rows to predict (split -> rows, every column of the file kept, text
    columns named as the task names them): --test_file, or the GLUE test TSVs in --data_dir."""
    if test_file:
        raw = read_table_files({"test": test_file}, cache_dir)
        splits, columns, source = {"test": raw["test"]}, {c: c for c in task.text_columns}, test_file
    elif data_dir and task.tsv:
        splits = {}
        for split, (filename, _) in task.tsv.test_files().items():
            path = os.path.join(data_dir, task.tsv.directory, filename)
            if not os.path.isfile(path):
                raise GlueDataError(f"--do_predict needs {path} (the GLUE test file) or --test_file FILE")
            splits[split] = _read_glue_tsv(path, _tsv_header(path), True, cache_dir)  # test files have a header
        columns, source = task.tsv.test_column_map(), os.path.join(data_dir, task.tsv.directory)
    else:
        raise GlueDataError("--do_predict needs --test_file FILE, or --data_dir with the GLUE test files")
    for split, dataset in splits.items():
        missing = [src for src in columns.values() if src not in dataset.column_names]
        if missing:
            raise GlueDataError(f"test data in {source} has no column {missing[0]!r} needed by task {task.name} "
                                f"(it has {', '.join(dataset.column_names)})")
        splits[split] = dataset.rename_columns({src: hub for hub, src in columns.items() if src != hub})
    return DatasetDict(splits)


def _to_hub_format(task: GlueTask, raw: DatasetDict, columns: dict[str, str], source: str) -> DatasetDict:
    """Rename to hub columns, turn labels into the hub's ints (or floats), add `idx`."""
    for split, dataset in raw.items():
        missing = [c for c in columns.values() if c not in dataset.column_names]
        if missing:
            raise GlueDataError(
                f"{split} data in {source} has no column {missing[0]!r} needed by task {task.name} "
                f"(it has {', '.join(dataset.column_names)}); rename it, or set --text_columns / --label_column"
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
    if task.custom:
        raise GlueDataError(f"label {text!r} in {source} is not among the training file's labels "
                            f"({', '.join(task.label_names)}); every label must occur in --train_file")
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
