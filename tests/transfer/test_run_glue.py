"""run_glue.py end to end, offline, in subprocesses: outputs, bad input, grid resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import GLUE_DIR, ROOT

pytestmark = pytest.mark.skipif(not GLUE_DIR.exists(), reason=f"{GLUE_DIR} missing")

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def command(model_dir, out, *extra, task="rte"):
    return [sys.executable, str(ROOT / "run_glue.py"), "--task", task, "--model_name_or_path", str(model_dir),
            "--data_dir", str(GLUE_DIR), "--max_train_samples", "32", "--max_eval_samples", "16",
            "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--output_dir", str(out),
            "--disable_tqdm", "true", *extra]


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600, **kwargs)


def test_single_run_writes_every_output_file(tiny_model_dir, tmp_path):
    out = tmp_path / "rte"
    result = run(command(tiny_model_dir, out, "--seed", "3"))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("eval_results.json", "all_results.json", "epoch_metrics.csv", "trainer_state.json",
                 "sparsity_report.json", "recipe.yaml", "eval_curves.png", "lr_schedule.png", "model.safetensors",
                 "config.json", "tokenizer.json", "stage_plan.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "eval_results.json").read_text())
    assert results["task"] == "rte" and results["recipe"] == "gradual_unfreeze"
    assert results["main_metric"] == "eval_accuracy"
    assert results["final"]["epoch"] == 4  # 2 blocks: 1 + 2 + 1 stages
    assert 1 <= results["best"]["epoch"] <= 4
    assert results["best"]["eval_accuracy"] >= results["final"]["eval_accuracy"]
    assert results["best"]["eval_accuracy"] * 16 == round(results["best"]["eval_accuracy"] * 16)  # k of 16
    assert results["mask_violations"] == 0 and results["sparsity"] == 0.5
    with open(out / "epoch_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["stage"]) for r in rows] == [0, 1, 2, 3]
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["mask_violations"] == 0 and report["global_sparsity"] == 0.5
    assert "| rte | gradual_unfreeze |" in result.stdout
    assert "stage 1 (epochs 2-2): blocks [1] + always; frozen: embedding_path;" in result.stdout
    plan = json.loads((out / "stage_plan.json").read_text())
    assert [stage["trainable_blocks"] for stage in plan["stages"]] == [[], [1], [0, 1], [0, 1]]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{2 * results['best']['epoch']}")

    # A second run into the same directory is refused and touches nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = run(command(tiny_model_dir, out))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("run_glue.py: error: output directory")
    assert "--overwrite_output_dir" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize("extra, message", [
    (["--task", "wnli"], "task wnli is excluded"),
    (["--task", "squad"], "unknown task 'squad'"),
    (["--data_dir", "/nonexistent"], "data directory /nonexistent/RTE not found"),
    (["--block_path", "bert.encoder"], "block path 'bert.encoder' is not a module list in "
                                       "BertForSequenceClassification; set the recipe's mask.block_path (run_glue.py: "
                                       "--block_path)"),
    (["--module_types", "Conv1d"], "its blocks hold Linear weights: set the recipe's mask.module_types (run_glue.py: "
                                   "--module_types) to Linear"),
    (["--recipe", "/nonexistent.yaml"], "recipe /nonexistent.yaml does not exist; give a YAML path or one of the transfer recipes: dense_transfer, extended_dense_transfer, gradual_unfreeze, gradual_unfreeze_distill"),
])
def test_bad_input_exits_2_with_one_line(tiny_model_dir, tmp_path, extra, message):
    result = run(command(tiny_model_dir, tmp_path / "out") + extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_model_with_a_head_of_the_wrong_size_is_refused(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    head3 = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    head3.save_pretrained(tmp_path / "mnli-model")
    result = run(command(tmp_path / "mnli-model", tmp_path / "out", "--tokenizer_name", str(tiny_model_dir)))
    assert result.returncode == 2
    assert "has a 3-label classifier but task rte needs 2; pass --ignore_mismatched_sizes" in result.stderr


def test_grid_of_six_runs_survives_a_kill_and_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "grid"
    args = command(tiny_model_dir, out, "--grid")
    process = subprocess.Popen(args, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    third = out / "lr0.0002_dropout0.05"
    deadline = time.time() + 300
    while not list(third.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(p.parent.name for p in out.glob("*/eval_results.json"))
    assert finished == ["lr0.0001_dropout0.05", "lr0.0001_dropout0.1"]
    kept = {p: p.read_bytes() for p in out.glob("lr0.0001_*/eval_results.json")}

    result = run(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished earlier, skipped") == 2
    assert f"[sparse-transfer] resuming {third} from {third}/checkpoint-" in result.stdout
    assert {p: p.read_bytes() for p in kept} == kept  # earlier results untouched
    state = json.loads((third / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    summary = json.loads((out / "grid_summary.json").read_text())
    assert len(summary["runs"]) == 6
    values = {name: json.loads((out / name / "eval_results.json").read_text())["best"]["eval_accuracy"]
              for name in summary["runs"]}
    assert {name: entry["value"] for name, entry in summary["runs"].items()} == values
    top = sorted(values.values(), reverse=True)[:2]
    assert summary["top_k_mean"] == pytest.approx(sum(top) / 2)
    assert summary["best_value"] == max(values.values())
    assert "--learning_rate 0.0003 --dropout 0.1 --output_dir" in summary["runs"]["lr0.0003_dropout0.1"]["command"]
    assert "--grid" not in summary["runs"]["lr0.0003_dropout0.1"]["command"]
    assert (out / "grid_summary.md").read_text().startswith("# rte / gradual_unfreeze: grid of 6 runs")
    config = json.loads((out / "lr0.0003_dropout0.1" / "config.json").read_text())
    assert config["hidden_dropout_prob"] == 0.1 and config["attention_probs_dropout_prob"] == 0.1


@pytest.mark.slow
def test_real_minilm_90_on_real_rte_through_the_cli(minilm_90, tmp_path):
    recipe = tmp_path / "two_stages.yaml"
    recipe.write_text("name: two_stages\nschedule:\n  unfreeze_blocks: 1\n  final_stage_epochs: 0\n")
    out = tmp_path / "rte"
    args = command(minilm_90, out, "--recipe", str(recipe), "--max_train_samples", "256", "--max_eval_samples", "64",
                   "--per_device_train_batch_size", "32", "--learning_rate", "2e-4", "--max_seq_length", "64")
    result = run(args)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["final"]["epoch"] == 2
    assert results["mask_violations"] == 0
    assert results["sparsity"] == pytest.approx(0.9, abs=1e-7)
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["zero_params"] == round(0.9 * 10616832)
    assert [row["stage"] for row in [results["best"], results["final"]]][-1] == 1


def test_sweep_of_rescaled_dense_recipes_and_its_misuse(tiny_model_dir, tmp_path):
    out = tmp_path / "sweep"
    result = run(command(tiny_model_dir, out, "--recipe", "dense_transfer", "--sweep_epochs", "1-2"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "grid_summary.json").read_text())
    assert sorted(summary["runs"]) == ["epochs1_lr0.001", "epochs2_lr0.001"]
    for epochs in (1, 2):
        results = json.loads((out / f"epochs{epochs}_lr0.001" / "eval_results.json").read_text())
        assert results["recipe"] == "dense_transfer" and results["final"]["epoch"] == epochs
        assert results["mask_violations"] == 0
    refused = run(command(tiny_model_dir, tmp_path / "bad", "--sweep_epochs", "1-2"))
    assert refused.returncode == 2
    assert "--sweep_epochs rescales a dense recipe, but recipe 'gradual_unfreeze' is staged" in refused.stderr


def test_the_seed_fixes_the_new_head_so_a_run_repeats_exactly(tiny_model_dir, tmp_path):
    """Each run is a fresh process: unless the seed is set before the model is built, the new
    classifier head starts from whatever the global RNG holds, and no two runs match."""
    from safetensors.torch import load_file

    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        result = run(command(tiny_model_dir, out, "--recipe", "dense_transfer", "--seed", "5"))
        assert result.returncode == 0, result.stderr[-3000:]
    first, second = (load_file(out / "model.safetensors") for out in outs)
    assert first.keys() == second.keys() and "classifier.weight" in first
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert (outs[0] / "epoch_metrics.csv").read_text() == (outs[1] / "epoch_metrics.csv").read_text()
