"""INT8 kernels: the toolkit's sparse INT8 kernel gives exactly the integer reference's int32 sums
(AVX-512 VNNI, AVX2 or the portable path), the same results on 1 and 2 threads, and dequantized outputs within
the quantization error of FP32; an INT8 export records how far its outputs move and loads into
`transformers.pipeline` with the FP32 model's labels."""

import json
import platform
import warnings

import pytest
import torch
from helpers import build_native_library, cpu_flags, tiny_sparse_bert
from torch import nn

from sparse_transfer.inference.calibration import torch_threads
from sparse_transfer.inference.export import PLAN_FILE, export_for_inference, load_for_inference, main
from sparse_transfer.inference.kernels import KERNELS, Int8BlockWeight, SparseLinear, quantize_weight
from sparse_transfer.inference.native import load_native
from sparse_transfer.utils.errors import ConfigurationError

NATIVE = load_native()
needs_native = pytest.mark.skipif(isinstance(NATIVE, str), reason=f"native kernels: {NATIVE}")


def _weight(out_features=40, in_features=70, sparsity=0.9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=generator)
    return weight * (torch.rand(out_features, in_features, generator=generator) >= sparsity)


@pytest.mark.parametrize("pair_limit", [0, 128])  # VNNI / portable builds; the AVX2 build
def test_block_weight_keeps_exactly_the_blocks_with_a_non_zero_and_their_int8_values(pair_limit):
    weight = _weight(in_features=70)  # 70 = 17 blocks of 4 + 2 padded features
    w_q, scales = quantize_weight(weight)
    assert not w_q[weight == 0].any()  # pruned weights stay exactly zero
    assert torch.allclose(w_q.float() * scales[:, None], weight, atol=scales.max().item() / 2)
    packed = Int8BlockWeight.of(weight, pair_limit=pair_limit)
    rebuilt = torch.zeros(40, 72, dtype=torch.int16)
    for row in range(40):
        for entry in range(packed.indptr[row], packed.indptr[row + 1]):
            column = packed.columns[entry].item()
            rebuilt[row, 4 * column:4 * column + 4] += packed.values[entry:entry + 1].view(torch.int8)
    assert torch.equal(rebuilt[:, :70], w_q.to(torch.int16)) and not rebuilt[:, 70:].any()
    blocks = torch.nn.functional.pad(w_q, (0, 2)).view(40, 18, 4)
    over_limit = blocks.to(torch.int16).view(40, 18, 2, 2).sum(3).abs().gt(pair_limit).any(2) if pair_limit else 0
    assert packed.columns.numel() == (blocks != 0).any(2).sum().item() + int(torch.as_tensor(over_limit).sum())
    stored = packed.values.view(torch.int8).view(-1, 2, 2).to(torch.int16).sum(2).abs()
    assert pair_limit == 0 or (int(stored.max()) <= pair_limit and int(torch.as_tensor(over_limit).sum()) > 0)
    assert torch.equal(packed.row_sums, w_q.sum(1, dtype=torch.int32)) and packed.pair_limit == pair_limit


def test_a_pair_limit_below_what_a_split_block_reaches_is_refused():
    with pytest.raises(ValueError, match=r"^pair_limit 100: a split block keeps weights up to 64 .* use 128 or more"):
        Int8BlockWeight.of(_weight(), pair_limit=100)


@needs_native
def test_activation_quantization_matches_its_reference_exactly():
    x = torch.randn(9, 70) * 3
    x[2] = torch.rand(70)  # all positive: the range still holds 0
    x_q, scales, zeros = NATIVE.quantize_rows(x)
    low, high = x.amin(1).clamp(max=0), x.amax(1).clamp(min=0)
    expected_scales = (high - low) / 255.0
    expected_zeros = torch.round(-low / expected_scales).int().clamp(0, 255)
    inverse = 1.0 / expected_scales  # float32, as the kernel computes it
    expected_q = (torch.round(x * inverse[:, None]).int() + expected_zeros[:, None]).clamp(0, 255)
    assert torch.equal(scales, expected_scales) and torch.equal(zeros, expected_zeros)
    assert torch.equal(x_q.int(), expected_q) and zeros[2] == 0


@needs_native
@pytest.mark.parametrize("tokens", [1, 2, 63, 130])  # fewer tokens than threads, one partial tile, several
@pytest.mark.parametrize("in_features", [64, 70])
def test_sparse_int8_sums_are_the_integer_reference_exactly(tokens, in_features):
    weight, bias = _weight(in_features=in_features), torch.randn(40)
    x = torch.randn(tokens, in_features)
    packed = Int8BlockWeight.of(weight)
    w_q, w_scales = quantize_weight(weight)
    x_q, x_scales, zeros = NATIVE.quantize_rows(x)
    reference = x_q.int() @ w_q.int().T  # exact int32 products of the quantized operands
    results = []
    for threads in (1, 2):
        sums = torch.empty(tokens, 40, dtype=torch.int32)
        with torch_threads(threads):
            y = NATIVE.sparse_int8(packed, bias, x, sums)
        assert torch.equal(sums, reference), f"{threads} thread(s)"
        results.append(y)
    assert torch.equal(results[0], results[1])  # 1 and 2 threads: identical outputs
    dequantized = x_scales[:, None] * w_scales[None, :] * (reference - zeros[:, None] * w_q.int().sum(1)).float() + bias
    torch.testing.assert_close(results[0], dequantized, rtol=1e-5, atol=1e-5)
    fp32 = nn.functional.linear(x, weight, bias)
    assert ((results[0] - fp32).norm() / fp32.norm()).item() < 0.03  # within INT8 quantization error


@needs_native
def test_gelu_computed_in_the_kernel_is_gelu_of_its_output():
    weight, bias = _weight(out_features=48, in_features=64), torch.randn(48)
    x = torch.randn(130, 64) * 3  # outputs from about -20 to 20: both tails of erf and its middle
    packed = Int8BlockWeight.of(weight)
    for threads in (1, 2):
        with torch_threads(threads):
            fused, plain = NATIVE.sparse_int8(packed, bias, x, gelu=True), NATIVE.sparse_int8(packed, bias, x)
        assert plain.abs().max() > 10 and (plain < -3).any()
        torch.testing.assert_close(fused, nn.functional.gelu(plain), rtol=0, atol=1e-6 * float(plain.abs().max()))


@needs_native
def test_an_export_moves_bert_s_ffn_gelu_into_the_layer_with_the_same_outputs(sparse_dir, tmp_path):
    out = tmp_path / "int8-gelu"
    export_for_inference(str(sparse_dir), str(out), batch_sizes=(2,), seq_length=16, force_kernel="sparse_int8",
                         quantize="int8")
    exported = load_for_inference(str(out))
    layers = exported.bert.encoder.layer
    assert all(layer.intermediate.dense.gelu and isinstance(layer.intermediate.intermediate_act_fn, nn.Identity)
               for layer in layers)
    assert not any(layer.output.dense.gelu or layer.attention.self.query.gelu for layer in layers)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    fused = exported(input_ids=ids).logits
    from transformers.activations import GELUActivation

    for layer in layers:  # the activation back in its own module, on float outputs
        layer.intermediate.dense.gelu = False
        layer.intermediate.dense.quantized_consumer = ()
        layer.intermediate.intermediate_act_fn = GELUActivation()
    torch.testing.assert_close(fused, exported(input_ids=ids).logits, rtol=0, atol=1e-5)


@needs_native
def test_tiled_csr_gives_identical_results_on_1_and_2_threads():
    weight, bias, x = _weight(out_features=96, in_features=64), torch.randn(96), torch.randn(200, 64)
    prepared = KERNELS["tiled_csr"].prepare(weight)
    outputs = []
    for threads in (1, 2):
        with torch_threads(threads):
            outputs.append(KERNELS["tiled_csr"].apply(prepared, x, bias))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("kernel", ["dense_int8", "sparse_int8"])
def test_int8_kernels_stay_within_quantization_error_of_fp32(kernel):
    if KERNELS[kernel].unavailable_reason():
        pytest.skip(KERNELS[kernel].unavailable_reason())
    linear = nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight.copy_(_weight(48, 64))
    x = torch.randn(3, 50, 64)
    with torch.no_grad():
        expected, actual = linear(x), SparseLinear(linear, {150: kernel})(x)
    assert actual.shape == expected.shape
    assert ((actual - expected).norm() / expected.norm()).item() < 0.03


@pytest.fixture
def sparse_dir(tmp_path):
    path = tmp_path / "tiny-sparse"
    tiny_sparse_bert(sparsity=0.9).save_pretrained(path)
    return path


@needs_native
def test_an_int8_export_records_its_check_and_loads_with_its_plan(sparse_dir, tmp_path):
    out = tmp_path / "int8"
    report = export_for_inference(str(sparse_dir), str(out), batch_sizes=(1, 4), seq_length=16,
                                  force_kernel="sparse_int8", quantize="int8")
    assert report["calibration"]["quantize"] == "int8"
    assert report["calibration"]["int8_dot_product"] == NATIVE.has_vnni
    check = report["verification"]
    assert check["min_cosine"] >= 0.95 and 0 < check["max_relative_error"] < 0.1 and check["same_argmax"] > 0.5
    plan = json.loads((out / PLAN_FILE).read_text())
    encoder = [layer for layer in plan["layers"] if ".encoder." in layer["name"]]
    assert len(encoder) == 12 and all(set(layer["kernels"].values()) == {"sparse_int8"} for layer in encoder)
    exported = load_for_inference(str(out))
    assert exported.bert.encoder.layer[0].output.dense.kernel_for(16) == "sparse_int8"
    assert plan["calibration"]["int8_kernel_path"] == NATIVE.int8_path


@needs_native
@pytest.mark.parametrize("planned", [{"int8_kernel_path": "other-path"}, {"int8_dot_product": True}])  # + older plans
def test_a_plan_timed_on_another_int8_path_warns_and_gives_the_same_logits(int8_export, planned):
    source, out = int8_export
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = load_for_inference(str(out))(input_ids=ids).logits
    plan = json.loads((out / PLAN_FILE).read_text())
    plan["calibration"].pop("int8_kernel_path")
    plan["calibration"].update(planned)
    (out / PLAN_FILE).write_text(json.dumps(plan))
    if planned.get("int8_dot_product") and NATIVE.has_vnni:  # an older VNNI plan on a VNNI CPU: the same path
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load_for_inference(str(out))
        assert not [warning for warning in caught if "calibrated where" in str(warning.message)]
    else:
        where = planned.get("int8_kernel_path", "avx512-vnni")
        with pytest.warns(UserWarning, match=f"calibrated where sparse_int8 ran on {where}; here it runs on "
                                             f"{NATIVE.int8_path} .*export again here"):
            loaded = load_for_inference(str(out))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)


@needs_native
def test_calibrating_an_int8_export_offers_the_dense_int8_kernel_to_every_layer(sparse_dir, tmp_path):
    out = tmp_path / "int8-calibrated"
    assert main(["--model", str(sparse_dir), "--output", str(out), "--batch_sizes", "1", "--seq_length", "16",
                 "--repeats", "1", "--threads", "1", "--quantize", "int8"]) == 0
    for layer in json.loads((out / PLAN_FILE).read_text())["layers"]:
        times = layer["times_ms"]["16"]
        assert "dense_int8" in times and layer["kernels"]["16"] == min(times, key=times.get)
        if layer["sparsity"] >= 0.5:
            assert "sparse_int8" in times


def test_bad_quantize_values_get_one_line(sparse_dir, tmp_path, capsys):
    assert main(["--model", str(sparse_dir), "--output", str(tmp_path / "o"), "--quantize", "int4"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sparse-transfer export: error: unknown quantize value 'int4'; use int8 (or leave it unset for FP32)"]
    with pytest.raises(ConfigurationError, match="kernel sparse_int8 is INT8: add --quantize int8"):
        export_for_inference(str(sparse_dir), str(tmp_path / "p"), force_kernel="sparse_int8")
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()


TEXTS = ["the film was wonderful.", "a dull and tedious story.", "it rained all day in the town.",
         "the cast is charming and the music superb.", "i found the ending weak."]


def _export_pruned_minilm(tmp_path, model_class):
    from transformers import AutoTokenizer

    from helpers import minilm_dir
    from sparse_transfer.upstream.oneshot import prune_model

    torch.manual_seed(0)
    model = model_class.from_pretrained(minilm_dir(), **({"num_labels": 3} if "Sequence" in model_class.__name__ else {}))
    prune_model(model, 0.9)
    model_dir, out = tmp_path / "fp32", tmp_path / "int8"
    model.save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(model_dir)
    export_for_inference(str(model_dir), str(out), batch_sizes=(1,), seq_length=32, force_kernel="sparse_int8",
                         quantize="int8")
    return model_dir, out, AutoTokenizer.from_pretrained(out)


@needs_native
@pytest.mark.slow
def test_text_classification_pipeline_gives_the_fp32_models_labels(tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    model_dir, out, tokenizer = _export_pruned_minilm(tmp_path, AutoModelForSequenceClassification)
    fp32 = pipeline("text-classification", model=AutoModelForSequenceClassification.from_pretrained(model_dir),
                    tokenizer=tokenizer, device="cpu")
    int8 = pipeline("text-classification", model=load_for_inference(str(out)), tokenizer=tokenizer, device="cpu")
    assert [r["label"] for r in int8(TEXTS)] == [r["label"] for r in fp32(TEXTS)]


@needs_native
@pytest.mark.slow
def test_feature_extraction_pipeline_gives_the_fp32_models_embeddings(tmp_path):
    from transformers import AutoModel, pipeline

    model_dir, out, tokenizer = _export_pruned_minilm(tmp_path, AutoModel)
    fp32 = pipeline("feature-extraction", model=AutoModel.from_pretrained(model_dir), tokenizer=tokenizer,
                    device="cpu")
    int8 = pipeline("feature-extraction", model=load_for_inference(str(out)), tokenizer=tokenizer, device="cpu")
    for text in TEXTS:
        expected, actual = torch.tensor(fp32(text))[0], torch.tensor(int8(text))[0]
        assert actual.shape == expected.shape and expected.shape[-1] == 384  # one vector per token
        assert torch.nn.functional.cosine_similarity(actual.mean(0), expected.mean(0), dim=0) > 0.99


@needs_native
@pytest.mark.slow
def test_a_sentence_transformers_model_runs_on_the_int8_export(tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from transformers import AutoModel

    from helpers import minilm_dir

    model_dir, out, _ = _export_pruned_minilm(tmp_path, AutoModel)
    fp32 = sentence_transformers.SentenceTransformer(minilm_dir(), device="cpu")
    fp32[0].auto_model = AutoModel.from_pretrained(model_dir).eval()  # the pruned encoder, FP32
    int8 = sentence_transformers.SentenceTransformer(minilm_dir(), device="cpu")
    int8[0].auto_model = load_for_inference(str(out))  # its INT8 export: the encoder swapped, pooling kept
    expected, actual = fp32.encode(TEXTS, convert_to_tensor=True), int8.encode(TEXTS, convert_to_tensor=True)
    assert actual.shape == expected.shape == (len(TEXTS), 384)
    assert torch.nn.functional.cosine_similarity(actual, expected).min() > 0.99


ON_X86 = pytest.mark.skipif(platform.machine() != "x86_64", reason="the flags that switch VNNI / AVX-512 off are x86's")
# what the AVX2 path needs (vector_math.h: AVX2 and FMA), as whole words of the CPU's flags
HAS_AVX2 = platform.machine() == "x86_64" and {"avx2", "fma"} <= cpu_flags()


@needs_native
@ON_X86
@pytest.mark.parametrize("disabled", [["-mno-avx512vnni"], ["-mno-avx512f"], ["-mno-avx2"]])  # AVX2 on AVX2 CPUs;
def test_the_other_paths_give_the_same_integers(tmp_path, disabled):  # -mno-avx2: the portable loop
    other = build_native_library(tmp_path, disabled)
    assert other.int8_path == ("portable" if disabled == ["-mno-avx2"] else "avx2" if HAS_AVX2 else "portable")
    weight, bias, x = _weight(in_features=70), torch.randn(40), torch.randn(130, 70) * 2
    packed = Int8BlockWeight.of(weight, pair_limit=max(other.pair_limit, NATIVE.pair_limit))  # valid for both
    for threads in (1, 2):
        with torch_threads(threads):
            sums, reference_sums = (torch.empty(130, 40, dtype=torch.int32) for _ in range(2))
            y, reference = other.sparse_int8(packed, bias, x, sums), NATIVE.sparse_int8(packed, bias, x, reference_sums)
        assert torch.equal(sums, reference_sums)
        torch.testing.assert_close(y, reference, rtol=1e-6, atol=1e-5)  # fused vs separate multiply-add
        gelu = other.sparse_int8(packed, bias, x, gelu=True)  # libm's erff or a vector erf
        torch.testing.assert_close(gelu, nn.functional.gelu(y), rtol=0, atol=1e-6 * float(y.abs().max()))
    assert all(torch.equal(a, b) for a, b in zip(other.quantize_rows(x), NATIVE.quantize_rows(x)))


@needs_native
@ON_X86
@pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2")
def test_the_avx2_path_is_exact_where_int16_pair_sums_would_saturate(tmp_path):
    avx2 = build_native_library(tmp_path, ["-mno-avx512f"])
    assert avx2.int8_path == "avx2" and avx2.pair_limit == 128
    weight = torch.full((10, 64), 1.0)
    weight[1:8:2] *= -1  # rows of +127 and of -127: a pair can sum to 255 * 254 without the split
    weight[:8, 1::8] = 0.5  # and pairs of 127 and 64: up to 48,705, still above int16
    weight[8:, 1::2] = -1.0  # rows of +127, -127 pairs: at most 255 * 127 in magnitude, never split
    x = torch.zeros(24, 64)
    x[:, 0::2] = 1.0  # quantized to 255
    x[:, 1::2] = -torch.rand(24, 32)  # and values below the zero point
    x[:4, 1::2] = 1.0  # tokens with every feature at 255
    packed = Int8BlockWeight.of(weight, pair_limit=128)
    assert packed.columns.numel() == 2 * 8 * 16 + 2 * 16  # the same-sign rows' blocks split in two, the others not
    w_q, _ = quantize_weight(weight)
    x_q, _, _ = avx2.quantize_rows(x)
    sums = torch.empty(24, 10, dtype=torch.int32)
    avx2.sparse_int8(packed, None, x, sums)
    assert torch.equal(sums, x_q.int() @ w_q.int().T) and int(x_q.max()) == 255
    with pytest.raises(ValueError, match=r"pair_limit=128"):  # a weight made for VNNI: refused, not saturated
        avx2.sparse_int8(Int8BlockWeight.of(weight, pair_limit=0), None, x)


@needs_native
@pytest.mark.parametrize("tokens", [20, 130])  # one tile (rows split between 2 threads), several tiles
@pytest.mark.parametrize("out_features", [40, 48])  # with and without a tail past 16-float vectors
def test_the_kernel_adds_the_residual_and_normalizes_as_layer_norm_does(tokens, out_features):
    weight, bias = _weight(out_features=out_features, in_features=64), torch.randn(out_features)
    x, residual = torch.randn(tokens, 64), torch.randn(tokens, 2 * out_features)[:, :out_features]  # strided rows
    norm = nn.LayerNorm(out_features, eps=1e-12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    packed = Int8BlockWeight.of(weight)
    results = []
    for threads in (1, 2):
        with torch_threads(threads):
            plain = NATIVE.sparse_int8(packed, bias, x)
            results.append(NATIVE.sparse_int8(packed, bias, x, residual=residual, norm=norm))
        with torch.no_grad():
            torch.testing.assert_close(results[-1], norm(plain + residual), rtol=1e-5, atol=1e-5)
    assert torch.equal(results[0], results[1])


@needs_native
def test_an_int8_export_normalizes_bert_s_output_blocks_in_the_kernel(int8_export):
    source, out = int8_export
    exported = load_for_inference(str(out))
    blocks = [block for layer in exported.bert.encoder.layer for block in (layer.attention.output, layer.output)]
    assert all("forward" in vars(block) for block in blocks)  # the fused forward, on each of the 4 blocks
    calls = []
    for block in blocks:
        own = block.dense.residual_norm
        block.dense.residual_norm = lambda *args, own=own: calls.append(args[0].shape) or own(*args)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fused = exported(input_ids=ids).logits
        assert len(calls) == 4
        for block in blocks:
            del block.forward  # the class's own forward: kernel, then add and LayerNorm in torch
        torch.testing.assert_close(fused, exported(input_ids=ids).logits, rtol=0, atol=1e-5)


@needs_native
@pytest.mark.parametrize("tokens", [20, 130])
def test_a_quantized_output_is_what_the_next_int8_layer_would_quantize_and_reads_the_same(tokens):
    first, second = Int8BlockWeight.of(_weight(96, 64)), Int8BlockWeight.of(_weight(40, 96, seed=1))
    bias, second_bias, x = torch.randn(96), torch.randn(40), torch.randn(tokens, 64) * 2
    for threads in (1, 2):
        with torch_threads(threads):
            hidden = NATIVE.sparse_int8(first, bias, x, gelu=True)
            quantized = NATIVE.sparse_int8(first, bias, x, gelu=True, quantize_output=True)
            values, scales, zeros = NATIVE.quantize_rows(hidden)
            assert torch.equal(quantized.values, values) and torch.equal(quantized.scales, scales)
            assert torch.equal(quantized.zeros, zeros) and quantized.shape == hidden.shape
            assert torch.equal(NATIVE.sparse_int8(second, second_bias, quantized),
                               NATIVE.sparse_int8(second, second_bias, hidden))
    assert (quantized.dequantize() - hidden).abs().max() <= scales.max() / 2 + 1e-6


@needs_native
def test_an_int8_export_passes_the_ffn_activation_quantized_with_the_same_outputs(int8_export):
    source, out = int8_export
    plain = tiny_sparse_bert(sparsity=0.9, hidden_size=64)  # the source checkpoint again
    exported = load_for_inference(str(out))
    layers = exported.bert.encoder.layer
    assert all(layer.intermediate.dense.quantized_consumer == (layer.output.dense,) for layer in layers)
    assert list(exported.state_dict()) == list(plain.state_dict())  # the consumer is no submodule
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        from sparse_transfer.inference.native import QuantizedActivation

        assert isinstance(layers[0].intermediate(torch.randn(2, 16, 64)), QuantizedActivation)
        quantized = exported(input_ids=ids).logits
        for layer in layers:
            layer.intermediate.dense.quantized_consumer = ()
        assert torch.equal(quantized, exported(input_ids=ids).logits)


@needs_native
def test_an_export_loaded_without_fusions_runs_each_step_on_its_own(int8_export):
    source, out = int8_export
    fused, plain = load_for_inference(str(out)), load_for_inference(str(out), fuse=False)
    layer = plain.bert.encoder.layer[0]
    assert layer.attention.self.query.shared is None and layer.intermediate.dense.quantized_consumer == ()
    assert "forward" not in vars(layer.output) and "forward" in vars(fused.bert.encoder.layer[0].output)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fused(input_ids=ids).logits, plain(input_ids=ids).logits, rtol=0, atol=1e-5)
