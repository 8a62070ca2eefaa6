import json

import pytest
from helpers import minilm_dir

from sparse_transfer.upstream.data import (
    CorpusError,
    read_documents,
    segment_examples,
    tokenized_corpus,
)


def test_text_documents_are_split_on_blank_lines(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a one\na two\n\n\nb one\n  \nc one\nc two\nc three\n")
    assert read_documents(str(path)) == [["a one", "a two"], ["b one"], ["c one", "c two", "c three"]]


def test_csv_and_json_read_their_text_column(tmp_path):
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("id,text\n1,first line\n2,second line\n3,\n")
    assert read_documents(str(csv_path)) == [["first line", "second line"]]
    json_path = tmp_path / "c.jsonl"
    json_path.write_text("\n".join(json.dumps({"body": t}) for t in ["x y", "z"]) + "\n")
    assert read_documents(str(json_path), text_column="body") == [["x y", "z"]]


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", "\n\n  \n", "holds no text"),
    ("c.csv", "id,body\n1,a\n", "has no column 'text'"),
    ("c.parquet", "x", "is not a text"),
])
def test_bad_corpora_get_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorpusError, match=message):
        read_documents(str(path))


def test_missing_corpus_file(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        read_documents(str(tmp_path / "nope.txt"))


DOCUMENTS = [["a1", "a2", "a3"], ["b1"], ["c1", "c2"]]
LINES = ["a1", "a2", "a3", "b1", "c1", "c2"]


def test_single_segments_only():
    firsts, seconds = segment_examples(DOCUMENTS, pair_fraction=0.0, random_pair_fraction=0.5)
    assert firsts == LINES and seconds == [None] * 6


def test_consecutive_pairs_take_the_next_line_across_documents():
    firsts, seconds = segment_examples(DOCUMENTS, pair_fraction=1.0, random_pair_fraction=0.0)
    assert seconds[:5] == LINES[1:]  # a3 -> b1: the next document
    assert seconds[5] in LINES[:5]  # the last line has no next one: a random other line


def test_random_pairs_never_pair_a_line_with_itself_and_are_seeded():
    firsts, seconds = segment_examples(DOCUMENTS * 20, pair_fraction=1.0, random_pair_fraction=1.0, seed=3)
    lines = [line for document in DOCUMENTS * 20 for line in document]
    assert all(second is not None for second in seconds)
    assert len(set(seconds)) > 1
    assert segment_examples(DOCUMENTS * 20, 1.0, 1.0, seed=3) == (firsts, seconds)
    assert segment_examples(DOCUMENTS * 20, 1.0, 1.0, seed=4) != (firsts, seconds)
    assert len(firsts) == len(lines)


def test_mixed_examples_have_segment_b_token_types_and_are_truncated():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    documents = [["the cat sat on the mat " * 10, "a dog barked"], ["rain fell", "snow fell"]] * 10
    corpus = tokenized_corpus(tokenizer, documents, max_seq_length=16, pair_fraction=0.5, random_pair_fraction=0.5)
    assert len(corpus) == 40
    pairs = [row for row in corpus if 1 in row["token_type_ids"]]
    singles = [row for row in corpus if 1 not in row["token_type_ids"]]
    assert pairs and singles
    for row in pairs:
        assert row["input_ids"].count(tokenizer.sep_token_id) == 2
        first_b = row["token_type_ids"].index(1)
        assert row["input_ids"][first_b - 1] == tokenizer.sep_token_id
    assert max(len(row["input_ids"]) for row in corpus) == 16


def test_copy_pairs_pair_a_line_with_a_noisy_copy_of_itself():
    documents = [["the quick brown fox jumps over the lazy dog", "a b c d e f g h"]] * 10
    firsts, seconds = segment_examples(documents, pair_fraction=1.0, random_pair_fraction=0.0, copy_pair_fraction=1.0)
    for first, second in zip(firsts, seconds):
        words = second.split()
        assert words and set(words) <= set(first.split()) and len(words) <= len(first.split())
    assert any(len(s.split()) < len(f.split()) for f, s in zip(firsts, seconds))  # words were dropped
