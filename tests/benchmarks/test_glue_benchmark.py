"""The GLUE benchmark's tables: LR choice per method, % of dense, wall-time ratio (no training)."""

import json

import pytest
from helpers import load_benchmark


@pytest.fixture
def bench(tmp_path, monkeypatch):
    module = load_benchmark("sparse_transfer_glue")
    monkeypatch.setattr(module, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(module, "TABLES", tmp_path / "tables.md")
    monkeypatch.setattr(module, "STEP_TIMES", tmp_path)
    (tmp_path / "records").mkdir()
    return module


def record(bench, method, lr, best, final, runtime, task="mrpc", seed=0):
    entry = {"task": task, "method": method, "learning_rate": lr, "seed": seed,
             "best": {"epoch": 2, "eval_f1": best}, "final": {"epoch": 3, "eval_f1": final},
             "sparsity": 0.9 if method != "dense_reference" else 0.0, "mask_violations": 0,
             "train_runtime_s": runtime}
    path = bench.RECORDS / f"{bench.run_name(task, method, lr, seed)}.json"
    path.write_text(json.dumps(entry))


def row(text, method):
    mrpc = text.split("### MRPC")[1].split("###")[0]
    return next(line for line in mrpc.splitlines() if line.startswith(f"| {method} |"))


def test_each_method_keeps_its_better_lr_and_is_read_against_dense(bench):
    record(bench, "dense_reference", 2e-5, 0.80, 0.78, 600)
    record(bench, "dense_reference", 1e-4, 0.84, 0.83, 600)
    record(bench, "gradual_unfreeze", 1e-4, 0.70, 0.69, 900)
    record(bench, "gradual_unfreeze", 2e-4, 0.756, 0.75, 840)
    record(bench, "extended_dense", 1e-4, 0.72, 0.60, 1200)
    record(bench, "extended_dense", 2e-4, 0.71, 0.65, 1200)

    text = bench.report()

    assert "| 0.0001 (2 runs) | 1/1 | 84.0 | 83.0 | 100.0% |" in row(text, "dense_reference")
    # 2e-4 wins for gradual: 75.6 best, 90% of dense's 84.0
    assert "| 0.0002 (2 runs) | 1/1 | 75.6 | 75.0 | 90.0% | 90.00% | 0 | 14.0 min |" in row(text, "gradual_unfreeze")
    assert "| 0.0001 (2 runs) | 1/1 | 72.0 | 60.0 | 85.7% |" in row(text, "extended_dense")
    assert "| dense_transfer | not run yet | 0/1 |" in text
    assert "| always `equivalent` | | | 81.2 | 81.2 |" in text  # 279 of 408 dev pairs are paraphrases
    # ratio pairs are matched on task, LR and seed: 900/1200 and 840/1200
    assert "2 pairs): mean 0.725, min 0.700, max 0.750" in text
    # identical work at two LRs: 600/600, 900/840 (7.1% slower), 1200/1200
    assert "slower took 2.4% longer on average, at most 7.1% (3 pairs)" in text
    assert bench.TABLES.read_text() == text


def test_no_ratio_without_a_matched_pair(bench):
    record(bench, "gradual_unfreeze", 1e-4, 0.70, 0.69, 900)
    record(bench, "extended_dense", 2e-4, 0.71, 0.65, 1200)
    assert "no matched pair recorded yet" in bench.report()


def test_step_time_ratios_of_every_length_sit_next_to_the_wall_time_ratio(bench):
    record(bench, "gradual_unfreeze", 1e-4, 0.70, 0.69, 900)
    assert "Step time per stage: not measured yet" in bench.report()
    for length, stages in [(54, [0.6, 0.8, 1.0]), (128, [0.75, 0.85, 0.95])]:
        measured = {"length": length, "stage0_ratio": stages[0], "final_stage_ratio": stages[-1],
                    "stage_ratios": stages, "recipe_mean_step_ratio": sum(stages) / 3}
        (bench.STEP_TIMES / f"step_time_cpu_len{length}.json").write_text(json.dumps(measured))
    (bench.STEP_TIMES / "step_time_cpu_old.json").write_text(json.dumps({"length": 64, "stage0_ratio": 0.7}))

    text = bench.report()

    # longest first; a file from before per-stage timing has no column
    assert "| gradual unfreezing / dense fine-tuning (`step_time.py`) | length 128 | length 54 |" in text
    assert "| stage 0 step | 0.750 | 0.600 |" in text
    assert "| final stage step | 0.950 | 1.000 |" in text
    assert "| mean step over the 3 stages | 0.850 | 0.800 |" in text


@pytest.fixture
def common():
    """The scripts' shared module (benchmarks/common.py), fresh: what a test patches in it stays in the test."""
    return load_benchmark("common")


def test_weights_fingerprint_tells_two_builds_of_a_model_apart(common, tmp_path):
    first, rebuilt, copy = (tmp_path / name for name in ("first", "rebuilt", "copy"))
    for directory, weights in ((first, b"weights of one build"), (rebuilt, b"weights of another"),
                               (copy, b"weights of one build")):
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(weights)
    fingerprint = common.weights_fingerprint(str(first))
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert fingerprint == common.weights_fingerprint(str(copy)) != common.weights_fingerprint(str(rebuilt))
    assert common.weights_fingerprint(str(tmp_path / "hub-name-or-missing")) == "unknown"


def test_code_version_names_the_commit_and_only_changes_to_the_code_that_runs(common, tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "run_glue.py").write_text("print('run')\n")
    (tmp_path / "RESULTS.md").write_text("numbers\n")
    recipe = tmp_path / "sparse_transfer" / "recipes" / "transfer" / "dense_transfer.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text("name: dense_transfer\n")
    git("add", ".")
    git("commit", "-qm", "first")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    monkeypatch.setattr(common, "ROOT", tmp_path)
    assert common.code_version() == head
    (tmp_path / "RESULTS.md").write_text("new numbers\n")  # a table rewritten while runs go on
    assert common.code_version() == head
    recipe.write_text("name: dense_transfer\nepochs: 4\n")  # the recipes ship inside the package
    assert common.code_version() == f"{head}+changes"
    git("checkout", "--", ".")
    assert common.code_version() == head
    (tmp_path / "run_glue.py").write_text("print('changed')\n")
    assert common.code_version() == f"{head}+changes"
