"""Export a sparse checkpoint for fast CPU inference: each sparse-enough Linear runs the kernel
that calibration on this machine measured fastest for the expected input sizes (dense elsewhere);
with `--quantize int8` the INT8 kernels are candidates too (for every layer).

    sparse-transfer export --model DIR --output DIR [--quantize int8] [--attention auto|sdpa|bf16]
        [--batch_sizes 1,32] [--seq_length 128] [--threads N] [--min_sparsity 0.5] [--repeats 5] [--force_kernel NAME]

The output directory is a normal Hugging Face checkpoint (plain `from_pretrained` loads it, with
dense matmuls) plus `sparse_inference.json`, the per-layer plan (and the attention kernel per input
size: with `--quantize int8` the toolkit's bf16 attention is a candidate beside SDPA), and
`sparse_inference.md`, the same as a table. `load_for_inference(DIR)` loads it with the plan applied,
without recalibrating.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import GELUActivation

from sparse_transfer.encoders import copy_tokenizer, load_pretrained
from sparse_transfer.inference.attention import (
    ATTENTION_CHOICES,
    BF16,
    apply_attention_plan,
    plan_attention,
)
from sparse_transfer.inference.calibration import QUANTIZE, plan_layers, torch_threads
from sparse_transfer.inference.fusion import fuse_around_kernels
from sparse_transfer.inference.kernels import DENSE, KERNEL_NAMES, KERNELS, SparseLinear
from sparse_transfer.inference.native import keep_freed_memory, load_native
from sparse_transfer.utils.errors import ConfigurationError, exit_status
from sparse_transfer.utils.io import (
    markdown_table,
    write_json_atomic,
    write_text_atomic,
)

PROG = "sparse-transfer export"
PLAN_FILE = "sparse_inference.json"
TABLE_FILE = "sparse_inference.md"
FORMAT = "sparse_transfer.sparse_inference/1"
# INT8 / bf16 attention: the least cosine of any token's last hidden state to the FP32 model's on the check's inputs
MIN_APPROXIMATE_COSINE = 0.95


def export_for_inference(model: str, output: str, batch_sizes: tuple[int, ...] = (1, 32), seq_length: int = 128,
                         threads: int | None = None, min_sparsity: float = 0.5, repeats: int = 5,
                         force_kernel: str | None = None, quantize: str | None = None, attention: str = "auto") -> dict:
    """Calibrate, verify and save; returns the report written to `output`/sparse_inference.json.
    `quantize="int8"` adds the INT8 kernels (dynamic per-token activations, per-channel weights) to
    every layer's candidates and the bf16 attention kernel to attention's (`attention`: auto, or
    sdpa / bf16 for every input size); the verification then measures how far the outputs move."""
    if quantize not in QUANTIZE:
        raise ConfigurationError(f"unknown quantize value {quantize!r}; use int8 (or leave it unset for FP32)")
    if not batch_sizes or min(batch_sizes) < 1 or seq_length < 1:
        raise ConfigurationError(
            f"batch sizes and sequence length must be positive, got {batch_sizes} and {seq_length}")
    if not 0.0 < min_sparsity < 1.0:
        raise ConfigurationError(f"min_sparsity must be in (0, 1), got {min_sparsity}")
    if os.path.isdir(output) and os.listdir(output):
        raise ConfigurationError(f"output {output} is not empty; choose a new directory")
    loaded = _load_model(model)
    keep_freed_memory()  # calibrate as load_for_inference runs
    token_counts = sorted({batch * seq_length for batch in batch_sizes})  # JSON keys below are str(tokens)
    threads = threads or torch.get_num_threads()
    attention_plan = plan_attention(loaded, token_counts, seq_length, repeats, threads, attention, quantize)
    layers = plan_layers(loaded, token_counts, min_sparsity, repeats, threads, force_kernel, quantize)
    loaded.save_pretrained(output)  # before swapping: the plain dense-format checkpoint
    copy_tokenizer(model, output)
    report = {
        "format": FORMAT,
        "source": model,
        "calibration": {
            "batch_sizes": list(batch_sizes), "seq_length": seq_length, "token_counts": token_counts,
            "threads": threads, "repeats": repeats, "min_sparsity": min_sparsity, "force_kernel": force_kernel,
            "quantize": quantize, "attention": attention, **machine_description(),
        },
        "summary": _summary(layers, token_counts),
        "layers": layers,
        "attention": attention_plan,
    }
    apply_plan(loaded, report)
    approximate = quantize is not None or BF16 in attention_plan["kernels"].values()
    with torch_threads(threads):
        report["verification"] = _verify(model, loaded, batch_sizes, seq_length, approximate=approximate)
    write_json_atomic(os.path.join(output, PLAN_FILE), report)
    write_text_atomic(os.path.join(output, TABLE_FILE), markdown_report(report))
    return report


def load_for_inference(directory: str, keep_memory: bool = True, fuse: bool = True, **kwargs) -> nn.Module:
    """The exported model in eval mode, without gradients, its chosen layers on sparse kernels;
    `kwargs` go to `from_pretrained`. `keep_memory` keeps freed memory in the process for the next
    forward (`native.keep_freed_memory`: no page faults on every large activation; the process keeps
    its peak memory). `fuse=False` leaves out the steps fused around the INT8 kernel (shared QKV input,
    residual LayerNorm, quantized FFN hand-off): the same model, each step on its own, to compare."""
    if keep_memory:
        keep_freed_memory()
    plan_path = os.path.join(directory, PLAN_FILE)
    if not os.path.isfile(plan_path):
        raise ConfigurationError(f"{directory} has no {PLAN_FILE}: not an export; make one with {PROG}")
    with open(plan_path) as f:
        report = json.load(f)
    model = _load_model(directory, **kwargs)
    _warn_if_other_instructions(report)
    apply_plan(model, report, fuse=fuse)
    return model.eval().requires_grad_(False)


def _warn_if_other_instructions(report: dict) -> None:
    """The kernels give the same integer sums on any CPU, but a plan timed on one kind of INT8 path
    (AVX-512 VNNI, AVX2, portable) may not be the fastest on another."""
    calibration = report["calibration"]
    planned = calibration.get("int8_kernel_path") or ("avx512-vnni" if calibration.get("int8_dot_product") else None)
    kernels = {kernel for layer in report["layers"] for kernel in layer["kernels"].values()}
    library = load_native()
    here = library.int8_path if not isinstance(library, str) else None
    if "sparse_int8" in kernels and planned and here and planned != here:
        warnings.warn(f"this plan was calibrated where sparse_int8 ran on {planned}; here it runs on {here} (the "
                      "same results, another speed): export again here for a plan timed on this CPU", stacklevel=3)


def apply_plan(model: nn.Module, report: dict, fuse: bool = True) -> None:
    """Swap the planned layers for SparseLinear and switch attention to its planned kernels, in place;
    with `fuse`, the INT8 kernel also takes over the steps around it where it can (see `load_for_inference`)."""
    apply_attention_plan(model, report.get("attention"))  # plans without it (older exports) keep SDPA
    for layer in report["layers"]:
        kernels = {int(tokens): kernel for tokens, kernel in layer["kernels"].items()}
        if all(kernel == DENSE for kernel in kernels.values()):
            continue
        try:
            linear = model.get_submodule(layer["name"])
        except AttributeError:
            linear = None
        if not isinstance(linear, nn.Linear) or list(linear.weight.shape) != layer["shape"]:
            raise ConfigurationError(f"the plan's layer {layer['name']} {layer['shape']} is not a Linear of that "
                                     "shape in this model; export it again")
        kernels = {tokens: _runnable(kernel, layer, tokens) for tokens, kernel in kernels.items()}
        parent_name, _, child_name = layer["name"].rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        gelu = _gelu_follows(parent, child_name)
        if gelu:  # the layer computes the activation (in its INT8 kernel): the parent's own call does nothing
            parent.intermediate_act_fn = nn.Identity()
        setattr(parent, child_name, SparseLinear(linear, kernels, gelu=gelu))
    if fuse:
        fuse_around_kernels(model)


def _gelu_follows(parent: nn.Module, child_name: str) -> bool:
    """Whether `parent` is a BERT-style FFN input (`dense` then `intermediate_act_fn`, exact erf GELU:
    BERT, RoBERTa, ELECTRA, MiniLM), whose activation the layer can compute itself."""
    activation = getattr(parent, "intermediate_act_fn", None)
    return (child_name == "dense" and isinstance(activation, GELUActivation)
            and getattr(activation, "act", None) is F.gelu)


def _runnable(kernel: str, layer: dict, tokens: int) -> str:
    """`kernel`, or where this machine cannot run it the fastest measured kernel it can run."""
    if kernel == DENSE:
        return kernel
    reason = KERNELS[kernel].unavailable_reason() if kernel in KERNELS else f"unknown kernel {kernel!r}"
    if reason is None:
        return kernel
    times = layer.get("times_ms", {}).get(str(tokens), {})
    runnable = [name for name in times
                if name == DENSE or (name in KERNELS and KERNELS[name].unavailable_reason() is None)]
    # One message per kernel (the warning filter shows it once), not one per layer.
    warnings.warn(f"kernel {kernel} is unavailable here ({reason}): its layers use the fastest kernel measured "
                  "at export that this machine has", stacklevel=3)
    return min(runnable, key=times.get, default=DENSE)


def _load_model(name_or_path: str, **kwargs) -> nn.Module:
    if not os.path.isdir(name_or_path) and (os.sep in name_or_path or name_or_path.startswith(".")):
        raise ConfigurationError(f"model directory {name_or_path} not found")
    try:
        return load_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigurationError(f"cannot load model {name_or_path}: {first_line}") from error


def machine_description() -> dict:
    """What the timings depend on; the load average shows whether the machine was busy."""
    library = load_native()
    return {
        "torch": torch.__version__,
        "cpu": _cpu_model(),
        "cpu_family_model": _cpu_field("cpu family") + "/" + _cpu_field("model"),  # one name, several generations
        "int8_dot_product": library.has_vnni if not isinstance(library, str) else None,  # AVX-512 VNNI
        "int8_kernel_path": library.int8_path if not isinstance(library, str) else None,  # avx512-vnni, avx2, portable
        "amx_int8": "amx_int8" in _cpu_field("flags").split(),  # dense runtimes (oneDNN, OpenVINO) use AMX
        "attention_kernel_path": library.attention_path if not isinstance(library, str) else None,  # amx-bf16, ...
        "cpu_count": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    return _cpu_field("model name") or platform.processor()


def _cpu_field(key: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":", 1)[0].strip() == key), "")
    except OSError:
        return ""


def _summary(layers: list[dict], token_counts: list[int]) -> dict:
    """Per token count: layers per kernel, and the Linear layers' total calibrated times."""
    summary = {}
    for tokens in map(str, token_counts):
        counts: dict[str, int] = {}
        dense_ms = chosen_ms = 0.0
        for layer in layers:
            kernel = layer["kernels"][tokens]
            counts[kernel] = counts.get(kernel, 0) + 1
            times = layer.get("times_ms", {}).get(tokens)
            if times:
                dense_ms += times[DENSE]
                chosen_ms += times[kernel]
        entry = {"layers_per_kernel": counts}
        if chosen_ms:
            entry.update(calibrated_dense_ms=round(dense_ms, 3), calibrated_chosen_ms=round(chosen_ms, 3),
                         calibrated_speedup=round(dense_ms / chosen_ms, 3))
        summary[tokens] = entry
    return summary


@torch.no_grad()
def _verify(model_path: str, exported: nn.Module, batch_sizes, seq_length: int, approximate: bool = False) -> dict:
    """Outputs of the exported model against the same checkpoint on dense FP32 kernels, on random
    token ids at each batch size. FP32 kernels must match to float rounding (a mismatch is a bug);
    INT8 ones (and bf16 attention) move the outputs: the check records how far (relative error of the outputs, cosine of
    every token's last hidden state, same argmax) and refuses an export whose hidden states no longer
    follow the model's (a classifier's few logits are too few to compare by angle)."""
    dense = load_pretrained(model_path).eval()
    config = dense.config
    length = min(seq_length, getattr(config, "max_position_embeddings", seq_length))
    generator = torch.Generator().manual_seed(0)
    max_abs_diff, relative, cosine, same_argmax, rows = 0.0, 0.0, 1.0, 0, 0
    for batch in batch_sizes:
        input_ids = torch.randint(0, config.vocab_size, (batch, length), generator=generator)
        expected_out = dense(input_ids=input_ids, output_hidden_states=approximate)
        actual_out = exported(input_ids=input_ids, output_hidden_states=approximate)
        expected, actual = expected_out[0], actual_out[0]
        max_abs_diff = max(max_abs_diff, (actual - expected).abs().max().item())
        if not approximate:
            if not torch.allclose(actual, expected, rtol=1e-3, atol=1e-3):
                raise RuntimeError(f"exported outputs differ from dense by {(actual - expected).abs().max():.3g} "
                                   f"at batch {batch}; please report this")
            continue
        relative = max(relative, ((actual - expected).norm() / expected.norm()).item())
        states = [getattr(out, "hidden_states", None) for out in (actual_out, expected_out)]
        pair = [s[-1] for s in states] if all(states) else [actual, expected]  # no hidden states: the outputs
        hidden = F.cosine_similarity(*pair, dim=-1)
        cosine = min(cosine, hidden.min().item())
        flat_actual, flat_expected = actual.reshape(-1, actual.shape[-1]), expected.reshape(-1, expected.shape[-1])
        same_argmax += int((flat_actual.argmax(-1) == flat_expected.argmax(-1)).sum())
        rows += flat_actual.shape[0]
    result = {"batch_sizes": list(batch_sizes), "seq_length": length, "max_abs_diff": max_abs_diff}
    if approximate:
        result.update(max_relative_error=round(relative, 5), min_cosine=round(cosine, 5),
                      same_argmax=round(same_argmax / rows, 5))
        if cosine < MIN_APPROXIMATE_COSINE:
            raise ConfigurationError(f"reduced-precision hidden states drift from the FP32 model's (cosine {cosine:.3f}"
                                     f" < {MIN_APPROXIMATE_COSINE}); export without --quantize (and with --attention "
                                     "sdpa) for this model")
    return result


def markdown_report(report: dict) -> str:
    calibration = report["calibration"]
    lines = [f"# Sparse inference plan: {report['source']}", "",
             f"Calibrated with {calibration['threads']} thread(s) on {calibration['cpu'] or 'an unknown CPU'} "
             f"(load average {calibration['load_average']}), torch {calibration['torch']}, "
             f"{calibration['repeats']} repeats; tokens = batch x {calibration['seq_length']}.",
             f"Outputs vs dense FP32 kernels: max abs difference {report['verification']['max_abs_diff']:.3g}"
             + (f", relative error {report['verification']['max_relative_error']}, cosine >= "
                f"{report['verification']['min_cosine']}, same argmax {report['verification']['same_argmax']:.1%} "
                "(reduced precision)." if "min_cosine" in report["verification"] else "."),
             attention_line(report.get("attention")), ""]
    summary_rows = [[tokens, ", ".join(f"{k} x{n}" for k, n in entry["layers_per_kernel"].items()),
                     entry.get("calibrated_dense_ms", "-"), entry.get("calibrated_chosen_ms", "-"),
                     entry.get("calibrated_speedup", "-")]
                    for tokens, entry in report["summary"].items()]
    lines.append(markdown_table(["tokens", "layers per kernel", "Linear dense ms", "Linear chosen ms", "speed-up"],
                                summary_rows))
    rows = []
    for layer in report["layers"]:
        for tokens, kernel in layer["kernels"].items():
            times = layer.get("times_ms", {}).get(tokens)
            dense_ms, kernel_ms = (times[DENSE], times[kernel]) if times else ("-", "-")
            rows.append([layer["name"], "x".join(map(str, layer["shape"])), f"{layer['sparsity']:.3f}", tokens, kernel,
                         dense_ms, kernel_ms, f"{dense_ms / kernel_ms:.2f}" if times else "-", layer["reason"]])
    lines.append(markdown_table(["layer", "shape", "sparsity", "tokens", "kernel", "dense ms", "kernel ms",
                                 "speed-up", "why"], rows))
    return "\n".join(lines)


def attention_line(plan: dict | None) -> str:
    if not plan:
        return "Attention: SDPA (the plan predates attention kernels)."
    times = plan.get("times_ms", {})
    per_size = ", ".join(f"{tokens} tokens {kernel}" + (
        f" ({times[tokens]['sdpa']:.2f} ms SDPA, {times[tokens]['bf16']:.2f} ms bf16)" if tokens in times else "")
        for tokens, kernel in plan["kernels"].items())
    path = f" (bf16 on {plan['bf16_path']})" if "bf16_path" in plan else ""
    return f"Attention: {per_size}; {plan['reason']}{path}."


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,32, got {text!r}") from None
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="directory of a sparse checkpoint (zeros in its Linear weights)")
    parser.add_argument("--output", required=True, help="new directory for the exported checkpoint")
    parser.add_argument("--batch_sizes", type=_positive_ints, default=(1, 32), help="expected batch sizes (1,32)")
    parser.add_argument("--seq_length", type=int, default=128, help="expected sequence length (128)")
    parser.add_argument("--threads", type=int, default=None, help="threads to calibrate for (torch's default)")
    parser.add_argument("--min_sparsity", type=float, default=0.5, help="Linear weights with fewer zeros stay dense")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per kernel and input size")
    parser.add_argument("--force_kernel", choices=KERNEL_NAMES, default=None,
                        help="skip calibration: this kernel for every layer above min_sparsity")
    parser.add_argument("--quantize", default=None, help="int8: INT8 kernels (per-channel weights, per-token "
                        "dynamic activations) join the candidates; the export records how far outputs move")
    parser.add_argument("--attention", choices=ATTENTION_CHOICES, default="auto",
                        help="auto: with --quantize, the bf16 attention kernel where calibration measures it faster "
                        "than SDPA; sdpa: FP32 attention; bf16: the bf16 kernel for every input size")
    args = parser.parse_args(argv)

    def run() -> None:
        report = export_for_inference(args.model, args.output, args.batch_sizes, args.seq_length, args.threads,
                                      args.min_sparsity, args.repeats, args.force_kernel, args.quantize, args.attention)
        for tokens, entry in report["summary"].items():
            kernels = ", ".join(f"{kernel} x{count}" for kernel, count in entry["layers_per_kernel"].items())
            speedup = f", Linear layers {entry['calibrated_speedup']}x" if "calibrated_speedup" in entry else ""
            print(f"{tokens} tokens: {kernels}{speedup}")
        print(attention_line(report["attention"]))
        check = report["verification"]
        if "min_cosine" in check:
            print(f"Against FP32 outputs: relative error {check['max_relative_error']}, cosine >= "
                  f"{check['min_cosine']}, same argmax {check['same_argmax']:.1%}")
        print(f"-> {args.output} (load with sparse_transfer.load_for_inference)")

    return exit_status(PROG, run)

