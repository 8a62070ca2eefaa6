"""The bf16 attention kernel: equal to a bf16-rounding reference of softmax(scale q k^T) v, within
bf16 error of FP32 SDPA, masked keys contributing exactly nothing, the same on 1 and 2 threads and
on strided views; as a transformers attention implementation it runs where it covers a call
(SDPA elsewhere), and INT8 exports calibrate it against SDPA, record the choice and load with it."""

import json
import platform

import pytest
import torch
import torch.nn.functional as F
from helpers import build_native_library, cpu_flags, tiny_sparse_bert

from sparse_transfer.inference import attention
from sparse_transfer.inference.calibration import torch_threads
from sparse_transfer.inference.export import PLAN_FILE, export_for_inference, load_for_inference, main
from sparse_transfer.utils.errors import ConfigurationError

UNAVAILABLE = attention.bf16_unavailable_reason()
needs_bf16 = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"bf16 attention: {UNAVAILABLE}")
needs_native = pytest.mark.skipif(isinstance(attention.load_native(), str), reason="no native kernels")
HAS_AMX_BF16 = platform.machine() == "x86_64" and {"amx_tile", "amx_bf16"} <= cpu_flags()


def _qkv(batch, heads, queries, keys, dim, seed=0):
    """q, k, v as strided views of projection outputs (batch, positions, heads * dim), as BERT passes them."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, queries, heads * dim, generator=generator) * 2
    kv = torch.randn(batch, keys, 2 * heads * dim, generator=generator) * 2
    views = [t.view(batch, -1, heads, dim).transpose(1, 2) for t in (q, *kv.split(heads * dim, dim=-1))]
    return views


def _reference(q, k, v, mask, scale):
    """The kernel's arithmetic in float64: q * scale, k, v and the unnormalized probabilities rounded to
    bf16, divided by the sum of the unrounded ones; (batch, queries, heads, dim)."""
    def bf16(t):
        return t.float().bfloat16().double()

    scores = bf16(q * scale) @ bf16(k).transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    out = (bf16(weights) @ bf16(v)) / weights.sum(-1, keepdim=True)
    return out.transpose(1, 2).float()


@needs_bf16
@pytest.mark.parametrize("shape", [(2, 3, 37, 37, 32), (1, 2, 5, 70, 64), (3, 1, 128, 128, 96), (1, 2, 7, 45, 64),
                                   (1, 1, 1, 1, 32), (2, 2, 3, 100, 128)])
def test_the_kernel_is_its_bf16_reference_and_near_fp32_sdpa(shape):
    batch, heads, queries, keys, dim = shape
    q, k, v = _qkv(*shape)
    valid = torch.ones(batch, keys, dtype=torch.bool)
    valid[0, max(1, keys // 2):] = False  # padding in the first sequence
    mask = valid[:, None, None, :]
    library = attention.load_native()
    out = library.bf16_attention(q, k, v, mask, dim ** -0.5)
    assert out.shape == (batch, queries, heads, dim) and out.is_contiguous()
    torch.testing.assert_close(out, _reference(q, k, v, mask, dim ** -0.5), rtol=0, atol=2e-3)
    fp32 = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    assert (out - fp32).norm() / fp32.norm() < 0.02  # bf16 inputs: 8 significant bits


@needs_bf16
@pytest.mark.skipif(not HAS_AMX_BF16, reason="this CPU has no AMX bf16 tiles")
def test_amx_tiles_and_avx512_bf16_dot_products_both_give_the_reference(tmp_path):
    amx, avx512 = attention.load_native(), build_native_library(tmp_path, ["-mno-amx-tile"])
    assert (amx.attention_path, avx512.attention_path) == ("amx-bf16", "avx512-bf16")
    for batch, heads, queries, keys, dim in [(2, 3, 37, 37, 32), (3, 1, 128, 128, 96), (1, 2, 17, 45, 64)]:
        q, k, v = _qkv(batch, heads, queries, keys, dim, seed=keys)
        mask = torch.rand(batch, 1, queries, keys, generator=torch.Generator().manual_seed(1)) > 0.2
        reference = _reference(q, k, v, mask, dim ** -0.5)
        # The two sum the scores in other orders, so a probability near a bf16 rounding boundary may round
        # the other way: one bf16 step of one probability (2^-8 of it) times a value, at most, per element.
        one_step = 2 ** -8 * float(v.abs().max())
        for library in (amx, avx512):
            out = library.bf16_attention(q, k, v, mask, dim ** -0.5)
            torch.testing.assert_close(out, reference, rtol=0, atol=one_step)
            assert (out - reference).norm() / reference.norm() < 1e-3


@needs_bf16
def test_masked_keys_contribute_exactly_nothing_and_a_fully_masked_query_gets_zeros():
    q, k, v = _qkv(2, 2, 40, 40, 32)
    causal = torch.ones(40, 40, dtype=torch.bool).tril()[None, None].expand(2, 1, 40, 40).clone()
    causal[1, 0, 3] = False  # query 3 of the second sequence sees no key
    library = attention.load_native()
    out = library.bf16_attention(q, k, v, causal, 32 ** -0.5)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 20:] += 100.0  # keys only later queries see
    v2[:, :, 20:] -= 100.0
    changed = library.bf16_attention(q, k2, v2, causal, 32 ** -0.5)
    assert torch.equal(out[:, :20], changed[:, :20])
    assert not out[1, 3].any() and out[0, 3].abs().sum() > 0
    expected = _reference(q, k, v, causal, 32 ** -0.5)
    torch.testing.assert_close(out[0], expected[0], rtol=0, atol=2e-3)


@needs_bf16
def test_one_and_two_threads_and_strided_or_contiguous_inputs_give_identical_outputs():
    q, k, v = _qkv(3, 4, 33, 33, 64)
    library = attention.load_native()
    outputs = []
    for threads in (1, 2):
        with torch_threads(threads):
            outputs.append(library.bf16_attention(q, k, v, None, 0.125))
    assert torch.equal(outputs[0], outputs[1])
    contiguous = library.bf16_attention(q.contiguous(), k.contiguous(), v.contiguous(), None, 0.125)
    assert torch.equal(outputs[0], contiguous)


class _Module(torch.nn.Module):
    is_causal = False


@needs_bf16
def test_the_implementation_runs_the_kernel_where_planned_and_sdpa_elsewhere():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = _Module().eval()
    setattr(module, attention.KERNELS_ATTRIBUTE, {128: attention.BF16, 4096: attention.SDPA})
    q, k, v = _qkv(1, 2, 128, 128, 32)
    sdpa, _ = sdpa_attention_forward(module, q, k, v, None, scaling=32 ** -0.5)
    with torch.no_grad():
        ours, weights = attention.attention_forward(module, q, k, v, None, scaling=32 ** -0.5)
    assert weights is None and not torch.equal(ours, sdpa)
    torch.testing.assert_close(ours, attention.load_native().bf16_attention(q, k, v, None, 32 ** -0.5), rtol=0, atol=0)
    big = _qkv(32, 2, 128, 128, 32)  # 4096 tokens: planned SDPA
    float_mask = torch.zeros(1, 1, 128, 128)
    q16, k16, v16 = _qkv(1, 2, 128, 128, 16)
    for args in (big + [None], [q, k, v, float_mask], [q16, k16, v16, None], [t.double() for t in (q, k, v)] + [None]):
        expected, _ = sdpa_attention_forward(module, *args, scaling=0.2)
        with torch.no_grad():
            actual, _ = attention.attention_forward(module, *args, scaling=0.2)
        assert torch.equal(actual, expected)
    grad_q = q.clone().requires_grad_()
    actual, _ = attention.attention_forward(module, grad_q, k, v, None, scaling=0.2)
    assert actual.requires_grad  # training: SDPA, differentiable


@pytest.fixture
def sparse_dir(tmp_path):
    path = tmp_path / "tiny-sparse-h32"
    tiny_sparse_bert(sparsity=0.9, hidden_size=64).save_pretrained(path)  # 2 heads of 32
    return path


@needs_bf16
def test_an_int8_export_calibrates_attention_and_loads_with_its_choice(sparse_dir, tmp_path):
    out = tmp_path / "int8"
    report = export_for_inference(str(sparse_dir), str(out), batch_sizes=(1, 4), seq_length=16, repeats=2,
                                  force_kernel="sparse_int8", quantize="int8")
    plan = json.loads((out / PLAN_FILE).read_text())["attention"]
    assert plan == report["attention"] and plan["reason"] == "calibrated" and set(plan["kernels"]) == {"16", "64"}
    assert plan["shape"] == {"heads": 2, "head_size": 32}
    for tokens, ms in plan["times_ms"].items():
        assert set(ms) == {"sdpa", "bf16"} and plan["kernels"][tokens] == min(ms, key=ms.get)
    assert plan["bf16_path"] == attention.load_native().attention_path  # amx-bf16 or avx512-bf16
    assert "Attention: 16 tokens" in (out / "sparse_inference.md").read_text()
    assert f"calibrated (bf16 on {plan['bf16_path']})." in (out / "sparse_inference.md").read_text()
    forced = tmp_path / "bf16"
    export_for_inference(str(sparse_dir), str(forced), batch_sizes=(2,), seq_length=16, force_kernel="sparse_int8",
                         quantize="int8", attention="bf16")
    exported = load_for_inference(str(forced))
    assert exported.config._attn_implementation == attention.IMPLEMENTATION
    self_attention = exported.bert.encoder.layer[0].attention.self
    assert getattr(self_attention, attention.KERNELS_ATTRIBUTE) == {32: attention.BF16}
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0  # padding: the sequence's first 10 tokens as if alone
    padded = exported(input_ids=ids, attention_mask=mask).logits
    alone = exported(input_ids=ids[1:, :10]).logits
    torch.testing.assert_close(padded[1:], alone, rtol=0, atol=1e-4)
    calls = []
    original = attention.load_native().bf16_attention
    attention.load_native().bf16_attention = lambda *args: calls.append(args[0].shape) or original(*args)
    try:
        exported(input_ids=ids)
    finally:
        del attention.load_native().bf16_attention
    assert calls == [(2, 2, 16, 32)] * 2  # both layers ran the kernel
    sdpa_twin = load_for_inference(str(forced))
    sdpa_twin.set_attn_implementation("sdpa")
    with torch.no_grad():
        expected = sdpa_twin(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(padded, expected, rtol=0, atol=0.02 * float(expected.abs().max()))


@needs_bf16
def test_a_plan_that_timed_attention_on_other_bf16_instructions_warns_and_runs_here(sparse_dir, tmp_path):
    out = tmp_path / "int8"
    export_for_inference(str(sparse_dir), str(out), batch_sizes=(2,), seq_length=16, repeats=1,
                         force_kernel="sparse_int8", quantize="int8", attention="auto")
    plan = json.loads((out / PLAN_FILE).read_text())
    plan["attention"].update(kernels={"32": "bf16"}, bf16_path="other-bf16-path")
    (out / PLAN_FILE).write_text(json.dumps(plan))
    here = attention.load_native().attention_path
    with pytest.warns(UserWarning, match=f"timed bf16 attention on other-bf16-path; here it runs on {here} .*export "
                                         "again here"):
        exported = load_for_inference(str(out))
    assert exported.config._attn_implementation == attention.IMPLEMENTATION


@needs_bf16
def test_bf16_attention_in_an_fp32_export_is_checked_as_reduced_precision(sparse_dir, tmp_path):
    report = export_for_inference(str(sparse_dir), str(tmp_path / "fp32-bf16"), batch_sizes=(2,), seq_length=16,
                                  force_kernel="tiled_csr", attention="bf16")
    assert report["attention"]["kernels"] == {"32": "bf16"}
    assert report["verification"]["min_cosine"] > 0.99
    plain = export_for_inference(str(sparse_dir), str(tmp_path / "fp32"), batch_sizes=(2,), seq_length=16,
                                 force_kernel="tiled_csr")
    assert plain["attention"]["kernels"] == {"32": "sdpa"} and "min_cosine" not in plain["verification"]
    assert load_for_inference(str(tmp_path / "fp32")).config._attn_implementation == "sdpa"


def test_attention_that_cannot_run_gets_one_line(tmp_path, capsys):
    small = tmp_path / "heads-of-8"
    tiny_sparse_bert(sparsity=0.9).save_pretrained(small)  # hidden 16, 2 heads: head size 8
    capsys.readouterr()
    assert main(["--model", str(small), "--output", str(tmp_path / "o"), "--quantize", "int8", "--attention",
                 "bf16", "--force_kernel", "dense_int8"]) == 2
    reason = UNAVAILABLE or "the bf16 kernel needs a head size that is a multiple of 32, not 8"
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # beside loading's bars
    assert errors == [f"sparse-transfer export: error: --attention bf16 cannot run: {reason}; use --attention sdpa"]
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigurationError, match="unknown attention 'fp16'"):
        attention.plan_attention(tiny_sparse_bert(), [16], 16, 1, 1, "fp16", "int8")


@needs_bf16
def test_a_bf16_plan_on_a_cpu_without_it_warns_and_runs_sdpa(sparse_dir, tmp_path, monkeypatch):
    out = tmp_path / "bf16"
    export_for_inference(str(sparse_dir), str(out), batch_sizes=(2,), seq_length=16, force_kernel="sparse_int8",
                         quantize="int8", attention="bf16")
    monkeypatch.setattr(attention, "bf16_unavailable_reason", lambda: "no AVX-512 bf16 here")
    with pytest.warns(UserWarning, match=r"bf16 attention is unavailable here \(no AVX-512 bf16 here\)"):
        exported = load_for_inference(str(out))
    assert exported.config._attn_implementation == "sdpa"


@needs_bf16
@pytest.mark.parametrize("family", ["modernbert", "electra"])  # rotary + local (sliding-window) masks; BERT-like
def test_other_encoder_families_run_the_kernel_with_their_own_masks(family, monkeypatch):
    import transformers

    from helpers import tiny_encoder_config

    config = tiny_encoder_config(family)
    config.hidden_size, config.intermediate_size = 64, 128  # 2 heads of 32
    if family == "modernbert":
        config.local_attention = 8  # sliding windows shorter than the sequence
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config).eval()
    ids = torch.randint(3, 64, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        attention.apply_attention_plan(model, {"kernels": {"48": attention.BF16}})
        calls = []
        original = attention.load_native().bf16_attention
        monkeypatch.setattr(attention.load_native(), "bf16_attention", lambda *a: calls.append(a[3]) or original(*a))
        actual = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert len(calls) == config.num_hidden_layers and all(m is not None and m.dtype == torch.bool for m in calls)
    valid = mask.bool()
    cosine = F.cosine_similarity(actual[valid], expected[valid], dim=-1)
    assert cosine.min() > 0.999


@needs_native
def test_a_plan_made_before_attention_kernels_loads_with_sdpa(int8_export):
    _, out = int8_export
    plan = json.loads((out / PLAN_FILE).read_text())
    del plan["attention"]  # as exports wrote their plans before attention was planned
    (out / PLAN_FILE).write_text(json.dumps(plan))
    exported = load_for_inference(str(out))
    assert exported.config._attn_implementation == "sdpa"
    assert exported(input_ids=torch.randint(0, 64, (2, 16))).logits.shape == (2, 2)
