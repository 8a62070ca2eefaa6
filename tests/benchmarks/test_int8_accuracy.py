"""int8_accuracy.py's bookkeeping: which fine-tuning of the upstream model it repeats, and its table (no training)."""

import json

import pytest
from helpers import load_benchmark


@pytest.fixture
def bench(tmp_path, monkeypatch):
    module = load_benchmark("int8_accuracy")
    monkeypatch.setattr(module, "COMPARISON_RECORDS", tmp_path / "comparison")
    monkeypatch.setattr(module, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(module, "TABLES", tmp_path / "int8_accuracy.md")
    monkeypatch.setattr(module, "WORK", tmp_path / "work")
    for path in (tmp_path / "comparison", tmp_path / "records"):
        path.mkdir()
    return module


def comparison_record(bench, task, method, lr, dropout, score, build=None):
    name = bench.run_name(task, method, lr, dropout, bench.UPSTREAM) + (f"_build{build}" if build else "")
    metric = bench.METRIC[task]
    (bench.COMPARISON_RECORDS / f"{name}.json").write_text(json.dumps(
        {"task": task, "method": method, "learning_rate": lr, "dropout": dropout, "best": {metric: score}}))


def test_the_upstream_model_is_fine_tuned_at_its_methods_best_recorded_configuration(bench, monkeypatch):
    comparison_record(bench, "stsb", "dense_transfer", 1e-4, 0.05, 0.64)
    comparison_record(bench, "stsb", "dense_transfer", 2e-4, 0.05, 0.767)
    comparison_record(bench, "stsb", "dense_transfer", 3e-4, 0.05, 0.80, build="685faa2f")  # another build: not read
    comparison_record(bench, "stsb", "extended_dense_transfer", 3e-4, 0.1, 0.81)  # another method
    comparison_record(bench, "sst2", "dense_transfer", 1e-4, 0.1, 0.814)
    assert bench.best_configuration("stsb", "dense_transfer") == (2e-4, 0.05, pytest.approx(76.7))
    assert bench.best_configuration("stsb", "extended_dense_transfer") == (3e-4, 0.1, pytest.approx(81.0))
    with pytest.raises(SystemExit, match="no glue_comparison.py record of extended_dense_transfer on sst2 from "
                                         "upstream-90-obs-cls4-cosine1-long-plus1200: run it first"):
        bench.best_configuration("sst2", "extended_dense_transfer")

    runs = []
    monkeypatch.setattr(bench, "model_path", lambda name: f"models/{name}")
    monkeypatch.setattr(bench, "sst2_files", lambda: ("sample/train.tsv", "glue/SST-2/dev.tsv"))
    monkeypatch.setattr(bench, "glue_run", lambda task, model, recipe, lr, seed, out, extra: runs.append(
        (task, model, recipe, lr, seed, out.name, extra)))
    bench.fine_tuned(bench.UPSTREAM, "stsb", "dense_transfer")
    bench.fine_tuned(bench.UPSTREAM, "sst2", "dense_transfer")
    model = f"models/{bench.UPSTREAM}"
    assert runs == [
        ("stsb", model, "dense_transfer", 2e-4, 0, f"{bench.UPSTREAM}-dense_transfer-stsb", ("--dropout", "0.05")),
        ("sst2", model, "dense_transfer", 1e-4, 0, f"{bench.UPSTREAM}-dense_transfer-sst2",
         ("--dropout", "0.1", "--train_file", "sample/train.tsv", "--validation_file", "glue/SST-2/dev.tsv"))]


def test_the_table_names_each_models_fine_tuning_its_recorded_score_and_kernel_path(bench):
    scores = {"fp32": 83.6, "sparse_transfer_int8": 83.14, "sparse_transfer_int8_sdpa": 83.14, "torch_int8": 83.03,
              "ort_int8": 82.91}
    layers = {"sparse_int8": 36, "dense_int8": 1, "dense": 1}
    (bench.RECORDS / "minilm-90-1x4-sst2.json").write_text(json.dumps(  # a record from before the upstream model
        {"pattern": "1x4", "task": "sst2", "scores": scores, "int8_minus_fp32": -0.46, "attention": "bf16",
         "layers_per_kernel": layers}))
    (bench.RECORDS / f"{bench.UPSTREAM}-dense_transfer-sst2.json").write_text(json.dumps(
        {"model": bench.UPSTREAM, "pattern": "unstructured", "task": "sst2", "scores": scores, "int8_minus_fp32": -0.46,
         "attention": "sdpa", "layers_per_kernel": layers, "method": "dense_transfer", "learning_rate": 2e-4,
         "dropout": 0.1, "recorded_score": 83.6, "machine": {"int8_kernel_path": "avx2"}}))
    rows = [line for line in bench.report().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [
        "| minilm-90-1x4 | dense_transfer, LR 0.0001 | sst2 | - | 83.60 | 83.14 | -0.46 | bf16 | 83.14 | 83.03 | 82.91 "
        "| sparse_int8 x36, dense_int8 x1, dense x1 | avx512-vnni |",
        f"| {bench.UPSTREAM} | dense_transfer, LR 0.0002, dropout 0.1 | sst2 | 83.60 | 83.60 | 83.14 | -0.46 | sdpa | "
        "83.14 | 83.03 | 82.91 | sparse_int8 x36, dense_int8 x1, dense x1 | avx2 |"]
    assert bench.TABLES.read_text() == bench.report()
