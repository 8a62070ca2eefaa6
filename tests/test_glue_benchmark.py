"""The GLUE benchmark's tables: LR choice per method, % of dense, wall-time ratio (no training)."""

import importlib.util
import json

import pytest

from conftest import ROOT


@pytest.fixture
def bench(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("sparse_transfer_glue", ROOT / "benchmarks" / "sparse_transfer_glue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(module, "TABLES", tmp_path / "tables.md")
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
