"""--do_predict: GLUE test files read for every task, submission files in GLUE's layout."""

import csv
import json

import numpy as np
import pytest

from sparse_transfer.glue import TASKS, get_task
from sparse_transfer.glue.data import GlueDataError, load_test
from sparse_transfer.glue.predictions import write_submission
from sparse_transfer.transfer import run as transfer_run

# Test files as GLUE distributes them: a header, an index, no labels.
TEST_FILES = {
    "CoLA": {"test.tsv": ["index\tsentence", "0\tBill whistled.", "1\tWhistled Bill the."]},
    "SST-2": {"test.tsv": ["index\tsentence", "0\tit 's a charming journey .", "1\tdull ."]},
    "MRPC": {"test.tsv": ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1\t2\tA man ran.\tA man was running."]},
    "STS-B": {"test.tsv": ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
                           "0\tnews\tf\t2012\t1\tnone\tnone\tA cat.\tA dog.",
                           "1\tnews\tf\t2012\t2\tnone\tnone\tRain.\tIt rains."]},
    "QQP": {"test.tsv": ["id\tquestion1\tquestion2", "0\tWhy?\tHow come?"]},
    "MNLI": {name: ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse"
                    "\tsentence2_parse\tsentence1\tsentence2", "0\t1\t1\tgov\t(a)\t(b)\t(A)\t(B)\tIt rained.\tIt was wet.",
                    "1\t2\t2\tgov\t(a)\t(b)\t(A)\t(B)\tShe left.\tShe stayed."]
             for name in ("test_matched.tsv", "test_mismatched.tsv")},
    "QNLI": {"test.tsv": ["index\tquestion\tsentence", "0\tWho?\tHe did."]},
    "RTE": {"test.tsv": ["index\tsentence1\tsentence2", "0\tA cat sat.\tAn animal sat.", "1\tIt rained.\tIt was dry."]},
}
# task: (file -> expected prediction lines) for logits favouring class 1 on every row (STS-B: 2.5, 4.0)
EXPECTED = {"cola": {"CoLA": ["1", "1"]}, "sst2": {"SST-2": ["1", "1"]}, "mrpc": {"MRPC": ["1"]},
            "stsb": {"STS-B": ["2.500", "4.000"]}, "qqp": {"QQP": ["1"]},
            "mnli": {"MNLI-m": ["neutral", "neutral"], "MNLI-mm": ["neutral", "neutral"]},
            "qnli": {"QNLI": ["not_entailment"]}, "rte": {"RTE": ["not_entailment", "not_entailment"]}}


@pytest.fixture(scope="module")
def glue_test_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue-test")
    for directory, files in TEST_FILES.items():
        (root / directory).mkdir()
        for name, lines in files.items():
            (root / directory / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_submission_files_in_glue_layout_for_every_task(glue_test_dir, tmp_path, task_name):
    task = get_task(task_name)
    test = load_test(task, data_dir=str(glue_test_dir))
    assert set(test) == {split for split in task.tsv.test_files()}
    written = {}
    for split, rows in test.items():
        assert all(column in rows.column_names for column in task.text_columns)
        logits = np.array([[2.5], [4.0]][:len(rows)]) if task.is_regression else \
            np.tile([0.0, 1.0, 0.0][:task.num_labels], (len(rows), 1))
        path = write_submission(task, split, logits, str(tmp_path))
        lines = open(path).read().splitlines()
        assert lines[0] == "index\tprediction"
        written[path.rsplit("/", 1)[-1].removesuffix(".tsv")] = [line.split("\t")[1] for line in lines[1:]]
        assert [line.split("\t")[0] for line in lines[1:]] == [str(i) for i in range(len(rows))]
    assert written == EXPECTED[task_name]
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == sorted(f"{n}.tsv" for n in written)


def test_cola_test_sentences_are_read_from_their_header(glue_test_dir):
    rows = load_test(get_task("cola"), data_dir=str(glue_test_dir))["test"]
    assert rows["sentence"] == ["Bill whistled.", "Whistled Bill the."]


def test_missing_test_file_is_one_line(tmp_path):
    with pytest.raises(GlueDataError, match=r"--do_predict needs \S+RTE/test.tsv \(the GLUE test file\) or --test_file"):
        load_test(get_task("rte"), data_dir=str(tmp_path))


def test_do_predict_end_to_end_writes_the_best_epochs_predictions(tiny_model_dir, glue_test_dir, tmp_path):
    (glue_test_dir / "CoLA" / "train.tsv").write_text(
        "".join(f"s\t{i % 2}\t\t{'Good sentence' if i % 2 else 'Sentence bad the'} {i}.\n" for i in range(24)))
    (glue_test_dir / "CoLA" / "dev.tsv").write_text(
        "".join(f"s\t{i % 2}\t\t{'Fine words' if i % 2 else 'Words fine the'} {i}.\n" for i in range(8)))
    out = tmp_path / "cola"
    status = transfer_run.main(["--task", "cola", "--model_name_or_path", str(tiny_model_dir), "--data_dir",
                            str(glue_test_dir), "--do_predict", "--recipe", "dense_transfer",
                            "--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
                            "--output_dir", str(out), "--disable_tqdm", "true"])
    assert status == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["predictions"] == ["predictions/CoLA.tsv"]
    with open(out / "predictions" / "CoLA.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [row["index"] for row in rows] == ["0", "1"] and {row["prediction"] for row in rows} <= {"0", "1"}
    assert results["verdict"]["verdict"] in ("undertrained", "overfitting", "converged")
    assert set(results["per_class"]["validation"]) >= {"unacceptable", "acceptable", "macro avg"}
    assert results["per_class"]["validation"]["acceptable"]["support"] == 4
