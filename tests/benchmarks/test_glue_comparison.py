"""The GLUE comparison's bookkeeping: run order, mean of the two best, the reading (no training)."""

import json

import pytest
from helpers import load_benchmark


@pytest.fixture
def bench(tmp_path, monkeypatch):
    module = load_benchmark("glue_comparison")
    monkeypatch.setattr(module, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(module, "TABLES", tmp_path / "tables.md")
    monkeypatch.setattr(module, "ONE_SHOT_RECORDS", tmp_path / "none")
    monkeypatch.setattr(module, "WORK", tmp_path / "work")
    (tmp_path / "records").mkdir()
    return module


def record(bench, method, lr, dropout, best, final, task="cola", model=None):
    metric = bench.MAIN_METRIC[task]
    model = model or ("dense" if method == "dense_reference" else bench.UPSTREAM_MODEL)
    entry = {"task": task, "method": method, "learning_rate": lr, "dropout": dropout, "model": model,
             "best": {"epoch": 2, metric: best}, "final": {"epoch": 3, metric: final},
             "epochs": [{"epoch": 1, "eval_loss": 0.6, metric: best - 0.1}, {"epoch": 2, "eval_loss": 0.5, metric: best}],
             "sparsity": {"dense": 0.0, "upstream-80-magnitude": 0.8}.get(model, 0.9), "mask_violations": 0, "train_runtime_s": 120,
             "verdict": {"verdict": "converged"}}
    (bench.RECORDS / f"{bench.run_name(task, method, lr, dropout, model)}.json").write_text(json.dumps(entry))


def test_plan_runs_the_teacher_first_then_every_method_per_configuration(bench):
    plan = bench.planned_runs("sst2", ["dense_reference", "dense_transfer", "gradual_unfreeze"], [])
    assert plan == [("dense_reference", 2e-5, 0.1), ("dense_reference", 5e-5, 0.1), ("dense_reference", 1e-4, 0.1),
                    ("dense_transfer", 1e-4, 0.1), ("gradual_unfreeze", 1e-4, 0.1),
                    ("dense_transfer", 2e-4, 0.1), ("gradual_unfreeze", 2e-4, 0.1)]
    assert len(bench.planned_runs("cola", list(bench.SPARSE_METHODS), [])) == 4 * 6
    records = [{"task": "cola", "method": "dense_transfer", "learning_rate": lr, "dropout": dropout,
                "model": bench.UPSTREAM_MODEL, "best": {"eval_matthews_correlation": 0.3 if lr == 2e-4 else 0.2}}
               for lr, dropout in bench.GRID["cola"]]
    # the rescaled sweep waits for the whole dense-transfer grid, then runs at its best configuration
    assert bench.planned_runs("cola", ["rescaled_dense"], records[1:]) == []
    rescaled = bench.planned_runs("cola", ["rescaled_dense"], records)
    assert rescaled == [(f"dense_transfer_{e}ep", 2e-4, 0.05) for e in (1, 2, 4, 5, 6, 7)]
    # a run again from another build does not move it: the plan reads the first-recorded runs, as the tables do
    rerun = {**records[0], "best": {"eval_matthews_correlation": 0.9}, "rerun_of": "cola_dense_transfer_lr0.0001_dropout0.05"}
    assert bench.planned_runs("cola", ["rescaled_dense"], records + [rerun]) == rescaled


def test_workers_claim_a_run_once_and_take_over_a_dead_workers_claim(bench):
    import os
    import subprocess

    assert bench.claim("cola_dense_transfer_lr0.0001_dropout0.1")
    assert not bench.claim("cola_dense_transfer_lr0.0001_dropout0.1")  # held by a live process (this one)
    assert bench.claim("cola_gradual_unfreeze_lr0.0001_dropout0.1")  # another run is free
    stale = bench.WORK / "glue_comparison" / "cola_extended_dense_transfer_lr0.0001_dropout0.1.claim"
    dead = subprocess.Popen(["true"])  # a worker that has exited: its pid no longer runs
    dead.wait()
    stale.write_text(str(dead.pid))
    assert bench.claim("cola_extended_dense_transfer_lr0.0001_dropout0.1")
    assert stale.read_text() == str(os.getpid())


def test_distilled_runs_wait_until_every_dense_reference_is_recorded(bench):
    record(bench, "dense_reference", 2e-5, 0.1, 0.50, 0.48)
    record(bench, "dense_reference", 5e-5, 0.1, 0.52, 0.48)
    assert not bench.teacher_ready(bench.load_records(), "cola")
    assert not bench.run_one("cola", "gradual_unfreeze_distill", 1e-4, 0.1, bench.load_records())  # nothing trained
    record(bench, "dense_reference", 1e-4, 0.1, 0.51, 0.48)
    assert bench.teacher_ready(bench.load_records(), "cola")
    assert not bench.teacher_ready(bench.load_records(), "stsb")


def test_tables_report_the_mean_of_the_two_best_and_read_the_gap_against_the_spread(bench):
    record(bench, "dense_reference", 2e-5, 0.1, 0.50, 0.48)
    record(bench, "dense_reference", 1e-4, 0.1, 0.54, 0.52)
    for (lr, dropout), (gradual, dense) in zip(bench.GRID["cola"], [(0.40, 0.30), (0.44, 0.36), (0.10, 0.34),
                                                                    (0.20, 0.20), (0.30, 0.10), (0.35, 0.33)]):
        record(bench, "gradual_unfreeze", lr, dropout, gradual, gradual - 0.01)
        record(bench, "dense_transfer", lr, dropout, dense, dense - 0.02)
    record(bench, "gradual_unfreeze_distill", 1e-4, 0.05, 0.48, 0.47)
    text = bench.report()
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| 6 | 42.0 ± 2.0 | 41.0 | 80.8% | LR 0.0001, dropout 0.1 |" in rows["gradual_unfreeze"]  # (44+40)/2
    assert "| 6 | 35.0 ± 1.0 | 33.0 |" in rows["dense_transfer"]
    assert "| 2 | 52.0 ± 2.0 |" in rows["dense_reference"] and "converged 6" in rows["dense_transfer"]
    assert "| CPU 2.0 min |" in rows["dense_transfer"]
    assert ("gradual unfreezing beats the best dense-transfer recipe (dense_transfer): +7.0 points, larger than "
            "the spread between their two best configurations (2.0)") in text
    # distilled at one configuration: read against gradual unfreezing at that configuration (40), not its two best
    assert ("Distillation closes 67% of the gap from gradual unfreezing to dense (gradual unfreezing at the "
            "distilled runs' 1 configuration(s): 40.0).") in text  # (48-40)/(52-40)
    record(bench, "gradual_unfreeze_distill", 1e-4, 0.05, 0.37, 0.37)
    assert "Distillation widens the gap from gradual unfreezing to dense by 25% (" in bench.report()  # (37-40)/12
    summary = {"dense_reference": (0.52, 0.0, 2), "dense_transfer": (0.35, 0.01, 6), "gradual_unfreeze": (0.42, 0.02, 6),
               "gradual_unfreeze_distill": (0.47, 0.01, 6)}  # every configuration distilled: the two best against the two best
    assert bench.reading(summary).endswith("Distillation closes 50% of the gap from gradual unfreezing to dense.")
    assert (bench.TABLES.parent / "glue_comparison_cola.png").stat().st_size > 0
    assert "### STSB" in text and "Not run yet." in text


def test_wall_time_is_given_per_machine(bench):
    runs = [{"train_runtime_s": 600}, {"train_runtime_s": 300, "accelerator": "none"},
            {"train_runtime_s": 30, "accelerator": "NVIDIA H200"}]
    assert bench.wall_times(runs) == "CPU 7.5 min; NVIDIA H200 0.5 min"  # a record without the field ran on the CPU


def test_epoch_rows_round_trip_through_csv(tmp_path):
    from sparse_transfer.utils.io import read_csv, write_csv

    rows = [{"epoch": 1, "train_loss": None, "stage": 0, "eval_loss": 0.75, "eval_pearson": 0.125},
            {"epoch": 2, "train_loss": 1.5, "stage": 1, "eval_loss": 0.5, "eval_pearson": 0.25}]
    write_csv(rows, tmp_path / "epoch_metrics.csv")
    assert read_csv(tmp_path / "epoch_metrics.csv") == rows  # numbers as floats (1 == 1.0), empty cells as None


def test_sparse_rows_from_another_upstream_model_get_their_own_names_and_table(bench):
    assert bench.run_name("stsb", "gradual_unfreeze", 1e-4, 0.1) == "stsb_gradual_unfreeze_lr0.0001_dropout0.1"
    assert (bench.run_name("stsb", "gradual_unfreeze", 1e-4, 0.1, "upstream-80-magnitude")
            == "stsb_upstream-80-magnitude_gradual_unfreeze_lr0.0001_dropout0.1")
    assert bench.run_name("stsb", "dense_reference", 1e-4, 0.1, "upstream-80-magnitude") == \
        "stsb_dense_reference_lr0.0001_dropout0.1"  # one dense reference for every sparse model
    record(bench, "dense_reference", 1e-4, 0.1, 0.86, 0.86, task="stsb")
    record(bench, "gradual_unfreeze", 1e-4, 0.1, 0.60, 0.60, task="stsb")
    record(bench, "gradual_unfreeze", 1e-4, 0.1, 0.77, 0.76, task="stsb", model="upstream-80-magnitude")
    record(bench, "dense_transfer", 1e-4, 0.1, 0.50, 0.48, task="stsb", model="upstream-80-magnitude")
    records = bench.load_records()
    assert bench.best_record(records, "stsb", "gradual_unfreeze", "upstream-80-magnitude")["best"]["eval_pearson"] == 0.77
    assert bench.planned_runs("cola", ["rescaled_dense"], records, "upstream-80-magnitude") == []  # no CoLA run of it
    text = bench.report()
    main, other = text.split("### STSB from upstream-80-magnitude")
    assert "| gradual_unfreeze | 1 | 60.0 ± 0.0 | 60.0 | 69.8% |" in main and "dense_transfer |" not in main
    assert "| gradual_unfreeze | 1 | 77.0 ± 0.0 | 76.0 | 89.5% | LR 0.0001, dropout 0.1 | 80.00% |" in other
    assert "| dense_reference | 1 | 86.0 ± 0.0 |" in other
    assert ("beats the best dense-transfer recipe (dense_transfer): +27.0 points, from fewer than 2 grid "
            "configurations each, so the spread between configurations is not known yet.") in other
    assert (bench.TABLES.parent / "glue_comparison_stsb_upstream-80-magnitude.png").stat().st_size > 0


def test_learning_rates_keep_the_sparse_methods_to_those_rates_and_the_dense_reference_to_its_own(bench, monkeypatch,
                                                                                                   capsys):
    import sys

    plan = bench.planned_runs("cola", ["dense_reference", "dense_transfer", "gradual_unfreeze"], [],
                              learning_rates=[3e-4])
    assert plan == [("dense_reference", 2e-5, 0.1), ("dense_reference", 5e-5, 0.1), ("dense_reference", 1e-4, 0.1),
                    ("dense_transfer", 3e-4, 0.05), ("gradual_unfreeze", 3e-4, 0.05),
                    ("dense_transfer", 3e-4, 0.1), ("gradual_unfreeze", 3e-4, 0.1)]
    monkeypatch.setattr(sys, "argv", ["glue_comparison.py", "run", "--tasks", "sst2", "--learning_rates", "3e-4"])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: --learning_rates 0.0003 is not in the grid of sst2: give some of 0.0001, 0.0002")
    assert list(bench.RECORDS.iterdir()) == []  # nothing ran


def test_a_distilled_run_trains_a_missing_teacher_again_once_and_records_that_teachers_score(bench, monkeypatch):
    from sparse_transfer.utils.io import write_csv

    monkeypatch.setattr(bench, "ROOT", bench.WORK.parent)
    monkeypatch.setattr(bench, "model_path", lambda name: f"models/{name}")
    for lr, score in [(2e-5, 0.25), (5e-5, 0.28), (1e-4, 0.26)]:
        name = bench.run_name("cola", "dense_reference", lr, 0.1)
        (bench.RECORDS / f"{name}.json").write_text(json.dumps(
            {"task": "cola", "method": "dense_reference", "learning_rate": lr, "dropout": 0.1, "model": "dense",
             "recipe": "dense_transfer", "output_dir": f"work/glue_comparison/{name}",
             "best": {"eval_matthews_correlation": score}}))
    calls = []

    def fake_run(task, model, recipe, lr, seed, out, extra=()):
        calls.append((out.name, model, recipe, lr, seed, extra))
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(b"weights")
        write_csv([{"epoch": 1, "eval_matthews_correlation": 0.1}], out / "epoch_metrics.csv")
        best = {"eval_matthews_correlation": 0.27 if recipe == "dense_transfer" else 0.1}
        (out / "eval_results.json").write_text(json.dumps({"best": best}))
        return {"best": best}

    monkeypatch.setattr(bench, "glue_run", fake_run)
    teacher_dir = bench.WORK / "glue_comparison" / "cola_dense_reference_lr5e-05_dropout0.1"
    assert bench.run_one("cola", "gradual_unfreeze_distill", 3e-4, 0.1, bench.load_records(), "upstream-x")
    assert calls[0] == ("cola_dense_reference_lr5e-05_dropout0.1", "models/dense", "dense_transfer", 5e-5, 0,
                        ("--dropout", "0.1"))  # the best reference, at its recorded configuration and seed
    assert calls[1][:3] == ("cola_upstream-x_gradual_unfreeze_distill_lr0.0003_dropout0.1", "models/upstream-x",
                            "gradual_unfreeze_distill")
    assert calls[1][5][-2:] == ("--teacher", str(teacher_dir))
    first = json.loads((bench.RECORDS / "cola_upstream-x_gradual_unfreeze_distill_lr0.0003_dropout0.1.json").read_text())
    assert first["teacher"] == {"output_dir": "work/glue_comparison/cola_dense_reference_lr5e-05_dropout0.1",
                                "metric": "eval_matthews_correlation", "best": 0.27, "recorded_best": 0.28}
    reference = json.loads((bench.RECORDS / "cola_dense_reference_lr5e-05_dropout0.1.json").read_text())
    assert reference["best"] == {"eval_matthews_correlation": 0.28}  # the first measurement stays the record
    assert bench.run_one("cola", "gradual_unfreeze_distill", 3e-4, 0.05, bench.load_records(), "upstream-x")
    assert len(calls) == 3  # the teacher is here now: not trained a third time
    second = json.loads((bench.RECORDS / "cola_upstream-x_gradual_unfreeze_distill_lr0.0003_dropout0.05.json").read_text())
    assert second["teacher"] == first["teacher"]  # the model trained again is the one it was distilled from


def test_a_worker_that_finds_another_training_the_teacher_waits_for_it_instead_of_training_it_too(bench, monkeypatch):
    monkeypatch.setattr(bench, "ROOT", bench.WORK.parent)
    name = bench.run_name("stsb", "dense_reference", 5e-5, 0.1)
    reference = {"task": "stsb", "method": "dense_reference", "learning_rate": 5e-5, "dropout": 0.1, "model": "dense",
                 "recipe": "dense_transfer", "output_dir": f"work/glue_comparison/{name}", "best": {"eval_pearson": 0.84}}
    teacher_dir = bench.WORK / "glue_comparison" / name
    assert bench.claim(name)  # held by a live worker (this process stands in for it)
    waits = []

    def other_worker_finishes(seconds):
        waits.append(seconds)
        teacher_dir.mkdir(parents=True)
        (teacher_dir / "model.safetensors").write_bytes(b"weights")
        (teacher_dir / "eval_results.json").write_text(json.dumps({"best": {"eval_pearson": 0.841}}))
        bench.claim_path(name).unlink()

    monkeypatch.setattr(bench.time, "sleep", other_worker_finishes)
    monkeypatch.setattr(bench, "glue_run", lambda *args, **kwargs: pytest.fail("trained the teacher a second time"))
    assert bench.teacher([reference], "stsb") == {"output_dir": f"work/glue_comparison/{name}", "metric": "eval_pearson",
                                                  "best": 0.841, "recorded_best": 0.84}
    assert waits == [30] and not bench.claim_path(name).exists()


def test_runs_from_two_builds_of_the_sparse_model_are_said_to_be_so(bench):
    record(bench, "dense_reference", 5e-5, 0.1, 0.28, 0.25)
    record(bench, "dense_transfer", 3e-4, 0.05, 0.11, 0.11)  # a record from before the fingerprint
    record(bench, "gradual_unfreeze", 3e-4, 0.05, 0.10, 0.10)
    assert "Starting weights" not in bench.report()  # one build (as far as the records know)
    for method, lr in (("dense_transfer", 2e-4), ("gradual_unfreeze", 2e-4), ("gradual_unfreeze", 1e-4)):
        record(bench, method, lr, 0.05, 0.12, 0.12)
        path = bench.RECORDS / f"{bench.run_name('cola', method, lr, 0.05, bench.UPSTREAM_MODEL)}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "model_sha256": "3b48c12556c36386"}))
    text = bench.report()
    assert "Starting weights (SHA-256 of `model.safetensors`, runs): 3b48c12556c36386 3, not recorded 2." in text


def test_rerun_build_repeats_another_builds_configurations_from_this_build_and_tables_compare_within_builds(
        bench, monkeypatch, capsys):
    import sys

    from sparse_transfer.utils.io import write_csv

    model = "upstream-90-obs-cls4-cosine1-long-plus1200"  # its runs without a recorded build are 685faa2fdf121a41's

    def run_from(build, method, lr, dropout, best):
        record(bench, method, lr, dropout, best, best, model=model)
        path = bench.RECORDS / f"{bench.run_name('cola', method, lr, dropout, model)}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **({"model_sha256": build} if build else {})}))

    record(bench, "dense_reference", 5e-5, 0.1, 0.28, 0.25)
    run_from(None, "gradual_unfreeze", 3e-4, 0.05, 0.10)
    run_from(None, "gradual_unfreeze", 3e-4, 0.1, 0.11)
    run_from("d202862609eaaca1", "gradual_unfreeze", 1e-4, 0.05, 0.09)
    run_from("d202862609eaaca1", "gradual_unfreeze", 1e-4, 0.1, 0.08)
    run_from("d202862609eaaca1", "dense_transfer", 1e-4, 0.05, 0.09)
    run_from("685faa2fdf121a41", "gradual_unfreeze_distill", 1e-4, 0.05, 0.13)
    run_from("685faa2fdf121a41", "gradual_unfreeze_distill", 3e-4, 0.05, 0.12)
    records = bench.load_records()
    plan = bench.planned_reruns("cola", ["gradual_unfreeze", "gradual_unfreeze_distill"], records, model,
                                "d202862609eaaca1")
    assert plan == [("gradual_unfreeze", 1e-4, 0.05), ("gradual_unfreeze", 1e-4, 0.1)]  # only that build's runs

    weights = bench.WORK / "model.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"this checkout's build")
    this_build = bench.weights_fingerprint(str(bench.WORK))
    monkeypatch.setattr(bench, "model_path", lambda name: str(bench.WORK))
    monkeypatch.setattr(bench, "ROOT", bench.WORK.parent)
    trained = []

    def fake_run(task, model_dir, recipe, lr, seed, out, extra=()):
        trained.append((out.name, lr, extra))
        out.mkdir(parents=True, exist_ok=True)
        write_csv([{"epoch": 1, "eval_matthews_correlation": 0.1}], out / "epoch_metrics.csv")
        score = {"eval_matthews_correlation": 0.10 if lr == 1e-4 else 0.0}
        return {"best": score, "final": score, "sparsity": 0.9, "mask_violations": 0, "train_runtime_s": 60,
                "model_sha256": this_build}

    monkeypatch.setattr(bench, "glue_run", fake_run)
    monkeypatch.setattr(sys, "argv", ["glue_comparison.py", "run", "--tasks", "cola", "--methods", "gradual_unfreeze",
                                      "--sparse_model", model, "--rerun_build", "d202862609eaaca1"])
    bench.main()
    suffix = f"_build{this_build[:8]}"
    assert [name for name, _, _ in trained] == [
        f"cola_{model}_gradual_unfreeze_lr0.0001_dropout0.05{suffix}", f"cola_{model}_gradual_unfreeze_lr0.0001_dropout0.1{suffix}"]
    rerun = json.loads((bench.RECORDS / f"{trained[0][0]}.json").read_text())
    assert rerun["rerun_of"] == f"cola_{model}_gradual_unfreeze_lr0.0001_dropout0.05"
    original = json.loads((bench.RECORDS / f"{rerun['rerun_of']}.json").read_text())
    assert original["model_sha256"] == "d202862609eaaca1" and original["best"]["eval_matthews_correlation"] == 0.09

    text = bench.TABLES.read_text()
    main_table = text.split(f"### COLA from {model}")[1].split("Within one build")[0]
    assert "| gradual_unfreeze | 4 | 10.5 ± 0.5 |" in main_table  # one run per configuration: no rerun in it
    assert "runs that did not record their build are read as 685faa2fdf121a41" in text
    assert ("Starting weights (SHA-256 of `model.safetensors`, runs): 685faa2fdf121a41 4 (2 of them not recorded, "
            "read as it), d202862609eaaca1 3.") in text  # the main table's runs: no rerun among them
    assert "| 685faa2fdf121a41 | gradual_unfreeze | 2 | 10.5 ± 0.5 | 10.5 |" in text  # the unrecorded ones
    assert f"| {this_build} | gradual_unfreeze | 2 | 10.0 ± 0.0 | 10.0 |" in text  # the reruns
    assert "| d202862609eaaca1 | gradual_unfreeze | 2 | 8.5 ± 0.5 | 8.5 |" in text
    assert ("Reading within build d202862609eaaca1: gradual unfreezing does not beat the best dense-transfer recipe "
            "(dense_transfer): -0.5 points, from fewer than 2 grid configurations each") in text
    assert "Reading within build 685faa2fdf121a41: not enough runs yet" in text  # no dense-transfer run in it

    monkeypatch.setattr(sys, "argv", ["glue_comparison.py", "run", "--sparse_model", model, "--rerun_build", this_build])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2 and f"--rerun_build {this_build} is this checkout's build" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["glue_comparison.py", "run", "--sparse_model", model, "--rerun_build", "d2028626"])
    with pytest.raises(SystemExit):
        bench.main()
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: --rerun_build d2028626: no run of {model} is recorded from that build; give one of "
        + ", ".join(sorted(["685faa2fdf121a41", this_build, "d202862609eaaca1"])))  # a shortened hash is not a build
    monkeypatch.setattr(sys, "argv", ["glue_comparison.py", "run", "--tasks", "cola", "--methods", "rescaled_dense",
                                      "--sparse_model", model, "--rerun_build", "d202862609eaaca1"])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2 and capsys.readouterr().err.splitlines()[-1].endswith(
        "error: --rerun_build d202862609eaaca1: none of its runs is planned by --tasks cola --methods rescaled_dense "
        "(at the planned configurations); that build has cola dense_transfer, cola gradual_unfreeze")
    assert len(trained) == 2  # nothing more ran
