"""Sparse CPU inference: dense kernels vs `python -m sparse_transfer export`.

Models: MiniLM-L6 at 90% fine-tuned by the toolkit (STS-B, from benchmarks/work/upstream_eval, read
only), MiniLM at 80% / 95% (one-shot from the dense wheel) and a BERT-base-shaped model (random
init, 12 x 768, classification head) at 80 / 90 / 95% (one-shot global magnitude). Each is exported
(calibrated) once per thread count; then the whole model's forward at sequence length 128, batch 1
(latency) and batch 32 (throughput), dense vs exported, median of interleaved repeats. Predictions
on real dev sets: the fine-tuned MiniLM on STS-B dev, the BERT-base 90% on SST-2 dev (labels).

    python benchmarks/sparse_inference.py [--quick] [--threads 1 2] [--cases bert-base-90 ...]

Writes benchmarks/results/inference/sparse_inference.md (the tables) and
benchmarks/results/inference/sparse_inference[_quick].json.
Target: >= 2x end-to-end at 90% sparsity, batch 32, length 128, identical dev-set labels.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from common import GLUE_DIR, ROOT, WORK, dense_model
from scipy.stats import pearsonr
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from sparse_transfer.encoders import copy_tokenizer, load_pretrained
from sparse_transfer.glue.data import load_glue
from sparse_transfer.glue.tasks import get_task
from sparse_transfer.inference.calibration import interleaved_medians, torch_threads
from sparse_transfer.inference.export import (
    export_for_inference,
    load_for_inference,
    machine_description,
)
from sparse_transfer.inference.kernels import DENSE, KERNELS
from sparse_transfer.upstream.oneshot import prune_model
from sparse_transfer.utils.io import (
    markdown_table,
    write_json_atomic,
    write_text_atomic,
)

FINE_TUNED = WORK / "upstream_eval"
RECORDS = ROOT / "benchmarks" / "results" / "inference"
TABLES = ROOT / "benchmarks" / "results" / "inference" / "sparse_inference.md"  # RESULTS_inference.md reads it
SEQ_LENGTH, BATCH_SIZES, TARGET = 128, (1, 32), 2.0
CASES = ["minilm-stsb-90", "minilm-80", "minilm-95", "bert-base-80", "bert-base-90", "bert-base-95"]
DEV_SETS = {"minilm-stsb-90": "stsb", "bert-base-90": "sst2"}


def fine_tuned_minilm() -> tuple[str, str] | None:
    """The best STS-B model the toolkit fine-tuned from a 90% MiniLM (by dev Pearson), if any."""
    candidates = []
    for directory in FINE_TUNED.glob("*"):
        files = [directory / name for name in ("config.json", "model.safetensors", "sparsity_report.json",
                                               "eval_results.json")]
        if not all(path.is_file() for path in files):
            continue
        sparsity = json.loads(files[2].read_text())["global_sparsity"]
        results = json.loads(files[3].read_text())
        if results.get("task") == "stsb" and abs(sparsity - 0.9) < 0.005:
            candidates.append((results["best"][results["main_metric"]], directory))
    if not candidates:
        return None
    pearson, directory = max(candidates)
    return str(directory), f"{directory.name} (STS-B dev Pearson {pearson:.3f})"


def source_model(case: str, work: Path) -> tuple[str, str]:
    """(checkpoint directory, description) of a benchmark case, built under `work` if needed."""
    if case == "minilm-stsb-90":
        found = fine_tuned_minilm()
        if found:
            return found
    out = work / "sources" / case
    family, sparsity = case.rsplit("-", 1)
    description = f"{family} one-shot global magnitude {sparsity}%"
    if not (out / "config.json").exists():
        if family.startswith("minilm"):
            model = load_pretrained(dense_model())
        else:
            torch.manual_seed(0)
            model = BertForSequenceClassification(BertConfig(num_labels=2))  # bert-base shapes, random weights
            description += " (random init)"
        prune_model(model, int(sparsity) / 100)
        model.save_pretrained(out)
        copy_tokenizer(dense_model(), str(out))  # the bert-base-uncased vocabulary
    return str(out), description


def random_batch(vocab_size: int, batch: int) -> dict[str, torch.Tensor]:
    input_ids = torch.randint(1000, vocab_size, (batch, SEQ_LENGTH), generator=torch.Generator().manual_seed(batch))
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


@torch.no_grad()
def time_forward(dense, exported, threads: int, repeats: int) -> list[dict]:
    rows = []
    with torch_threads(threads):
        for batch in BATCH_SIZES:
            inputs = random_batch(dense.config.vocab_size, batch)
            ms = interleaved_medians({"dense": lambda: dense(**inputs), "exported": lambda: exported(**inputs)},
                                     repeats)
            rows.append({"threads": threads, "batch": batch, "dense_ms": ms["dense"], "exported_ms": ms["exported"],
                         "speedup": ms["dense"] / ms["exported"],
                         "exported_sequences_per_s": 1e3 * batch / ms["exported"]})
    return rows


@torch.no_grad()
def dev_set_agreement(task_name: str, directory: str, dense, exported, limit: int | None) -> dict:
    task = get_task(task_name)
    dev = load_glue(task, data_dir=str(GLUE_DIR))["validation"]
    if limit:
        dev = dev.select(range(min(limit, len(dev))))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    dense_out, exported_out = [], []
    for start in range(0, len(dev), 32):
        rows = dev[start:start + 32]
        inputs = tokenizer(*(rows[column] for column in task.text_columns), truncation=True, max_length=SEQ_LENGTH,
                           padding=True, return_tensors="pt")
        dense_out.append(dense(**inputs).logits)
        exported_out.append(exported(**inputs).logits)
    dense_out, exported_out = torch.cat(dense_out), torch.cat(exported_out)
    result = {"task": task.name, "examples": len(dev),
              "max_abs_diff": (dense_out - exported_out).abs().max().item()}
    if task.is_regression:
        gold = dev["label"]
        result.update(dense_pearson=float(pearsonr(dense_out[:, 0], gold).statistic),
                      exported_pearson=float(pearsonr(exported_out[:, 0], gold).statistic))
    else:
        result.update(label_agreement=(dense_out.argmax(-1) == exported_out.argmax(-1)).float().mean().item())
    return result


def run_case(case: str, work: Path, threads_list: list[int], options) -> dict:
    directory, description = source_model(case, work)
    record = {"case": case, "model": description, "source": directory, "exports": {}, "timings": []}
    dense = load_pretrained(directory).eval()
    for threads in threads_list:
        out = work / "exports" / f"{case}-threads{threads}"
        shutil.rmtree(out, ignore_errors=True)
        print(f"[{case}] exporting with {threads} thread(s)", flush=True)
        report = export_for_inference(directory, str(out), BATCH_SIZES, SEQ_LENGTH, threads,
                                      repeats=options.calibration_repeats)
        record["exports"][threads] = {"directory": str(out), "summary": report["summary"],
                                      "verification": report["verification"], "shapes": shape_times(report)}
        exported = load_for_inference(str(out))
        record["timings"] += time_forward(dense, exported, threads, options.repeats)
        print(f"[{case}] {record['timings'][-2:]}", flush=True)
    if case in DEV_SETS:
        with torch_threads(max(threads_list)):
            record["dev"] = dev_set_agreement(DEV_SETS[case], directory, dense, exported, options.dev_limit)
        print(f"[{case}] dev: {record['dev']}", flush=True)
    return record


def shape_times(report: dict) -> list[dict]:
    """One row per calibrated (shape, sparsity group, tokens): every kernel's time and the choice."""
    rows, seen = [], set()
    for layer in report["layers"]:
        if "times_ms" not in layer or layer["calibrated_on"] in seen:
            continue
        seen.add(layer["calibrated_on"])
        layers = sum(other.get("calibrated_on") == layer["calibrated_on"] for other in report["layers"])
        for tokens, times in layer["times_ms"].items():
            rows.append({"shape": layer["shape"], "sparsity": layer["sparsity"], "layers": layers,
                         "tokens": int(tokens), "ms": times, "screened_out": layer["screened_out"][tokens],
                         "chosen": layer["kernels"][tokens]})
    return rows


def markdown(records: list[dict], options, machine_before: dict, machine_after: dict) -> str:
    lines = ["# Sparse CPU inference", ""]
    if options.quick:
        lines += ["**Quick smoke run** (few repeats, a busy machine, dev subsets): it shows the benchmark works; "
                  "its numbers are not for quoting.", ""]
    lines += [
        f"`python benchmarks/sparse_inference.py{' --quick' if options.quick else ''}` on {machine_before['cpu']} "
        f"({machine_before['cpu_count']} cores), torch {machine_before['torch']}; load average "
        f"{machine_before['load_average']} at the start, {machine_after['load_average']} at the end "
        "(above 0 means other work shared the CPU). Sequence length 128, whole-model forward (embeddings, "
        f"encoder, head), median of {options.repeats} interleaved repeats after a warm-up; every export calibrated "
        f"on this machine for its thread count ({options.calibration_repeats} repeats per kernel).",
        "", "## End to end", ""]
    rows = []
    for record in records:
        for timing in record["timings"]:
            kernels = record["exports"][timing["threads"]]["summary"][str(timing["batch"] * SEQ_LENGTH)]
            rows.append([record["case"], timing["threads"], timing["batch"], timing["dense_ms"], timing["exported_ms"],
                         f"{timing['speedup']:.2f}x", f"{timing['exported_sequences_per_s']:.1f}",
                         ", ".join(f"{k} x{n}" for k, n in kernels["layers_per_kernel"].items()),
                         f"{kernels.get('calibrated_speedup', 1.0):.2f}x"])
    lines.append(markdown_table(["case", "threads", "batch", "dense ms", "exported ms", "speed-up",
                                 "exported seq/s", "Linear layers per kernel", "Linear-only speed-up (calibration)"],
                                rows))
    lines += ["", "Models: " + "; ".join(f"`{r['case']}` = {r['model']}" for r in records), ""]
    target = [t for r in records if r["case"] == "bert-base-90" for t in r["timings"] if t["batch"] == 32]
    if target:
        verdicts = ", ".join(f"{t['speedup']:.2f}x with {t['threads']} thread(s)" for t in target)
        met = all(t["speedup"] >= TARGET for t in target)
        lines += [f"**Target** (>= {TARGET}x, BERT-base 90%, batch 32): {verdicts}: "
                  f"{'met' if met else 'not met'}.", ""]
    lines += ["## Same predictions", ""]
    dev_rows = []
    for record in records:
        dev = record.get("dev")
        if dev:
            agreement = (f"labels agree {dev['label_agreement']:.2%}" if "label_agreement" in dev else
                         f"Pearson dense {dev['dense_pearson']:.4f} / exported {dev['exported_pearson']:.4f}")
            dev_rows.append([record["case"], dev["task"], dev["examples"], f"{dev['max_abs_diff']:.2e}", agreement])
    for record in records:
        for threads, export in record["exports"].items():
            dev_rows.append([record["case"], f"random ids, batch 1 and 32 ({threads} thread(s))", "-",
                             f"{export['verification']['max_abs_diff']:.2e}", "checked at export"])
    lines.append(markdown_table(["case", "inputs", "examples", "max abs logit difference", "agreement"], dev_rows))
    lines += ["", "## Per layer shape: every kernel (ms per call)", "",
              "Calibration times of one representative weight per (shape, sparsity group); `*` = timed once and "
              "dropped (over 3x dense). Kernels: `torch_csr` = torch CSR `addmm` (MKL), `torch_bsrN` = torch BSR "
              "with NxN blocks, `scipy_csr` = SciPy CSR (one thread), `tiled_csr` = the toolkit's C kernel "
              "(token tiles packed in cache, vectorised over tokens).", ""]
    names = [DENSE, *KERNELS]
    shape_rows = []
    for record in records:
        for threads, export in record["exports"].items():
            for row in export["shapes"]:
                cells = [f"{row['ms'][n]:.2f}{'*' if n in row['screened_out'] else ''}" if n in row["ms"] else "-"
                         for n in names]
                shape_rows.append([record["case"], threads, "x".join(map(str, row["shape"])), f"{row['sparsity']:.3f}",
                                   row["layers"], row["tokens"], *cells, row["chosen"]])
    lines.append(markdown_table(["case", "threads", "shape", "sparsity", "layers", "tokens", *names, "chosen"],
                                shape_rows))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 repeats, 1 calibration repeat, 64 dev examples")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=CASES)
    parser.add_argument("--repeats", type=int, default=None, help="end-to-end timing repeats (10; quick 2)")
    parser.add_argument("--calibration_repeats", type=int, default=None, help="per kernel (5; quick 1)")
    parser.add_argument("--work_dir", default="/tmp/sparse_inference_benchmark", help="models and exports")
    options = parser.parse_args()
    options.repeats = options.repeats or (2 if options.quick else 10)
    options.calibration_repeats = options.calibration_repeats or (1 if options.quick else 5)
    options.dev_limit = 64 if options.quick else None
    machine_before = machine_description()
    records = [run_case(case, Path(options.work_dir), options.threads, options) for case in options.cases]
    machine_after = machine_description()
    name = "sparse_inference_quick.json" if options.quick else "sparse_inference.json"
    write_json_atomic(RECORDS / name, {"quick": options.quick, "machine_before": machine_before,
                                       "machine_after": machine_after, "repeats": options.repeats,
                                       "calibration_repeats": options.calibration_repeats, "records": records})
    write_text_atomic(TABLES, markdown(records, options, machine_before, machine_after))
    print(f"-> {TABLES}, {RECORDS / name}")


if __name__ == "__main__":
    main()
