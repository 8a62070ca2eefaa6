"""What INT8 costs in accuracy on real dev sets: a 90%-sparse MiniLM-L6 fine-tuned by the toolkit on
STS-B and SST-2, then evaluated as FP32, as the toolkit's INT8 export (as calibrated: bf16 attention
where it measured faster than SDPA; and with `attention="sdpa"`), and through torch's and ONNX
Runtime's dynamic INT8 (what users would pick instead).

    python benchmarks/int8_accuracy.py run [--tasks stsb sst2] [--models minilm-90-unstructured ...]
        [--method extended_dense_transfer]
    python benchmarks/int8_accuracy.py report

The sparse models (MODELS):
  minilm-90-unstructured, minilm-90-1x4   the MiniLM pruned one-shot to 90% (`sparse_transfer prune`,
        unstructured or in 1x4 blocks), fine-tuned with dense_transfer (3 epochs, LR 1e-4, SST-2 on its
        first 8,000 sentences)
  upstream-90-obs-cls4-cosine1-long-plus1200   RESULTS.md's main model, pruned upstream (built through
        common.model_path on first use), fine-tuned as glue_comparison.py does (seed 0, SST-2 on its
        fixed 16,000-sentence sample) with `--method` (default dense_transfer) at the
        configuration where that method scored best in glue_comparison.py's records of the model

Each (model, task) is one record in benchmarks/results/inference/int8_accuracy/ (resumable: a
recorded one is skipped); tables in benchmarks/results/inference/int8_accuracy.md. Fine-tuning runs at
2 threads (the upstream model's: OMP_NUM_THREADS, as glue_comparison.py's); evaluation at 2 threads, batch 32, the whole dev set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import (
    COMPARISON_RECORDS,
    GLUE_DIR,
    ROOT,
    WORK,
    dense_model,
    export_onnx_and_int8,
    glue_run,
    model_path,
    ort_session,
    run_name,
    sst2_files,
    torch_dynamic_int8,
    weights_fingerprint,
)

from sparse_transfer.utils.io import write_json_atomic, write_text_atomic

RECORDS = ROOT / "benchmarks" / "results" / "inference" / "int8_accuracy"
TABLES = ROOT / "benchmarks" / "results" / "inference" / "int8_accuracy.md"
ONE_SHOT = {"minilm-90-unstructured": None, "minilm-90-1x4": "1x4"}  # model name: its --block
UPSTREAM = "upstream-90-obs-cls4-cosine1-long-plus1200"
MODELS = [*ONE_SHOT, UPSTREAM]
METHODS = ["dense_transfer", "extended_dense_transfer"]
TRAIN_LIMIT = {"sst2": 8000}
METRIC = {"stsb": "eval_pearson", "sst2": "eval_accuracy"}


def best_configuration(task: str, method: str) -> tuple[float, float, float]:
    """(LR, dropout, its best-epoch score x 100) of the configuration where `method` scored best on `task`
    from the upstream model in glue_comparison.py's records (the first build's runs: those RESULTS.md reads)."""
    prefix = run_name(task, method, 0, 0, UPSTREAM).split("_lr")[0] + "_lr"
    runs = [json.loads(path.read_text()) for path in COMPARISON_RECORDS.glob(f"{prefix}*.json")
            if "_build" not in path.name]
    if not runs:
        raise SystemExit(f"no glue_comparison.py record of {method} on {task} from {UPSTREAM}: run it first")
    best = max(runs, key=lambda run: run["best"][METRIC[task]])
    return best["learning_rate"], best["dropout"], 100 * best["best"][METRIC[task]]


def fine_tuned(model: str, task: str, method: str) -> Path:
    """The sparse MiniLM fine-tuned on `task` (built when missing)."""
    if model == UPSTREAM:
        out = WORK / "int8_accuracy" / f"{model}-{method}-{task}"
        if not (out / "eval_results.json").exists():
            lr, dropout, _ = best_configuration(task, method)
            files = sst2_files() if task == "sst2" else ()  # glue_comparison.py's sample and the full dev set
            data = ("--train_file", files[0], "--validation_file", files[1]) if files else ()
            glue_run(task, model_path(model), method, lr, 0, out, ("--dropout", f"{dropout:g}", *data))
        return out
    pruned = WORK / "int8_accuracy" / model
    if not (pruned / "config.json").exists():
        command = [sys.executable, "-m", "sparse_transfer", "prune", "--model", dense_model(), "--sparsity", "0.9",
                   "--output", str(pruned)]
        subprocess.run(command + (["--block", ONE_SHOT[model]] if ONE_SHOT[model] else []), check=True)
    out = WORK / "int8_accuracy" / f"{model}-{task}"
    if not (out / "eval_results.json").exists():
        command = [sys.executable, str(ROOT / "run_glue.py"), "--task", task, "--model_name_or_path", str(pruned),
                   "--data_dir", str(GLUE_DIR), "--recipe", "dense_transfer", "--learning_rate", "1e-4",
                   "--per_device_train_batch_size", "32", "--train_sampling_strategy", "group_by_length",
                   "--output_dir", str(out), "--save_total_limit", "1", "--disable_tqdm", "true", "--seed", "0"]
        if task in TRAIN_LIMIT:
            command += ["--max_train_samples", str(TRAIN_LIMIT[task])]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    return out


def record_name(model: str, task: str, method: str) -> str:
    return f"{model}-{method}-{task}" if model == UPSTREAM else f"{model}-{task}"


def evaluate(model_name: str, task_name: str, method: str) -> dict:
    import numpy as np
    import torch
    from scipy.stats import pearsonr
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sparse_transfer.glue.data import load_glue
    from sparse_transfer.glue.tasks import get_task
    from sparse_transfer.inference.export import export_for_inference, load_for_inference, machine_description

    torch.set_num_threads(2)
    model_dir = fine_tuned(model_name, task_name, method)
    task = get_task(task_name)
    dev = load_glue(task, data_dir=str(GLUE_DIR))["validation"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    exports = {}
    for name, attention in (("sparse_transfer_int8", "auto"), ("sparse_transfer_int8_sdpa", "sdpa")):
        exports[name] = WORK / "int8_accuracy" / f"export-{record_name(model_name, task_name, method)}-{attention}"
        if not (exports[name] / "sparse_inference.json").exists():
            export_for_inference(str(model_dir), str(exports[name]), (32,), 128, 2, repeats=2, quantize="int8",
                                 attention=attention)
    fp32 = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    torch_int8 = torch_dynamic_int8(AutoModelForSequenceClassification.from_pretrained(model_dir).eval())
    models = {"fp32": fp32, **{name: load_for_inference(str(path)) for name, path in exports.items()},
              "torch_int8": torch_int8}
    export_onnx_and_int8(fp32, model_dir / "model.onnx", model_dir / "model-int8.onnx",
                         ["input_ids", "attention_mask", "token_type_ids"])
    ort_int8 = ort_session(model_dir / "model-int8.onnx", 2)
    outputs = {name: [] for name in [*models, "ort_int8"]}
    with torch.no_grad():
        for start in range(0, len(dev), 32):
            rows = dev[start:start + 32]
            inputs = tokenizer(*(rows[column] for column in task.text_columns), truncation=True, max_length=128,
                               padding=True, return_tensors="pt")
            for name, model in models.items():
                outputs[name].append(model(**inputs).logits.numpy())
            outputs["ort_int8"].append(ort_int8.run(None, {key: inputs[key].numpy() for key in
                                                              ("input_ids", "attention_mask", "token_type_ids")})[0])
    gold = np.asarray(dev["label"])
    scores = {}
    for name, chunks in outputs.items():
        logits = np.concatenate(chunks)
        if task.is_regression:
            scores[name] = 100 * float(pearsonr(logits[:, 0], gold).statistic)
        else:
            scores[name] = 100 * float((logits.argmax(-1) == gold).mean())
    plan = json.loads((exports["sparse_transfer_int8"] / "sparse_inference.json").read_text())
    record = {"model": model_name, "pattern": ONE_SHOT.get(model_name) or "unstructured", "task": task.name,
              "metric": "pearson" if task.is_regression else "accuracy", "examples": len(dev), "scores": scores,
              "int8_minus_fp32": scores["sparse_transfer_int8"] - scores["fp32"],
              "export_check": plan["verification"], "layers_per_kernel": plan["summary"]["4096"]["layers_per_kernel"],
              "attention": plan["attention"]["kernels"]["4096"],
              "fine_tuned": json.loads((model_dir / "eval_results.json").read_text())["best"],
              "machine": machine_description()}
    if model_name == UPSTREAM:  # which weights (a rebuild on another CPU kind differs), and what RESULTS.md recorded
        lr, dropout, recorded = best_configuration(task_name, method)
        record.update(method=method, learning_rate=lr, dropout=dropout, recorded_score=recorded,
                      model_sha256=weights_fingerprint(model_path(model_name)))
    return record


def report() -> str:
    lines = ["# INT8 accuracy on real dev sets", "",
             "A 90%-sparse MiniLM-L6 fine-tuned by the toolkit, scored on the whole dev set (STS-B Pearson x 100, "
             "SST-2 accuracy %) as FP32, as the toolkit's INT8 export and through torch's and ONNX Runtime's dynamic "
             "INT8. Models: pruned one-shot (unstructured or 1x4 blocks), fine-tuned with `dense_transfer` (3 epochs, "
             "LR 1e-4); and RESULTS.md's main model, pruned upstream (`" + UPSTREAM + "`), fine-tuned at the "
             "configuration where the method scored best in glue_comparison.py (that run's score: \"recorded\"). "
             "Generated by `python benchmarks/int8_accuracy.py report`.", "",
             "| model | fine-tuning | task | recorded | FP32 | sparse-transfer INT8 | INT8 - FP32 | its attention |"
             " INT8, SDPA attention | torch dynamic INT8 | ONNX Runtime INT8 | INT8 layers | INT8 kernel path |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(RECORDS.glob("*.json")):
        r = json.loads(path.read_text())
        s = r["scores"]
        model = r.get("model", f"minilm-90-{r['pattern']}")  # records before the upstream model name none
        tuning = (f"{r['method']}, LR {r['learning_rate']:g}, dropout {r['dropout']:g}" if "method" in r
                  else "dense_transfer, LR 0.0001")
        recorded = f"{r['recorded_score']:.2f}" if "recorded_score" in r else "-"
        sdpa = f"{s['sparse_transfer_int8_sdpa']:.2f}" if "sparse_transfer_int8_sdpa" in s else "-"
        path_name = r.get("machine", {}).get("int8_kernel_path", "avx512-vnni")  # the first records: Zen 5
        lines.append(f"| {model} | {tuning} | {r['task']} | {recorded} | {s['fp32']:.2f} | "
                     f"{s['sparse_transfer_int8']:.2f} | {r['int8_minus_fp32']:+.2f} | {r.get('attention', 'sdpa')} | "
                     f"{sdpa} | {s['torch_int8']:.2f} | {s['ort_int8']:.2f} | "
                     f"{', '.join(f'{k} x{n}' for k, n in r['layers_per_kernel'].items())} | {path_name} |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(TABLES, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--tasks", nargs="+", default=["stsb", "sst2"], choices=list(METRIC))
    parser.add_argument("--models", nargs="+", default=list(ONE_SHOT), choices=MODELS)
    parser.add_argument("--method", default="dense_transfer", choices=METHODS,
                        help=f"the fine-tuning of {UPSTREAM} (the one-shot models: dense_transfer)")
    options = parser.parse_args()
    if options.action == "run":
        RECORDS.mkdir(parents=True, exist_ok=True)
        for model in options.models:
            for task in options.tasks:
                out = RECORDS / f"{record_name(model, task, options.method)}.json"
                if out.exists():
                    print(f"{out} recorded")
                    continue
                record = evaluate(model, task, options.method)
                write_json_atomic(out, record)
                print(f"{model} {task}: {record['scores']}", flush=True)
    print(report())


if __name__ == "__main__":
    main()
