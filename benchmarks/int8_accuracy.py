"""What INT8 costs in accuracy on real dev sets: a 90%-sparse MiniLM-L6 (one-shot, unstructured and
1x4 blocks) fine-tuned by the toolkit on STS-B and SST-2, then evaluated as FP32, as the toolkit's
INT8 export (as calibrated: bf16 attention where it measured faster than SDPA; and with
`attention="sdpa"`), and through torch's and ONNX Runtime's dynamic INT8 (what users would pick instead).

    python benchmarks/int8_accuracy.py run [--tasks stsb sst2] [--patterns unstructured 1x4]
    python benchmarks/int8_accuracy.py report

Each (pattern, task) is one record in benchmarks/results/inference/int8_accuracy/ (resumable: a
recorded one is skipped); tables in benchmarks/results/inference/int8_accuracy.md. Fine-tuning uses
the dense_transfer recipe (3 epochs, LR 1e-4, batch 32, SST-2 on its first 8,000 sentences) at
2 threads; evaluation at 2 threads, batch 32, the whole dev set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import GLUE_DIR, ROOT, WORK, dense_model, export_onnx_and_int8, ort_session, torch_dynamic_int8

RECORDS = ROOT / "benchmarks" / "results" / "inference" / "int8_accuracy"
TABLES = ROOT / "benchmarks" / "results" / "inference" / "int8_accuracy.md"
PATTERNS = {"unstructured": None, "1x4": "1x4"}
TRAIN_LIMIT = {"sst2": 8000}


def fine_tuned(pattern: str, task: str) -> Path:
    """The pruned MiniLM fine-tuned on `task` (built when missing)."""
    pruned = WORK / "int8_accuracy" / f"minilm-90-{pattern}"
    if not (pruned / "config.json").exists():
        command = [sys.executable, "-m", "sparse_transfer", "prune", "--model", dense_model(), "--sparsity", "0.9",
                   "--output", str(pruned)]
        subprocess.run(command + (["--block", PATTERNS[pattern]] if PATTERNS[pattern] else []), check=True)
    out = WORK / "int8_accuracy" / f"minilm-90-{pattern}-{task}"
    if not (out / "eval_results.json").exists():
        command = [sys.executable, str(ROOT / "run_glue.py"), "--task", task, "--model_name_or_path", str(pruned),
                   "--data_dir", str(GLUE_DIR), "--recipe", "dense_transfer", "--learning_rate", "1e-4",
                   "--per_device_train_batch_size", "32", "--train_sampling_strategy", "group_by_length",
                   "--output_dir", str(out), "--save_total_limit", "1", "--disable_tqdm", "true", "--seed", "0"]
        if task in TRAIN_LIMIT:
            command += ["--max_train_samples", str(TRAIN_LIMIT[task])]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    return out


def evaluate(pattern: str, task_name: str) -> dict:
    import numpy as np
    import torch
    from scipy.stats import pearsonr
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sparse_transfer.glue.data import load_glue
    from sparse_transfer.glue.tasks import get_task
    from sparse_transfer.inference.export import export_for_inference, load_for_inference

    torch.set_num_threads(2)
    model_dir = fine_tuned(pattern, task_name)
    task = get_task(task_name)
    dev = load_glue(task, data_dir=str(GLUE_DIR))["validation"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    exports = {}
    for name, attention in (("sparse_transfer_int8", "auto"), ("sparse_transfer_int8_sdpa", "sdpa")):
        exports[name] = WORK / "int8_accuracy" / f"export-{pattern}-{task_name}-{attention}"
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
    return {"pattern": pattern, "task": task.name, "metric": "pearson" if task.is_regression else "accuracy",
            "examples": len(dev), "scores": scores, "int8_minus_fp32": scores["sparse_transfer_int8"] - scores["fp32"],
            "export_check": plan["verification"], "layers_per_kernel": plan["summary"]["4096"]["layers_per_kernel"],
            "attention": plan["attention"]["kernels"]["4096"],
            "fine_tuned": json.loads((model_dir / "eval_results.json").read_text())["best"]}


def report() -> str:
    lines = ["# INT8 accuracy on real dev sets", "",
             "MiniLM-L6 pruned one-shot to 90%, fine-tuned with `dense_transfer` (3 epochs, LR 1e-4), scored on the "
             "whole dev set (STS-B Pearson x 100, SST-2 accuracy %). Generated by "
             "`python benchmarks/int8_accuracy.py report`.", "",
             "| pattern | task | FP32 | sparse-transfer INT8 | INT8 - FP32 | its attention | INT8, SDPA attention |"
             " torch dynamic INT8 | ONNX Runtime INT8 | INT8 layers |", "|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(RECORDS.glob("*.json")):
        r = json.loads(path.read_text())
        s = r["scores"]
        sdpa = f"{s['sparse_transfer_int8_sdpa']:.2f}" if "sparse_transfer_int8_sdpa" in s else "-"
        lines.append(f"| {r['pattern']} | {r['task']} | {s['fp32']:.2f} | {s['sparse_transfer_int8']:.2f} | "
                     f"{r['int8_minus_fp32']:+.2f} | {r.get('attention', 'sdpa')} | {sdpa} | {s['torch_int8']:.2f} | "
                     f"{s['ort_int8']:.2f} | {', '.join(f'{k} x{n}' for k, n in r['layers_per_kernel'].items())} |")
    text = "\n".join(lines) + "\n"
    TABLES.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--tasks", nargs="+", default=["stsb", "sst2"])
    parser.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=list(PATTERNS))
    options = parser.parse_args()
    if options.action == "run":
        RECORDS.mkdir(parents=True, exist_ok=True)
        for pattern in options.patterns:
            for task in options.tasks:
                out = RECORDS / f"minilm-90-{pattern}-{task}.json"
                if out.exists():
                    print(f"{out} recorded")
                    continue
                record = evaluate(pattern, task)
                out.write_text(json.dumps(record, indent=1))
                print(f"{pattern} {task}: {record['scores']}", flush=True)
    print(report())


if __name__ == "__main__":
    main()
