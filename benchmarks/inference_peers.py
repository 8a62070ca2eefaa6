"""Sparse INT8 inference against what users would pick instead, same process, same inputs.

A BERT-base-shaped classifier (12 x 768, random init, seed 0; or MiniLM-L6's shape, 6 x 384) as a user has
it dense, run by torch FP32, torch dynamic INT8 (`quantize_dynamic`, the API users find first), torchao INT8
(`Int8DynamicActivationInt8WeightConfig`, eager), ONNX Runtime FP32 and INT8 (`quantize_dynamic`), OpenVINO
with its default precision hint and OpenVINO INT8 (`nncf.quantize`, calibrated on the benchmark's own random
batches); and the same model pruned one-shot to the target sparsity (unstructured, and in 1x4 blocks), as
OpenVINO INT8 with its sparse weights decompression (which packs the zeros out of INT8 weights on CPUs with
AMX) and exported by the toolkit: FP32 (`sparse-transfer export`) and INT8 (`--quantize int8`). Sequence
length 128, batch 1 and 32; every engine on the same token ids, medians of interleaved repeats after a
warm-up, one process per thread count (`run` starts them).

    python benchmarks/inference_peers.py run [--threads 1 2] [--sparsity 0.9] [--shape bert-base|minilm] [--repeats 5]
    python benchmarks/inference_peers.py report

Records: benchmarks/results/inference/peers/<kernel path>/<shape>-<sparsity>_threads<N>.json (one per
process, the kernel path being the INT8 kernel's instructions here: avx512-vnni, avx2 or portable;
`run` skips recorded ones unless --force); tables: benchmarks/results/inference/peers.md.
Needs the bench extra: pip install -e '.[bench]' (onnx, onnxscript, onnxruntime, openvino, nncf, torchao).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from common import (
    INFERENCE_WORK,
    ROOT,
    dense_model,
    export_dir,
    export_onnx,
    export_onnx_and_int8,
    kernel_path,
    measure_in_own_process,
    ort_session,
    torch_dynamic_int8,
)

RECORDS = ROOT / "benchmarks" / "results" / "inference" / "peers"
TABLES = ROOT / "benchmarks" / "results" / "inference" / "peers.md"
SEQ_LENGTH, BATCH_SIZES = 128, (1, 32)
PEERS = ["torch_fp32", "torch_int8", "torchao_int8", "ort_fp32", "ort_int8", "openvino_default", "openvino_int8",
         "openvino_int8_sparse"]
OURS = ["sparse_fp32", "sparse_int8", "sparse_int8_1x4"]
ON_SPARSE_MODEL = ["openvino_int8_sparse", *OURS]  # the other engines run the dense model
SPARSE_WEIGHTS_DECOMPRESSION_RATE = 0.8  # OpenVINO packs an INT8 weight with at least this share of zeros
SHAPES = {"bert-base": {}, "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536}}
TOO_SLOW = 5.0  # an engine slower than this many times torch FP32 at batch 1 is not timed at larger batches


def build_models(work: Path, sparsity: float, shape: str) -> dict[str, Path]:
    """The dense model, its one-shot sparse versions and the ONNX / OpenVINO files, built once."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from sparse_transfer.upstream.oneshot import prune_model

    paths = {"dense": work / "dense", "sparse": work / f"sparse{sparsity}", "sparse_1x4": work / f"sparse{sparsity}-1x4"}
    for name, path in paths.items():
        if (path / "config.json").exists():
            continue
        torch.manual_seed(0)
        model = BertForSequenceClassification(BertConfig(num_labels=2, **SHAPES[shape])).eval()
        if name != "dense":
            prune_model(model, sparsity, block="1x4" if name == "sparse_1x4" else None)
        model.save_pretrained(path)
        AutoTokenizer.from_pretrained(dense_model()).save_pretrained(path)  # bert-base-uncased's vocabulary
    onnx_fp32, onnx_int8, onnx_sparse = work / "dense.onnx", work / "dense-int8.onnx", work / f"sparse{sparsity}.onnx"
    export_onnx_and_int8(BertForSequenceClassification.from_pretrained(paths["dense"]).eval(), onnx_fp32, onnx_int8,
                         ["input_ids", "attention_mask"])
    if not onnx_sparse.exists():
        export_onnx(BertForSequenceClassification.from_pretrained(paths["sparse"]).eval(), onnx_sparse,
                    ["input_ids", "attention_mask"])
    return {**paths, "onnx_fp32": onnx_fp32, "onnx_int8": onnx_int8, "onnx_sparse": onnx_sparse}


def inputs_for(batch: int):
    import torch

    input_ids = torch.randint(1000, 30000, (batch, SEQ_LENGTH), generator=torch.Generator().manual_seed(batch))
    return input_ids, torch.ones_like(input_ids)


def engines(paths: dict[str, Path], threads: int, work: Path, calibration_repeats: int) -> dict:
    """name -> (callable(batch) -> logits as numpy, what it is)."""
    import nncf
    import openvino as ov
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    from transformers import BertForSequenceClassification

    from sparse_transfer.inference.export import export_for_inference, load_for_inference

    batches = {batch: inputs_for(batch) for batch in BATCH_SIZES}
    feeds = {batch: {"input_ids": ids.numpy(), "attention_mask": mask.numpy()} for batch, (ids, mask) in batches.items()}
    dense = BertForSequenceClassification.from_pretrained(paths["dense"]).eval()
    torch_int8 = torch_dynamic_int8(BertForSequenceClassification.from_pretrained(paths["dense"]).eval())
    torchao_int8 = BertForSequenceClassification.from_pretrained(paths["dense"]).eval()
    quantize_(torchao_int8, Int8DynamicActivationInt8WeightConfig())

    def torch_run(model):
        return lambda batch: model(*batches[batch]).logits.numpy()

    sessions = {name: ort_session(paths[name], threads) for name in ("onnx_fp32", "onnx_int8")}
    core = ov.Core()
    ov_model = core.read_model(str(paths["onnx_fp32"]))
    calibration = nncf.Dataset([feeds[batch] for batch in BATCH_SIZES])
    ov_int8_model, ov_int8_sparse_model = (
        nncf.quantize(model, calibration, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(BATCH_SIZES))
        for model in (ov_model, core.read_model(str(paths["onnx_sparse"]))))
    config = {"INFERENCE_NUM_THREADS": threads}
    compiled = {"openvino_default": core.compile_model(ov_model, "CPU", config),
                "openvino_int8": core.compile_model(ov_int8_model, "CPU", config),
                "openvino_int8_sparse": core.compile_model(ov_int8_sparse_model, "CPU", {
                    **config, "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": SPARSE_WEIGHTS_DECOMPRESSION_RATE})}
    precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()

    exports = {}
    for name, source, quantize in (("sparse_fp32", "sparse", None), ("sparse_int8", "sparse", "int8"),
                                   ("sparse_int8_1x4", "sparse_1x4", "int8")):
        out = export_dir(work, name, paths[source].name, threads)  # per model, sparsity and threads
        if not (out / "sparse_inference.json").exists():
            print(f"[threads {threads}] exporting {name}", flush=True)
            export_for_inference(str(paths[source]), str(out), BATCH_SIZES, SEQ_LENGTH, threads,
                                 repeats=calibration_repeats, quantize=quantize)
        exports[name] = (load_for_inference(str(out)), json.loads((out / "sparse_inference.json").read_text()))

    runs = {
        "torch_fp32": (torch_run(dense), "torch FP32, dense"),
        "torch_int8": (torch_run(torch_int8), "torch dynamic INT8 (quantize_dynamic), dense"),
        "torchao_int8": (torch_run(torchao_int8), "torchao INT8 (Int8DynamicActivationInt8WeightConfig, eager), dense"),
        "ort_fp32": (lambda b: sessions["onnx_fp32"].run(None, feeds[b])[0], "ONNX Runtime FP32, dense"),
        "ort_int8": (lambda b: sessions["onnx_int8"].run(None, feeds[b])[0],
                     "ONNX Runtime INT8 (quantize_dynamic), dense"),
        "openvino_default": (lambda b: compiled["openvino_default"](feeds[b])[0],
                             f"OpenVINO, default precision hint ({precision}), dense"),
        "openvino_int8": (lambda b: compiled["openvino_int8"](feeds[b])[0], "OpenVINO INT8 (nncf.quantize), dense"),
        "openvino_int8_sparse": (lambda b: compiled["openvino_int8_sparse"](feeds[b])[0],
                                 "OpenVINO INT8 of the unstructured sparse model (nncf.quantize, sparse weights "
                                 f"decompression, rate {SPARSE_WEIGHTS_DECOMPRESSION_RATE})"),
    }
    for name, (model, report) in exports.items():
        label = {"sparse_fp32": "sparse-transfer export FP32", "sparse_int8": "sparse-transfer export INT8",
                 "sparse_int8_1x4": "sparse-transfer export INT8, 1x4 blocks"}[name]
        runs[name] = (torch_run(model), label)
    return runs, {name: report for name, (_, report) in exports.items()}


def measure(threads: int, sparsity: float, shape: str, repeats: int, calibration_repeats: int, work: Path,
            out: Path) -> None:
    """One process, one thread count: every engine on the same inputs, interleaved."""
    import numpy as np
    import torch

    from sparse_transfer.inference.calibration import interleaved_medians
    from sparse_transfer.inference.export import machine_description
    from sparse_transfer.inference.native import keep_freed_memory

    torch.set_num_threads(threads)
    keep_freed_memory()  # the same allocator behaviour for every torch engine in this process
    before = machine_description()
    work = work / shape if shape != "bert-base" else work  # the BERT-base files stay where earlier runs made them
    paths = build_models(work, sparsity, shape)
    runs, exports = engines(paths, threads, work, calibration_repeats)
    record = {"threads": threads, "sparsity": sparsity, "shape": shape, "seq_length": SEQ_LENGTH, "repeats": repeats,
              "machine_before": before, "engines": {name: label for name, (_, label) in runs.items()},
              "versions": versions(), "batches": {}}
    with torch.no_grad():
        for batch in BATCH_SIZES:
            timed = {name: run for name, (run, _) in runs.items() if name not in record.get("too_slow", {})}
            print(f"[threads {threads}] batch {batch}: timing {len(timed)} engines", flush=True)
            ms = interleaved_medians({name: (lambda run=run: run(batch)) for name, run in timed.items()}, repeats)
            outputs = {name: np.asarray(run(batch)) for name, run in timed.items()}
            reference = outputs["torch_fp32"]
            record["batches"][str(batch)] = {
                "ms": ms, "speedup_over_torch_fp32": {name: ms["torch_fp32"] / value for name, value in ms.items()},
                "max_abs_diff_vs_torch_fp32": {name: float(np.abs(value - reference).max())
                                               for name, value in outputs.items() if name not in ON_SPARSE_MODEL},
            }
            print(f"[threads {threads}] batch {batch}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()),
                  flush=True)
            if "too_slow" not in record:  # the first (smallest) batch decides, so that a run stays bounded
                record["too_slow"] = {name: f"{value / ms['torch_fp32']:.1f}x torch FP32's time at batch {batch}"
                                      for name, value in ms.items() if value > TOO_SLOW * ms["torch_fp32"]}
        ours_fp32 = outputs["sparse_fp32"]
        record["sparse_int8_vs_sparse_fp32"] = {
            name: {"max_abs_diff": float(np.abs(outputs[name] - ours_fp32).max()),
                   "same_argmax": float((outputs[name].argmax(-1) == ours_fp32.argmax(-1)).mean())}
            for name in ("sparse_int8",)}
    record["exports"] = {name: export_summary(report) for name, report in exports.items()}
    record["machine_after"] = machine_description()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out)  # a record is whole or absent
    print(f"-> {out}", flush=True)


def export_summary(report: dict) -> dict:
    """What a record keeps of an export's plan: its summary and check, its attention plan, and the
    calibrated times of the first encoder block's Linear layers (ms per kernel and token count)."""
    first_block = {layer["name"].split(".layer.0.", 1)[1]: layer["times_ms"] for layer in report["layers"]
                   if ".layer.0." in layer["name"] and "times_ms" in layer}
    return {"summary": report["summary"], "verification": report["verification"],
            "attention": report.get("attention"), "first_block_ms": first_block}


def versions() -> dict:
    import nncf
    import onnxruntime
    import openvino
    import torch
    import torchao
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__, "nncf": nncf.__version__, "torchao": torchao.__version__}


def record_path(shape: str, sparsity: float, threads: int) -> Path:
    return RECORDS / kernel_path() / f"{shape}-{round(100 * sparsity)}_threads{threads}.json"


def _family_model(machine: dict) -> str:
    """' (family/model 26/2)' where the record names the CPU generation (older records do not)."""
    return f" (family/model {machine['cpu_family_model']})" if "cpu_family_model" in machine else ""


def report() -> str:
    lines = ["# Sparse INT8 inference against dense runtimes", "",
             "BERT-base shape (12 x 768) or MiniLM-L6 shape (6 x 384), random init, sequence length 128; speed-up "
             "over torch FP32 measured in the "
             "same process on the same token ids (median of interleaved repeats). Generated by "
             "`python benchmarks/inference_peers.py report` from the records in `peers/`.", ""]
    for path in sorted(RECORDS.glob("*/*.json")):
        record = json.loads(path.read_text())
        lines += [f"## {path.parent.name}, {path.stem}: {record.get('shape', 'bert-base')} shape, "
                  f"{record['threads']} thread(s), "
                  f"{record['sparsity']:.0%} sparse exports", "",
                  f"{record['machine_before']['cpu']}{_family_model(record['machine_before'])} "
                  f"({record['machine_before']['cpu_count']} cores), load average "
                  f"{record['machine_before']['load_average']} before, {record['machine_after']['load_average']} after; "
                  + ", ".join(f"{k} {v}" for k, v in record["versions"].items()), ""]
        header = ["engine", *(f"batch {b} ms" for b in record["batches"]), *(f"batch {b} speed-up" for b in record["batches"])]
        rows = []
        entries = list(record["batches"].values())
        for name, label in record["engines"].items():
            label = label.replace("<Type: '", "").replace("'>", "")  # an OpenVINO type printed as its repr
            rows.append([label, *(f"{e['ms'][name]:.1f}" if name in e["ms"] else "not timed" for e in entries),
                         *(f"{e['speedup_over_torch_fp32'][name]:.2f}x" if name in e["ms"] else "-" for e in entries)])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += [f"\nNot timed at larger batches: {record['engines'][name].split(' (')[0]} ({reason})."
                  for name, reason in record.get("too_slow", {}).items()]
        for batch, entry in record["batches"].items():
            peers = {name: entry["ms"][name] for name in PEERS if name in entry["ms"]}
            fastest = min(peers, key=peers.get)
            ours = {name: peers[fastest] / entry["ms"][name] for name in OURS if name in entry["ms"]}
            lines += ["", f"Batch {batch}: the fastest peer is {record['engines'][fastest].split(' (')[0]} "
                      f"({peers[fastest]:.1f} ms); against it: " + ", ".join(f"{k} {v:.2f}x" for k, v in ours.items())]
        int8 = record["sparse_int8_vs_sparse_fp32"]["sparse_int8"]
        lines += ["", f"INT8 against FP32 sparse export (random ids, batch 32): max abs logit difference "
                  f"{int8['max_abs_diff']:.3g}, same argmax {int8['same_argmax']:.0%}.", ""]
    text = "\n".join(lines) + "\n"
    TABLES.parent.mkdir(parents=True, exist_ok=True)
    TABLES.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "measure", "report"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--shape", choices=SHAPES, default="bert-base")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration_repeats", type=int, default=3)
    parser.add_argument("--work_dir", default=str(INFERENCE_WORK), help="models, ONNX files and exports")
    parser.add_argument("--force", action="store_true", help="measure again what is recorded")
    options = parser.parse_args()
    work = Path(options.work_dir)
    if options.action == "report":
        print(report())
        return
    if options.action == "measure":
        (threads,) = options.threads
        measure(threads, options.sparsity, options.shape, options.repeats, options.calibration_repeats, work,
                record_path(options.shape, options.sparsity, threads))
        return
    for threads in options.threads:  # one process per thread count: no engine inherits another's threads
        out = record_path(options.shape, options.sparsity, threads)
        if out.exists() and not options.force:
            print(f"{out} recorded; --force measures again")
            continue
        started = time.time()
        measure_in_own_process(__file__, threads, [
            "--sparsity", str(options.sparsity), "--shape", options.shape, "--repeats", str(options.repeats),
            "--calibration_repeats", str(options.calibration_repeats), "--work_dir", str(work)])
        print(f"threads {threads}: {time.time() - started:.0f} s")
    print(report())


if __name__ == "__main__":
    main()
