"""GLUE loaders: small files in the original format for every task, the real RTE/MRPC/STS-B."""

import json

import pytest
from helpers import GLUE_DIR

from sparse_transfer.glue import TASKS, get_task
from sparse_transfer.glue.data import GlueDataError, load_glue
from sparse_transfer.glue.tasks import UnknownTaskError

# Original GLUE layouts (header lines and column orders as distributed).
ORIGINAL_FILES = {
    "CoLA": {  # no header: source, label, original label, sentence
        "train.tsv": ["gj04\t1\t\tOur friends won't buy this analysis.", "gj04\t0\t*\tThey drank the pub \"dry\"."],
        "dev.tsv": ["gj04\t1\t\tThe sailors rode the breeze.", "gj04\t0\t*\tNA is a word, not a missing value."],
    },
    "SST-2": {
        "train.tsv": ["sentence\tlabel", "hide new secretions \t0", "a \"gorgeous\" film \t1"],
        "dev.tsv": ["sentence\tlabel", "it 's a charming journey . \t1"],
    },
    "QQP": {
        "train.tsv": ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\tWhy?\tHow?\t0",
                      "1\t3\t4\tWhat is \"AI\"?\tWhat's AI?\t1"],
        "dev.tsv": ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "9\t5\t6\tnull\tNone\t0"],
    },
    "QNLI": {
        "train.tsv": ["index\tquestion\tsentence\tlabel", "0\tWho?\tHe did.\tentailment",
                      "1\tWhen?\tNo time.\tnot_entailment"],
        "dev.tsv": ["index\tquestion\tsentence\tlabel", "0\tWhere?\tHere.\tnot_entailment"],
    },
    "MNLI": {
        "train.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse"
                      "\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
                      "0\t1\t1e\tgov\t(a)\t(b)\t(A)\t(B)\tA cat sat.\tAn animal sat.\tentailment\tentailment",
                      "1\t2\t2n\tgov\t(a)\t(b)\t(A)\t(B)\tA cat sat.\tIt was black.\tneutral\tneutral"],
        "dev_matched.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
                            "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tgold_label",
                            "0\t3\t3c\tgov\t(a)\t(b)\t(A)\t(B)\tIt rained.\tIt was dry.\tcontradiction\tcontradiction"
                            "\tcontradiction"],
        "dev_mismatched.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
                               "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tgold_label",
                               "0\t4\t4n\tfic\t(a)\t(b)\t(A)\t(B)\tShe left.\tShe was sad.\tneutral\tneutral\tneutral",
                               "1\t5\t5e\tfic\t(a)\t(b)\t(A)\t(B)\tHe ran.\tHe moved.\tentailment\tentailment"
                               "\tentailment"]},
}


@pytest.fixture(scope="module")
def original_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    for directory, files in ORIGINAL_FILES.items():
        (root / directory).mkdir()
        for name, lines in files.items():
            (root / directory / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("task_name, split, expected", [
    ("cola", "train", [{"sentence": "Our friends won't buy this analysis.", "label": 1, "idx": 0},
                       {"sentence": 'They drank the pub "dry".', "label": 0, "idx": 1}]),
    ("cola", "validation", [{"sentence": "The sailors rode the breeze.", "label": 1, "idx": 0},
                            {"sentence": "NA is a word, not a missing value.", "label": 0, "idx": 1}]),
    ("sst2", "train", [{"sentence": "hide new secretions ", "label": 0, "idx": 0},
                       {"sentence": 'a "gorgeous" film ', "label": 1, "idx": 1}]),
    ("qqp", "validation", [{"question1": "null", "question2": "None", "label": 0, "idx": 0}]),
    ("qqp", "train", [{"question1": "Why?", "question2": "How?", "label": 0, "idx": 0},
                      {"question1": 'What is "AI"?', "question2": "What's AI?", "label": 1, "idx": 1}]),
    ("qnli", "train", [{"question": "Who?", "sentence": "He did.", "label": 0, "idx": 0},
                       {"question": "When?", "sentence": "No time.", "label": 1, "idx": 1}]),
    ("mnli", "train", [{"premise": "A cat sat.", "hypothesis": "An animal sat.", "label": 0, "idx": 0},
                       {"premise": "A cat sat.", "hypothesis": "It was black.", "label": 1, "idx": 1}]),
    ("mnli", "validation_matched", [{"premise": "It rained.", "hypothesis": "It was dry.", "label": 2, "idx": 0}]),
    ("mnli", "validation_mismatched", [{"premise": "She left.", "hypothesis": "She was sad.", "label": 1, "idx": 0},
                                       {"premise": "He ran.", "hypothesis": "He moved.", "label": 0, "idx": 1}]),
])
def test_original_format_loads_with_the_hub_columns_and_labels(original_dir, task_name, split, expected):
    data = load_glue(get_task(task_name), data_dir=str(original_dir))
    assert set(data) == {"train", *get_task(task_name).eval_splits}
    assert data[split].to_list() == expected


@pytest.mark.parametrize("task_name, counts, first_train", [
    ("rte", (2490, 277), {"sentence1": "No Weapons of Mass Destruction Found in Iraq Yet.",
                          "sentence2": "Weapons of Mass Destruction Found in Iraq.", "label": 1, "idx": 0}),
    ("mrpc", (3668, 408), {"sentence1": 'Amrozi accused his brother, whom he called "the witness", of deliberately '
                                        "distorting his evidence.",
                           "sentence2": 'Referring to him as only "the witness", Amrozi accused his brother of '
                                        "deliberately distorting his evidence.", "label": 1, "idx": 0}),
    ("stsb", (5749, 1500), {"sentence1": "A plane is taking off.", "sentence2": "An air plane is taking off.",
                            "label": 5.0, "idx": 0}),
])
def test_real_glue_files_have_official_counts_and_hub_labels(task_name, counts, first_train):
    if not GLUE_DIR.exists():
        pytest.skip(f"{GLUE_DIR} missing")
    data = load_glue(get_task(task_name), data_dir=str(GLUE_DIR))
    assert (len(data["train"]), len(data["validation"])) == counts
    assert data["train"][0] == first_train
    if task_name == "rte":
        assert data["train"].features["label"].names == ["entailment", "not_entailment"]
        assert sum(data["validation"]["label"]) == 131  # 146 of 277 dev examples are entailment (0)
    if task_name == "mrpc":
        assert sum(data["validation"]["label"]) == 279  # 68.4% paraphrases in dev


def test_csv_and_json_files_like_hugging_face_run_glue(tmp_path):
    (tmp_path / "train.csv").write_text('sentence1,sentence2,label\n"A, b",B,entailment\nC,D,1\n')
    (tmp_path / "dev.csv").write_text("sentence1,sentence2,label\nE,F,0\n")
    data = load_glue(get_task("rte"), train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"))
    assert data["train"]["label"] == [0, 1] and data["train"]["sentence1"] == ["A, b", "C"]
    for name, rows in (("train.json", [{"sentence1": "a", "sentence2": "b", "label": 2.5}]),
                       ("dev.json", [{"sentence1": "c", "sentence2": "d", "label": 4}])):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows))
    data = load_glue(get_task("stsb"), train_file=str(tmp_path / "train.json"), validation_file=str(tmp_path / "dev.json"))
    assert data["validation"]["label"] == [4.0]


def test_task_names_are_case_and_dash_insensitive_and_wnli_is_refused():
    assert get_task("STS-B") is TASKS["stsb"] and get_task("sst_2") is TASKS["sst2"] and get_task("RTE") is TASKS["rte"]
    with pytest.raises(UnknownTaskError, match="wnli is excluded"):
        get_task("WNLI")
    with pytest.raises(UnknownTaskError, match="unknown task 'squad'; choose one of cola, sst2"):
        get_task("squad")


def test_bad_data_gets_one_line_errors(tmp_path):
    with pytest.raises(GlueDataError, match=r"data directory .*RTE not found.*RTE/train.tsv, dev.tsv"):
        load_glue(get_task("rte"), data_dir=str(tmp_path))
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(GlueDataError, match=r"missing file .*RTE/dev.tsv"):
        load_glue(get_task("rte"), data_dir=str(tmp_path))
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tpremise\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(GlueDataError, match=r"validation data in .* has no column 'sentence1' needed by task rte"):
        load_glue(get_task("rte"), data_dir=str(tmp_path))
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n")
    with pytest.raises(GlueDataError, match=r"label 'neutral' .* does not fit task rte: use 0..1 or entailment"):
        load_glue(get_task("rte"), data_dir=str(tmp_path))
    (tmp_path / "train.csv").write_text("sentence1,sentence2,label\na,b,2\n")
    with pytest.raises(GlueDataError, match=r"label '2' in .*train.csv.* does not fit task rte"):
        load_glue(get_task("rte"), train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "train.csv"))
    (tmp_path / "train.csv").write_text("sentence1,sentence2,label\na,b,high\n")
    with pytest.raises(GlueDataError, match=r"label 'high' .* is not a number, as task stsb needs"):
        load_glue(get_task("stsb"), train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "train.csv"))
    with pytest.raises(GlueDataError, match="give both --train_file and --validation_file"):
        load_glue(get_task("rte"), train_file=str(tmp_path / "train.csv"))


def test_tokenization_is_cached_by_datasets(tiny_model_dir):
    from transformers import AutoTokenizer

    from sparse_transfer.glue.data import tokenize

    if not GLUE_DIR.exists():
        pytest.skip(f"{GLUE_DIR} missing")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = get_task("rte")
    first = tokenize(load_glue(task, data_dir=str(GLUE_DIR)), tokenizer, task, max_seq_length=64)
    second = tokenize(load_glue(task, data_dir=str(GLUE_DIR)), tokenizer, task, max_seq_length=64)
    assert first["train"].cache_files == second["train"].cache_files != []
    assert first["train"]._fingerprint == second["train"]._fingerprint
    assert max(len(ids) for ids in first["train"]["input_ids"]) == 64  # truncated, padded later per batch
    assert first["train"].column_names == ["label", "idx", "input_ids", "token_type_ids", "attention_mask"]
