"""Sparse CPU inference export on tiny BERTs: every kernel computes the Linear exactly, exported
models give the dense model's outputs, layers below the threshold stay dense, the plan and its
table are written, loading needs nothing but `load_for_inference`, bad input gets one line + exit 2."""

import json

import pytest
import torch
from helpers import tiny_sparse_bert
from torch import nn
from transformers import AutoModelForSequenceClassification

from sparse_transfer.inference import kernels
from sparse_transfer.inference.export import (
    PLAN_FILE,
    TABLE_FILE,
    export_for_inference,
    load_for_inference,
    main,
)
from sparse_transfer.inference.kernels import DENSE, KERNELS, SparseLinear
from sparse_transfer.selection import Selection
from sparse_transfer.upstream.oneshot import prune_model
from sparse_transfer.utils.errors import ConfigurationError

TILED_CSR_MISSING = KERNELS["tiled_csr"].unavailable_reason()
needs_tiled_csr = pytest.mark.skipif(TILED_CSR_MISSING is not None, reason=f"tiled_csr: {TILED_CSR_MISSING}")


def _sparse_linear_layer(out_features=48, in_features=32, sparsity=0.9, bias=True):
    torch.manual_seed(0)
    linear = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        linear.weight.mul_(torch.rand_like(linear.weight) >= sparsity)
    return linear


@pytest.mark.parametrize("kernel", sorted(name for name, kernel in KERNELS.items() if not kernel.quantized))
@pytest.mark.parametrize("tokens", [1, 63, 65, 130])  # tiled_csr: one partial tile, several, padding
def test_every_fp32_kernel_computes_the_linear(kernel, tokens):
    if KERNELS[kernel].unavailable_reason():
        pytest.skip(KERNELS[kernel].unavailable_reason())
    for bias in (True, False):
        linear = _sparse_linear_layer(bias=bias)
        x = torch.randn(tokens, 32)
        with torch.no_grad():
            expected = linear(x)
            actual = SparseLinear(linear, {tokens: kernel})(x)
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@needs_tiled_csr
def test_sparse_linear_picks_the_kernel_of_the_nearest_calibrated_size_and_keeps_batch_dims():
    layer = SparseLinear(_sparse_linear_layer(), {128: DENSE, 4096: "tiled_csr"})
    assert [layer.kernel_for(t) for t in (1, 128, 700, 1000, 4096, 10_000)] == [
        DENSE, DENSE, DENSE, "tiled_csr", "tiled_csr", "tiled_csr"]
    x = torch.randn(4, 300, 32)  # 1200 tokens -> tiled_csr
    with torch.no_grad():
        torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@needs_tiled_csr
def test_sparse_linear_stays_trainable_through_the_dense_path():
    linear = _sparse_linear_layer()
    layer = SparseLinear(linear, {1: "tiled_csr"})
    layer(torch.randn(3, 32)).sum().backward()
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    assert layer.state_dict().keys() == linear.state_dict().keys()


@pytest.fixture
def sparse_dir(tmp_path):
    path = tmp_path / "tiny-sparse"
    tiny_sparse_bert(sparsity=0.9).save_pretrained(path)
    return path


def _inputs():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 64, (3, 20), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 12:] = 0  # padding
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@needs_tiled_csr
def test_export_and_load_give_the_dense_outputs(sparse_dir, tmp_path):
    out = tmp_path / "exported"
    report = export_for_inference(str(sparse_dir), str(out), batch_sizes=(1, 4), seq_length=16,
                                  force_kernel="tiled_csr")
    assert report["verification"]["max_abs_diff"] < 1e-4
    exported = load_for_inference(str(out))
    swapped = {name for name, module in exported.named_modules() if isinstance(module, SparseLinear)}
    assert len(swapped) == 12 and all(".encoder.layer." in name for name in swapped)  # 2 blocks x 6 Linear
    assert not exported.training and not any(p.requires_grad for p in exported.parameters())
    dense = AutoModelForSequenceClassification.from_pretrained(out).eval()  # plain loading keeps working
    assert not any(isinstance(module, SparseLinear) for module in dense.modules())
    with torch.no_grad():
        torch.testing.assert_close(exported(**_inputs()).logits, dense(**_inputs()).logits, rtol=1e-5, atol=1e-5)
        reference = tiny_sparse_bert(sparsity=0.9).eval()(**_inputs()).logits
    torch.testing.assert_close(exported(**_inputs()).logits, reference, rtol=1e-5, atol=1e-5)


def test_layers_below_the_threshold_stay_dense(tmp_path):
    model = tiny_sparse_bert(sparsity=0.0)
    prune_model(model, 0.9, selection=Selection(include=["attention"]))
    model.save_pretrained(tmp_path / "attention-only")
    out = tmp_path / "exported"
    export_for_inference(str(tmp_path / "attention-only"), str(out), force_kernel="torch_csr", min_sparsity=0.5)
    plan = {layer["name"]: layer for layer in json.loads((out / PLAN_FILE).read_text())["layers"]}
    exported = load_for_inference(str(out))
    for name, layer in plan.items():
        module = exported.get_submodule(name)
        if "attention" in name and "encoder" in name:
            assert layer["sparsity"] >= 0.85 and set(layer["kernels"].values()) == {"torch_csr"}
            assert isinstance(module, SparseLinear)
        else:  # feed-forward, pooler, classifier
            assert layer["sparsity"] < 0.5 and layer["reason"].startswith("below min_sparsity")
            assert set(layer["kernels"].values()) == {DENSE} and type(module) is nn.Linear


def test_calibration_records_every_kernel_and_picks_the_fastest(sparse_dir, tmp_path, capsys):
    out = tmp_path / "calibrated"
    assert main(["--model", str(sparse_dir), "--output", str(out), "--batch_sizes", "1,2", "--seq_length", "32",
                 "--repeats", "1", "--threads", "1"]) == 0
    assert "load_for_inference" in capsys.readouterr().out
    report = json.loads((out / PLAN_FILE).read_text())
    assert report["calibration"]["token_counts"] == [32, 64] and report["calibration"]["threads"] == 1
    assert len(report["calibration"]["load_average"]) == 3
    names = {layer["name"] for layer in report["layers"]}
    assert {f"bert.encoder.layer.{i}.{part}" for i in (0, 1) for part in
            ("attention.self.query", "intermediate.dense", "output.dense")} <= names
    for layer in report["layers"]:
        if "times_ms" not in layer:
            continue
        for tokens, times in layer["times_ms"].items():
            assert {DENSE, "torch_csr", "scipy_csr"} <= times.keys()
            assert not {"dense_int8", "sparse_int8"} & times.keys()  # INT8 only when asked for
            assert layer["kernels"][tokens] == min(times, key=times.get)
    table = (out / TABLE_FILE).read_text()
    assert "bert.encoder.layer.1.output.dense" in table and "| tokens |" in table
    load_for_inference(str(out))  # the calibrated plan loads as saved


@needs_tiled_csr
def test_a_machine_without_the_chosen_kernel_falls_back_with_a_warning(sparse_dir, tmp_path, monkeypatch):
    out = tmp_path / "exported"
    export_for_inference(str(sparse_dir), str(out), batch_sizes=(1,), seq_length=8, force_kernel="tiled_csr")
    monkeypatch.setattr(kernels, "load_native", lambda: "no C compiler")
    with pytest.warns(UserWarning, match="no C compiler"):
        exported = load_for_inference(str(out))
    layer = exported.bert.encoder.layer[0].intermediate.dense
    assert set(layer.kernel_by_tokens.values()) == {DENSE}
    with torch.no_grad():
        reference = tiny_sparse_bert(sparsity=0.9).eval()(**_inputs()).logits
        torch.testing.assert_close(exported(**_inputs()).logits, reference)


def _errors(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if "error" in line]


def test_a_dense_model_gets_one_line_and_exit_2(tmp_path, capsys):
    tiny_sparse_bert(sparsity=0.0).save_pretrained(tmp_path / "dense")
    assert main(["--model", str(tmp_path / "dense"), "--output", str(tmp_path / "out")]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "no Linear weight has at least 50% zeros" in errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing model", "output not empty"])
def test_bad_paths_get_one_line_and_exit_2(case, sparse_dir, tmp_path, capsys):
    model, out = sparse_dir, tmp_path / "out"
    if case == "missing model":
        model = tmp_path / "no-such-model"
    else:
        out.mkdir()
        (out / "keep.txt").write_text("x")
    assert main(["--model", str(model), "--output", str(out)]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and ("not found" if case == "missing model" else "not empty") in errors[0]


def test_an_unknown_kernel_is_refused_by_the_parser(sparse_dir, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(sparse_dir), "--output", str(tmp_path / "out"), "--force_kernel", "gpu"])
    assert exit_info.value.code == 2


def test_loading_a_directory_that_is_no_export_is_refused(sparse_dir):
    with pytest.raises(ConfigurationError, match="no sparse_inference.json"):
        load_for_inference(str(sparse_dir))
