"""One upstream-pruning run from arguments to files: load the dense model twice
(student and frozen teacher), build the corpus, train, write the outputs.

    sparse-transfer upstream --model DENSE --sparsity 0.9 --train_file corpus.txt --output_dir DIR \
        [--recipe NAME_OR_YAML] [any TrainingArguments flag]
    accelerate launch -m sparse_transfer.upstream ...        # several GPUs

Precedence: command line > the recipe's `training:` section > defaults. Rerunning the
same command resumes from the last complete checkpoint.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import (
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    TrainingArguments,
)

from sparse_transfer.encoders import load_pretrained
from sparse_transfer.pruning import capped_layers, layer_extremes, parse_block
from sparse_transfer.upstream.data import read_documents, tokenized_corpus
from sparse_transfer.upstream.recipe import UpstreamRecipe, load_upstream_recipe
from sparse_transfer.upstream.trainer import UpstreamPruningTrainer
from sparse_transfer.utils.arguments import read_arguments_file, with_defaults
from sparse_transfer.utils.checkpoints import resume_point
from sparse_transfer.utils.errors import ConfigurationError, exit_status
from sparse_transfer.utils.hub import is_hub_name, load_or_explain, require_hub
from sparse_transfer.utils.io import markdown_table, write_csv, write_json_atomic
from sparse_transfer.utils.reports import plot_steps, step_rows

RESULTS_NAME = "upstream_results.json"  # written last: marks a finished run
STEPS_NAME = "training_steps.csv"
DEFAULT_RECIPE = "magnitude_distill"


@dataclass
class UpstreamArguments:
    model: str = field(metadata={"help": "the model to prune: hub name or local directory"})
    teacher: str | None = field(default=None, metadata={"help": "the dense teacher (default: --model itself); "
                                                                 "to go on from a model that is already sparse"})
    train_file: str | None = field(default=None, metadata={"help": "corpus: .txt (a segment per line, blank line "
                                                                    "between documents), CSV, TSV or JSON"})
    dataset_name: str | None = field(default=None, metadata={"help": "corpus from the hub instead of --train_file"})
    dataset_config_name: str | None = field(default=None)
    sparsity: float | None = field(default=None, metadata={"help": "target sparsity (overrides the recipe's)"})
    recipe: str = field(default=DEFAULT_RECIPE, metadata={"help": "a shipped upstream recipe's name (sparse-transfer recipes) or a YAML file"})
    criterion: str | None = field(default=None, metadata={"help": "magnitude or obs (overrides the recipe's)"})
    max_seq_length: int | None = field(default=None, metadata={"help": "overrides the recipe's data.max_seq_length"})
    block_path: str | None = field(default=None, metadata={"help": "dotted path of the transformer blocks, from the "
                                                                    "model or its base encoder (recipe mask.block_path; "
                                                                    "found automatically)"})
    module_types: list[str] | None = field(default=None, metadata={"help": "class names of the layers to prune "
                                                                           "(recipe mask.module_types; Linear)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first N examples of the corpus"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace a finished run in output_dir"})


def script_defaults(recipe: UpstreamRecipe) -> dict:
    """Lowest precedence, below the recipe's `training:` section and the command line."""
    return {"output_dir": f"runs/upstream/{recipe.name}", "save_strategy": "steps", "save_steps": 200,
            "save_total_limit": 2, "logging_steps": 10, "report_to": "none",
            "dataloader_pin_memory": torch.cuda.is_available(), **recipe.training}


def load_model(name: str, recipe: UpstreamRecipe, flag: str = "--model"):
    kwargs = {"attn_implementation": "eager"} if recipe.distillation.attention else {}
    return load_or_explain(lambda path: load_pretrained(path, **kwargs), name, flag)


def load_models(run: UpstreamArguments, recipe: UpstreamRecipe):
    """Student, teacher (a copy of the student unless --teacher) and tokenizer."""
    student = load_model(run.model, recipe)
    teacher = load_model(run.teacher, recipe, "--teacher") if run.teacher else copy.deepcopy(student)
    return student, teacher, AutoTokenizer.from_pretrained(run.model)


def prune_upstream(run: UpstreamArguments, training_args: TrainingArguments, recipe: UpstreamRecipe) -> dict:
    output_dir = training_args.output_dir
    checkpoint = resume_point(output_dir, run.overwrite_output_dir, training_args.resume_from_checkpoint, RESULTS_NAME)
    if not (run.train_file or run.dataset_name):
        raise ConfigurationError("no corpus: give --train_file (text, CSV or JSON) or --dataset_name")
    wanted = [f"{flag[2:]} {name}" for flag, name in (("--model", run.model), ("--teacher", run.teacher),
                                                      ("--dataset_name", run.dataset_name)) if is_hub_name(name)]
    require_hub(wanted, "--model DIR and --train_file corpus.txt")
    documents = read_documents(run.train_file or run.dataset_name, recipe.data.text_column, run.dataset_config_name)
    student, teacher, tokenizer = load_models(run, recipe)
    data = recipe.data
    corpus = tokenized_corpus(tokenizer, documents, data.max_seq_length, data.pair_fraction,
                              data.random_pair_fraction, data.seed, data.copy_pair_fraction)
    if run.max_train_samples is not None:
        corpus = corpus.select(range(min(run.max_train_samples, len(corpus))))
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if training_args.fp16 or training_args.bf16 else None)
    trainer = UpstreamPruningTrainer(student, training_args, teacher=teacher, recipe=recipe, train_dataset=corpus,
                                     data_collator=collator, processing_class=tokenizer)
    if checkpoint:
        print(f"[upstream] resuming {output_dir} from {checkpoint}")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()  # model, tokenizer, masks, sparsity report, resolved recipe
    trainer.save_state()
    if not trainer.is_world_process_zero():
        return {}
    return write_outputs(trainer, run, result.metrics, len(corpus))


def write_outputs(trainer: UpstreamPruningTrainer, run: UpstreamArguments, train_metrics: dict, examples: int) -> dict:
    output_dir = trainer.args.output_dir
    terms = [f"loss_{name}" for name, weight in trainer.recipe.distillation.weights().items() if weight]
    rows = step_rows(trainer.state.log_history, ["sparsity", "loss", *terms, "learning_rate"])
    write_csv(rows, os.path.join(output_dir, STEPS_NAME))
    title = f"{os.path.basename(run.model.rstrip('/'))} -> {trainer.recipe.pruning.sparsity:.0%}"
    plot_steps(rows, {"loss": ["loss", *terms]}, os.path.join(output_dir, "loss.png"), title)
    plot_steps(rows, {"sparsity": ["sparsity"], "learning rate": ["learning_rate"]},
               os.path.join(output_dir, "sparsity.png"), title)
    report = trainer.sparsity_report()
    pruning = trainer.recipe.pruning
    capped = capped_layers(report, pruning.max_layer_sparsity, parse_block(pruning.block)) if pruning.scope == "global" else []
    results = {
        "model": run.model, "corpus": run.train_file or run.dataset_name, "examples": examples,
        "recipe": trainer.recipe.name, "criterion": trainer.recipe.pruning.criterion,
        "target_sparsity": trainer.recipe.pruning.sparsity, "sparsity": report["global_sparsity"],
        "mask_violations": report["mask_violations"], "steps": trainer.state.global_step,
        "pruning_steps": list(trainer.pruning_steps.targets), "train_runtime_s": train_metrics.get("train_runtime"),
        "final_loss_terms": {key: rows[-1][key] for key in terms} if rows else {},
        "layers_at_max_layer_sparsity": capped,
    }
    write_json_atomic(os.path.join(output_dir, RESULTS_NAME), results)
    print(markdown_table(["model", "criterion", "steps", "sparsity", "violations", "runtime (s)"],
                         [[run.model, results["criterion"], results["steps"], f"{100 * results['sparsity']:.2f}%",
                           results["mask_violations"], round(results["train_runtime_s"] or 0)]]))
    print(f"{layer_extremes(report)}; {len(capped)} of {len(report['layers'])} layers at pruning.max_layer_sparsity "
          f"{pruning.max_layer_sparsity}")
    return results


PROG = "sparse-transfer upstream"


def parse_arguments(argv: list[str]):
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = read_arguments_file(argv[0])
    parser = HfArgumentParser((UpstreamArguments, TrainingArguments), prog=PROG)
    given, _ = parser.parse_known_args(args=argv)
    recipe = load_upstream_recipe(given.recipe, {"pruning.sparsity": given.sparsity,
                                                 "pruning.criterion": given.criterion,
                                                 "data.max_seq_length": given.max_seq_length,
                                                 "mask.block_path": given.block_path,
                                                 "mask.module_types": given.module_types})
    run, training_args = parser.parse_args_into_dataclasses(args=with_defaults(argv, script_defaults(recipe)))
    return run, training_args, recipe


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def run() -> None:
        run_args, training_args, recipe = parse_arguments(argv)
        prune_upstream(run_args, training_args, recipe)

    return exit_status(PROG, run)

