"""The pretraining corpus, read and turned into examples the way BERT builds them.

A corpus is a plain text file (one segment per line, documents separated by blank
lines), a CSV / JSON / JSON-lines file with a text column (each row a segment, one
document), or a `datasets` name. Each segment starts one example: with probability
`pair_fraction` it is followed by a second segment, `[CLS] a [SEP] b [SEP]` with token
types 0/1 (the next line, or with probability `random_pair_fraction` a random line from
elsewhere), otherwise it stands alone.
"""

from __future__ import annotations

import os
import random

from datasets import Dataset

from sparse_transfer.utils.errors import ConfigurationError

TEXT_SUFFIXES = (".txt", ".text")
TABLE_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


class CorpusError(ConfigurationError):
    pass


def read_documents(source: str, text_column: str = "text", dataset_config: str | None = None,
                   split: str = "train") -> list[list[str]]:
    """Documents as lists of non-empty segments."""
    if os.path.isfile(source):
        if source.endswith(TEXT_SUFFIXES):
            documents = _text_documents(source)
        else:
            documents = [_table_column(source, text_column)]
    elif os.path.sep in source or source.endswith(TEXT_SUFFIXES + tuple(TABLE_FORMATS)):
        raise CorpusError(f"corpus file {source} does not exist; give --train_file a text, CSV or JSON file")
    else:
        from datasets import load_dataset

        dataset = load_dataset(source, dataset_config, split=split)
        if text_column not in dataset.column_names:
            raise CorpusError(f"dataset {source} has no column {text_column!r} (columns: {dataset.column_names}); "
                              "set data.text_column in the recipe")
        documents = [[line for line in dataset[text_column] if line and line.strip()]]
    documents = [document for document in documents if document]
    if not documents:
        raise CorpusError(f"corpus {source} holds no text; give a file with one sentence or paragraph per line")
    return documents


def _text_documents(path: str) -> list[list[str]]:
    documents, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                current.append(line)
            elif current:
                documents.append(current)
                current = []
    if current:
        documents.append(current)
    return documents


def _table_column(path: str, text_column: str) -> list[str]:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in TABLE_FORMATS:
        raise CorpusError(f"corpus {path} is not a text (.txt), CSV, TSV or JSON file; convert it to one line per segment")
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    try:
        dataset = Dataset.from_csv(path, **kwargs) if TABLE_FORMATS[suffix] == "csv" else Dataset.from_json(path)
    except Exception as error:  # datasets raises many types for unreadable files
        raise CorpusError(f"cannot read corpus {path}: {str(error).splitlines()[0]}") from None
    if text_column not in dataset.column_names:
        raise CorpusError(f"corpus {path} has no column {text_column!r} (columns: {dataset.column_names}); "
                          "set data.text_column in the recipe")
    return [str(text).strip() for text in dataset[text_column] if text is not None and str(text).strip()]


def noisy_copy(line: str, rng: random.Random, drop: float = 0.3) -> str:
    """The line with a `drop` share of its words left out (at least one word kept)."""
    words = line.split()
    kept = [word for word in words if rng.random() >= drop]
    return " ".join(kept or words[:1])


def segment_examples(documents: list[list[str]], pair_fraction: float, random_pair_fraction: float,
                     seed: int = 0, copy_pair_fraction: float = 0.0) -> tuple[list[str], list[str | None]]:
    """(first segments, second segments or None), one example per segment of the corpus.
    Of the pairs, `copy_pair_fraction` pair a line with a noisy copy of itself (words
    shared across the segments, as in paraphrase and similarity tasks)."""
    rng = random.Random(seed)
    lines = [line for document in documents for line in document]
    firsts, seconds = [], []
    for index, line in enumerate(lines):
        second = None
        if rng.random() < pair_fraction and len(lines) > 1:
            if copy_pair_fraction and rng.random() < copy_pair_fraction:
                second = noisy_copy(line, rng)
            elif rng.random() < random_pair_fraction or index + 1 == len(lines):
                other = rng.randrange(len(lines) - 1)
                second = lines[other + (other >= index)]  # any line but this one
            else:
                second = lines[index + 1]  # the next line, in this document or the next one
        firsts.append(line)
        seconds.append(second)
    return firsts, seconds


def tokenized_corpus(tokenizer, documents: list[list[str]], max_seq_length: int, pair_fraction: float,
                     random_pair_fraction: float, seed: int = 0, copy_pair_fraction: float = 0.0) -> Dataset:
    """input_ids / token_type_ids / attention_mask per example, truncated to max_seq_length
    (the longer segment first), unpadded: the collator pads each batch."""
    firsts, seconds = segment_examples(documents, pair_fraction, random_pair_fraction, seed, copy_pair_fraction)
    pairs = [i for i, second in enumerate(seconds) if second is not None]
    singles = [i for i, second in enumerate(seconds) if second is None]
    encoded: dict[int, dict] = {}
    for indices, with_pair in ((pairs, True), (singles, False)):
        if not indices:
            continue
        batch = tokenizer([firsts[i] for i in indices], [seconds[i] for i in indices] if with_pair else None,
                          truncation="longest_first" if with_pair else True, max_length=max_seq_length)
        for position, i in enumerate(indices):
            encoded[i] = {key: values[position] for key, values in batch.items()}
    rows = [encoded[i] for i in range(len(firsts))]
    return Dataset.from_list(rows)
