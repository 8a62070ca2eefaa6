"""Grid bookkeeping and run_glue's argument precedence (no training)."""

import pytest

from sparse_transfer.transfer import run as transfer_run
from sparse_transfer.transfer.grid import grid_runs, parse_epochs, summarize
from sparse_transfer.utils.arguments import without_flags
from sparse_transfer.utils.errors import ConfigurationError


def test_the_papers_grid_has_six_named_runs():
    runs = grid_runs([1e-4, 2e-4, 3e-4], [0.05, 0.1])
    assert [r.name for r in runs] == ["lr0.0001_dropout0.05", "lr0.0001_dropout0.1", "lr0.0002_dropout0.05",
                                      "lr0.0002_dropout0.1", "lr0.0003_dropout0.05", "lr0.0003_dropout0.1"]
    assert runs[3].overrides == {"learning_rate": 2e-4, "dropout": 0.1}
    sweep = grid_runs([1e-4], [None], parse_epochs("1-3"))
    assert [r.name for r in sweep] == ["epochs1_lr0.0001", "epochs2_lr0.0001", "epochs3_lr0.0001"]


def test_epoch_ranges_and_lists():
    assert parse_epochs("1-7") == [1, 2, 3, 4, 5, 6, 7]
    assert parse_epochs("2,5") == [2, 5]
    with pytest.raises(ConfigurationError, match="--sweep_epochs 'x' is not a range"):
        parse_epochs("x")


def test_summary_reports_mean_and_std_of_the_two_best():
    summary = summarize({"a": 0.60, "b": 0.64, "c": 0.58, "d": 0.62}, "eval_accuracy", top_k=2)
    assert summary["best_run"] == "b" and summary["best_value"] == 0.64
    assert summary["top_k_runs"] == ["b", "d"]
    assert summary["top_k_mean"] == pytest.approx(0.63)
    assert summary["top_k_std"] == pytest.approx(0.01)


def test_without_flags_drops_flags_and_their_values():
    argv = ["--task", "rte", "--grid", "--output_dir=x", "--learning_rate", "1e-4", "--seed", "3"]
    assert without_flags(argv, {"grid", "output_dir", "learning_rate"}) == ["--task", "rte", "--seed", "3"]


def test_precedence_cli_over_recipe_over_script_defaults(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: mine\ntraining:\n  learning_rate: 3.0e-4\n  weight_decay: 0.05\n")
    _, data_args, _, args, task, loaded, _ = transfer_run.parse_arguments(
        ["--task", "STS-B", "--recipe", str(recipe), "--weight_decay", "0.0"])
    assert task.name == "stsb" and loaded.name == "mine"
    assert args.learning_rate == 3e-4  # recipe over the TrainingArguments default
    assert args.weight_decay == 0.0  # command line over the recipe
    assert args.output_dir == "runs/stsb/mine" and args.load_best_model_at_end  # script defaults
    assert args.metric_for_best_model == "pearson"
    assert data_args.max_seq_length == 128


def test_arguments_from_one_yaml_file(tmp_path):
    path = tmp_path / "args.yaml"
    path.write_text("task: mnli\nlearning_rate: 2.0e-4\nreport_to: [none]\noutput_dir: somewhere\n")
    model_args, _, st_args, args, task, _, _ = transfer_run.parse_arguments([str(path)])
    assert task.name == "mnli" and args.learning_rate == 2e-4 and args.output_dir == "somewhere"
    assert args.metric_for_best_model == "matched_accuracy"
    assert model_args.model_name_or_path == transfer_run.DEFAULT_MODEL
    assert st_args.recipe == "gradual_unfreeze"


def test_a_recipe_can_switch_the_grid_on(tmp_path, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grid:\n  enabled: true\n  learning_rate: [1.0e-4]\n  dropout: [0.1]\n")
    seen = {}
    monkeypatch.setattr(transfer_run, "run_grid", lambda *args: seen.setdefault("grid", args[1].grid))
    monkeypatch.setattr(transfer_run, "train_and_report", lambda *args: seen.setdefault("single", True))
    assert transfer_run.main(["--task", "rte", "--recipe", str(recipe), "--output_dir", str(tmp_path / "o")]) == 0
    assert seen == {"grid": True}
