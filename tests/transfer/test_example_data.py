"""The example sentiment task of the first run: deterministic files, labels that follow negation."""

import csv
import re

import pytest

from sparse_transfer.transfer.example_data import NEGATIVE, POSITIVE, main, write_example_task
from sparse_transfer.utils.errors import ConfigurationError


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_files_are_the_same_for_a_seed_and_labelled_by_the_adjective_and_its_negation(tmp_path):
    train, dev = write_example_task(tmp_path / "a", train_size=300, dev_size=50, seed=1)
    assert [p.name for p in (train, dev)] == ["train.csv", "dev.csv"]
    rows = read(train)
    assert len(rows) == 300 and len(read(dev)) == 50 and list(rows[0]) == ["sentence", "label"]
    assert read(write_example_task(tmp_path / "b", 300, 50, seed=1)[0]) == rows
    assert read(write_example_task(tmp_path / "c", 300, 50, seed=2)[0]) != rows
    negated = 0
    for row in rows:
        (word,) = [w for w in POSITIVE + NEGATIVE if re.search(rf"\b{w}\b", row["sentence"])]
        flipped = f" not {word}" in row["sentence"]
        negated += flipped
        assert row["label"] == ("positive" if (word in POSITIVE) != flipped else "negative"), row
    assert 0.2 < negated / len(rows) < 0.4
    assert {row["label"] for row in rows} == {"positive", "negative"}


def test_too_small_a_task_is_refused(tmp_path, capsys):
    with pytest.raises(ConfigurationError, match="at least 2 training and 2 dev rows"):
        write_example_task(tmp_path, train_size=1)
    assert main([str(tmp_path / "d"), "--dev_size", "0"]) == 2
    assert capsys.readouterr().err.startswith("sparse-transfer example-data: error: the example task needs")
    assert not (tmp_path / "d").exists()
