"""One-shot pruning (`sparse-transfer prune`): exact counts per scope, selection, refusals."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_prune_cli_gives_exactly_90_percent(minilm_90):
    report = json.loads((minilm_90 / "sparsity_report.json").read_text())
    assert report["total_params"] == 10616832  # 6 blocks x (4 x 384^2 + 2 x 384 x 1536)
    assert report["zero_params"] == round(0.9 * 10616832)
    assert report["mask_violations"] == 0 and report["num_masked_weights"] == 36


def test_prune_cli_per_layer_scope_prunes_every_layer_exactly(tiny_model_dir, tmp_path):
    out = tmp_path / "per-layer"
    subprocess.run([sys.executable, "-m", "sparse_transfer", "prune", "--model", str(tiny_model_dir), "--sparsity", "0.75",
                    "--scope", "per-layer", "--output", str(out)], check=True, capture_output=True)
    report = json.loads((out / "sparsity_report.json").read_text())
    assert {name: layer["zeros"] for name, layer in report["layers"].items()} == {
        name: round(0.75 * layer["numel"]) for name, layer in report["layers"].items()}
    assert (out / "tokenizer.json").exists()
    refused = subprocess.run([sys.executable, "-m", "sparse_transfer", "prune", "--model", str(tiny_model_dir),
                              "--sparsity", "0.5", "--output", str(out)], capture_output=True, text=True)
    assert refused.returncode == 2 and "is not empty" in refused.stderr


def test_prune_cli_include_prunes_only_the_matching_layers(tiny_dense_dir, tmp_path):
    from sparse_transfer.upstream.oneshot import main

    out = tmp_path / "attention-only"
    assert main(["--model", str(tiny_dense_dir), "--sparsity", "0.5", "--scope", "per-layer", "--include", "attention",
                 "--output", str(out)]) == 0
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["layers"] and all("attention" in name for name in report["layers"])
    assert all(layer["zeros"] == round(0.5 * layer["numel"]) for layer in report["layers"].values())
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out)
    ffn = [p for n, p in model.named_parameters() if "intermediate.dense.weight" in n]
    assert ffn and all(int((p == 0).sum()) == 0 for p in ffn)


def test_prune_cli_block_pattern_prunes_whole_1x4_blocks(tiny_dense_dir, tmp_path, capsys):
    from transformers import AutoModel

    from sparse_transfer.upstream.oneshot import main

    out = tmp_path / "blocks"
    assert main(["--model", str(tiny_dense_dir), "--sparsity", "0.75", "--block", "1x4", "--output", str(out)]) == 0
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["zero_params"] == 4 * round(0.75 * report["total_params"] / 4)
    model = AutoModel.from_pretrained(out)
    for name, layer in report["layers"].items():
        groups = model.get_parameter(name).reshape(-1, 4) != 0
        assert bool((groups.all(1) | ~groups.any(1)).all()), name
    capsys.readouterr()
    refused = tmp_path / "refused"
    assert main(["--model", str(tiny_dense_dir), "--sparsity", "0.5", "--block", "1x3", "--output", str(refused)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "are not divisible by the block of 3" in errors[0] and not refused.exists()
