"""The package as a user installs it: a wheel built from the tree, installed into a fresh
virtual environment without the checkout, runs the main job by recipe name and starts
every command (recipes, the C kernel's source and the metric module ship inside it)."""

import csv
import json
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from helpers import ROOT


def _run(command, cwd, **kwargs):
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with only the wheel installed; the dependencies are this environment's
    (added to its path, so nothing is downloaded), the checkout is nowhere on its path."""
    where = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                  "-w", str(where)], cwd=where)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = where.glob("sparse_transfer-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                      "-q", str(wheel)], cwd=where)
    assert installed.returncode == 0, installed.stderr[-2000:]
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=where)
    (venv / "lib").glob("*")
    with open(os.path.join(site.stdout.strip(), "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, venv


def test_the_wheel_ships_recipes_the_kernel_sources_and_the_metric_module(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "sparse_transfer/recipes/transfer/gradual_unfreeze.yaml" in names
    assert "sparse_transfer/recipes/upstream/obs_distill_cls.yaml" in names
    assert "sparse_transfer/recipes/vision/fashion_mnist_acdc.yaml" in names
    assert "sparse_transfer/recipes/vision/fashion_mnist_transfer_linear.yaml" in names
    sources = ("tiled_csr.c", "sparse_int8.c", "attention.c", "kernel_parts.h", "vector_math.h")
    assert {f"sparse_transfer/inference/{name}" for name in sources} <= set(names)
    assert "sparse_transfer/glue/glue_metric/glue_metric.py" in names
    assert any(name.endswith("entry_points.txt") for name in names)


def test_the_installed_main_job_runs_by_recipe_name_away_from_the_checkout(installed, tiny_model_dir, tmp_path):
    _, venv = installed
    rows = [("a great and lovely film", 1), ("dull , bad and awful", 0), ("good fun", 1), ("awful mess", 0)] * 4
    for name in ("train.csv", "dev.csv"):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([("sentence", "label"), *rows])
    located = _run([str(venv / "bin" / "python"), "-c", "import sparse_transfer; print(sparse_transfer.__file__)"],
                   cwd=tmp_path)
    assert located.stdout.startswith(str(venv)), located.stdout + located.stderr
    result = _run([str(venv / "bin" / "sparse-transfer"), "glue", "--model_name_or_path", str(tiny_model_dir),
                   "--train_file", "train.csv", "--validation_file", "dev.csv", "--recipe", "dense_transfer",
                   "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--output_dir", "out",
                   "--use_cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["recipe"] == "dense_transfer" and results["mask_violations"] == 0
    assert results["sparsity"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("command", ["prune", "upstream", "export", "vision"])
def test_every_installed_command_starts(installed, command, tmp_path):
    _, venv = installed
    result = _run([str(venv / "bin" / "sparse-transfer"), command, "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: sparse-transfer {command}")


def test_installed_recipes_list_and_an_unknown_name_fails_in_one_line(installed, tmp_path):
    _, venv = installed
    listed = _run([str(venv / "bin" / "sparse-transfer"), "recipes"], cwd=tmp_path)
    assert listed.returncode == 0
    assert "transfer: dense_transfer, extended_dense_transfer, gradual_unfreeze, gradual_unfreeze_distill" in listed.stdout
    refused = _run([str(venv / "bin" / "python"), "-m", "sparse_transfer.vision", "--recipe", "fashion_mnist_acdcc"],
                   cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "sparse-transfer vision: error: recipe fashion_mnist_acdcc does not exist; give a YAML path or one of the "
        "vision recipes: " + ", ".join(sorted(p.stem for p in (ROOT / "sparse_transfer/recipes/vision").glob("*.yaml")))]
