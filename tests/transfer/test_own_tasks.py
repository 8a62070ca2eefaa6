"""A user's own CSV / JSON / TSV task: labels and problem type from the training file,
end to end on the real MiniLM, and one-line errors for bad files."""

import csv
import json
import re

import numpy as np
import pytest

from sparse_transfer.glue.custom import resolve_task
from sparse_transfer.glue.data import GlueDataError, load_glue, read_table_files
from sparse_transfer.transfer import run as transfer_run

WORDS = {"negative": ["awful", "dull", "bad"], "neutral": ["fine", "okay", "average"],
         "positive": ["great", "lovely", "good"]}


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def sentiment_rows(n, offset=0):
    labels = sorted(WORDS)
    return [[f"the film was {WORDS[labels[i % 3]][(i + offset) % 3]} today", labels[i % 3]] for i in range(n)]


@pytest.fixture
def three_classes(tmp_path):
    return (write_csv(tmp_path / "train.csv", ["text", "label"], sentiment_rows(24)),
            write_csv(tmp_path / "dev.csv", ["text", "label"], sentiment_rows(9, 1)))


def test_labels_and_problem_type_come_from_the_training_file(tmp_path, three_classes):
    task = resolve_task(None, three_classes[0])
    assert (task.name, task.text_columns, task.label_names) == ("custom", ("text",), ("negative", "neutral", "positive"))
    assert task.main_metric == "accuracy" and task.metrics == ("accuracy", "f1_macro", "matthews_correlation")

    stars = write_csv(tmp_path / "stars.csv", ["review", "stars"], [["a", 10], ["b", 2], ["c", 1]])
    task = resolve_task("custom", stars, text_columns="review", label_column="stars")
    assert task.label_names == ("1", "2", "10")  # integers sorted as numbers
    assert resolve_task(None, stars, "review", "stars", "regression").is_regression

    scores = write_csv(tmp_path / "scores.tsv", ["sentence1", "sentence2", "label"],
                       [["a", "b", 0.5], ["c", "d", 4.0]], delimiter="\t")
    task = resolve_task(None, scores)
    assert task.is_regression and task.text_columns == ("sentence1", "sentence2") and task.main_metric == "pearson"
    assert task.with_main_metric("eval_spearmanr").main_metric == "spearmanr"
    assert resolve_task("STS-B").name == "stsb"  # a GLUE name is still a GLUE task


def test_labels_map_to_the_sorted_training_labels(tmp_path, three_classes):
    task = resolve_task(None, three_classes[0])
    data = load_glue(task, train_file=three_classes[0], validation_file=three_classes[1])
    assert data["train"][:3]["label"] == [0, 1, 2] and data["train"][:1]["text"] == ["the film was awful today"]


@pytest.mark.parametrize("make, flags, message", [
    (lambda d: write_csv(d / "t.csv", ["review", "label"], [["a", "x"], ["b", "y"]]), [],
     "t.csv has no text column named sentence, text or sentence1 + sentence2 (it has review, label); "
     "pass --text_columns NAME"),
    (lambda d: write_csv(d / "t.csv", ["text", "y"], [["a", "x"], ["b", "z"]]), [],
     "t.csv has no label column 'label' (it has text, y); name it `label` or pass --label_column NAME"),
    (lambda d: write_csv(d / "t.csv", ["text", "label"], [["a", "x"], ["b", "x"]]), [],
     "t.csv has a single label (x); classification needs at least two"),
    (lambda d: write_csv(d / "t.csv", ["text", "label"], [["a", "x"], ["b", "y"]]), ["text,nope"],
     "--text_columns 'text,nope' must name one or two columns"),
])
def test_bad_training_files(tmp_path, make, flags, message):
    with pytest.raises(GlueDataError, match=re.escape(message)):
        resolve_task(None, make(tmp_path), *flags)


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "--train_file {} is empty; it needs a header and at least one example"),
    ("header.csv", "text,label\n", "--train_file {} has a header but no examples"),
    ("notes.txt", "hello\n", "--train_file {} is not a .csv, .tsv, .json or .jsonl file"),
    ("broken.json", "{not json", "cannot read {} as json"),
])
def test_unreadable_files_are_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(GlueDataError, match=re.escape(message.format(path))):
        read_table_files({"train": str(path)})


def run(argv, capsys):
    status = transfer_run.main(argv)
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("validation, flags, message", [
    ([["the film was fine", "mixed"]], [],
     "label 'mixed' in {train}, {dev} is not among the training file's labels (negative, neutral, positive); "
     "every label must occur in --train_file"),
    ([["the film was fine", "neutral"]], ["--metric_for_best_model", "f2"],
     "--metric_for_best_model f2 is not a metric of task custom; choose one of accuracy, f1_macro, "
     "matthews_correlation"),
])
def test_bad_own_task_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, tiny_model_dir,
                                                                      three_classes, validation, flags, message):
    dev = write_csv(tmp_path / "odd.csv", ["text", "label"], validation)
    out = tmp_path / "out"
    status, err = run(["--model_name_or_path", str(tiny_model_dir), "--train_file", three_classes[0],
                       "--validation_file", dev, "--output_dir", str(out), *flags], capsys)
    assert status == 2 and err[-1] == "run_glue.py: error: " + message.format(train=three_classes[0], dev=dev)
    assert not out.exists()


def test_no_task_and_no_files_is_one_line(capsys):
    status, err = run(["--data_dir", "x"], capsys)
    assert status == 2 and err[-1].startswith("run_glue.py: error: give --task (cola, sst2")


def own_task_run(minilm_90, tmp_path, train, dev, *flags, test=None):
    out = tmp_path / "out"
    argv = ["--model_name_or_path", str(minilm_90), "--train_file", train, "--validation_file", dev,
            "--recipe", "dense_transfer", "--num_train_epochs", "2", "--learning_rate", "1e-4",
            "--per_device_train_batch_size", "8", "--output_dir", str(out), "--disable_tqdm", "true", *flags]
    if test:
        argv += ["--do_predict", "--test_file", test]
    assert transfer_run.main(argv) == 0
    return out, json.loads((out / "eval_results.json").read_text())


def test_three_string_labels_csv_on_the_real_minilm(minilm_90, tmp_path, three_classes):
    from transformers import AutoModelForSequenceClassification

    test = write_csv(tmp_path / "test.csv", ["id", "text", "label"],
                     [[7, "the film was lovely today", "positive"], [8, "the film was dull today", ""]])
    out, results = own_task_run(minilm_90, tmp_path, *three_classes, test=test)
    assert results["task"] == "custom" and results["main_metric"] == "eval_accuracy"
    assert set(results["best"]) >= {"eval_accuracy", "eval_f1_macro", "eval_matthews_correlation"}
    assert results["labels"] == ["negative", "neutral", "positive"]
    report = results["per_class"]["validation"]
    assert [report[name]["support"] for name in results["labels"]] == [3, 3, 3]
    assert report["accuracy"] == pytest.approx(results["best"]["eval_accuracy"])
    assert results["mask_violations"] == 0 and results["verdict"]["epochs"] == 2
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == ["7", "8"] and [row["label"] for row in rows] == ["positive", ""]
    for row in rows:
        probabilities = [float(row[f"probability_{name}"]) for name in results["labels"]]
        assert sum(probabilities) == pytest.approx(1.0)
        assert row["prediction"] == results["labels"][int(np.argmax(probabilities))]


def test_integer_labels_json_on_the_real_minilm(minilm_90, tmp_path):
    def jsonl(path, n, offset):
        rows = [{"sentence": text, "label": {"negative": 1, "neutral": 2, "positive": 10}[label]}
                for text, label in sentiment_rows(n, offset)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return str(path)

    out, results = own_task_run(minilm_90, tmp_path, jsonl(tmp_path / "train.jsonl", 24, 0),
                                jsonl(tmp_path / "dev.jsonl", 6, 1), "--metric_for_best_model", "f1_macro")
    assert results["labels"] == ["1", "2", "10"] and results["main_metric"] == "eval_f1_macro"
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "1", "1": "2", "2": "10"}


def test_pair_task_tsv_and_regression_csv_on_the_real_minilm(minilm_90, tmp_path):
    pairs = [["a cat sat", "a cat was sitting", "same"], ["a cat sat", "the market fell", "different"]] * 8
    train = write_csv(tmp_path / "train.tsv", ["sentence1", "sentence2", "label"], pairs, delimiter="\t")
    dev = write_csv(tmp_path / "dev.tsv", ["sentence1", "sentence2", "label"], pairs[:4], delimiter="\t")
    _, results = own_task_run(minilm_90, tmp_path, train, dev)
    assert results["labels"] == ["different", "same"] and results["per_class"]["validation"]["same"]["support"] == 2

    scores = [[f"{a} {i}", b, round(0.3 * i, 1)] for i, (a, b, _) in enumerate(pairs)]
    train = write_csv(tmp_path / "train.csv", ["premise", "hypothesis", "score"], scores)
    dev = write_csv(tmp_path / "dev.csv", ["premise", "hypothesis", "score"], scores[:6])
    out, results = own_task_run(minilm_90, tmp_path / "regression", train, dev, "--text_columns",
                                "premise,hypothesis", "--label_column", "score")
    assert results["main_metric"] == "eval_pearson" and "eval_spearmanr" in results["best"]
    config = json.loads((out / "config.json").read_text())
    assert "per_class" not in results and config["problem_type"] == "regression" and len(config["id2label"]) == 1


def test_grid_on_an_own_task_works_as_for_glue(tiny_model_dir, tmp_path, three_classes):
    out = tmp_path / "grid"
    assert transfer_run.main(["--model_name_or_path", str(tiny_model_dir), "--train_file", three_classes[0],
                          "--validation_file", three_classes[1], "--recipe", "dense_transfer",
                          "--num_train_epochs", "2", "--grid", "--output_dir", str(out), "--disable_tqdm", "true"]) == 0
    summary = json.loads((out / "grid_summary.json").read_text())
    assert summary["metric"] == "eval_accuracy" and len(summary["runs"]) == 6
    assert all(run["verdict"] in ("undertrained", "overfitting", "converged") for run in summary["runs"].values())
    assert "| verdict |" in (out / "grid_summary.md").read_text()
    assert (out / "lr0.0001_dropout0.05" / "eval_curves.png").is_file()
