"""The main job: sparse transfer of a (sparse) pretrained encoder to a GLUE task or the
user's own text classification / regression files, one run or the recipe's grid.

    accelerate launch run_glue.py --task rte                             # = sparse-transfer glue --task rte
    accelerate launch -m sparse_transfer.transfer --task rte --grid      # the paper's 6-run grid
    sparse-transfer glue --task mrpc --data_dir ../shared/data/glue --model_name_or_path DIR
    sparse-transfer glue args.yaml                                       # every argument from one file
    sparse-transfer glue --train_file train.csv --validation_file dev.csv  # your own task
    sparse-transfer glue --task sst2 --data_dir glue --do_predict        # + predictions/SST-2.tsv

Every `TrainingArguments` flag passes through. Precedence: command line (or the
arguments file) > the recipe's `training:` section > these defaults.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    TrainingArguments,
    enable_full_determinism,
    set_seed,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from sparse_transfer.glue.custom import resolve_task
from sparse_transfer.glue.data import load_glue, load_test, tokenize
from sparse_transfer.glue.metrics import metrics_function, per_class_report
from sparse_transfer.glue.predictions import write_own_predictions, write_submission
from sparse_transfer.transfer.grid import (
    grid_runs,
    parse_epochs,
    summarize,
    summary_markdown,
)
from sparse_transfer.transfer.recipe import load_recipe
from sparse_transfer.transfer.trainer import SparseTransferTrainer
from sparse_transfer.transfer.unfreezing import stage_plan_text
from sparse_transfer.transfer.verdict import loss_key, training_verdict
from sparse_transfer.utils.arguments import (
    as_argv,
    given_flags,
    read_arguments_file,
    with_defaults,
    without_flags,
)
from sparse_transfer.utils.checkpoints import resume_point
from sparse_transfer.utils.errors import ConfigurationError, exit_status
from sparse_transfer.utils.hub import is_hub_name, load_or_explain, require_hub
from sparse_transfer.utils.io import (
    markdown_table,
    write_csv,
    write_json_atomic,
    write_text_atomic,
)
from sparse_transfer.utils.reports import best_and_final, epoch_rows, plot_run

DEFAULT_MODEL = "neuralmagic/oBERT-12-upstream-pruned-unstructured-90-v2"
RESULTS_NAME = "eval_results.json"
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={"help": "sparse pretrained model (hub or path)"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "defaults to the model's tokenizer"})
    cache_dir: str | None = field(default=None, metadata={"help": "where hub models and datasets are cached"})
    dropout: float | None = field(default=None, metadata={"help": "hidden and attention dropout of the model"})
    ignore_mismatched_sizes: bool = field(default=False, metadata={"help": "replace a classifier head of another size"})


@dataclass
class DataArguments:
    task: str | None = field(default=None, metadata={"help": "cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, or "
                                                              "custom (the default with --train_file)"})
    data_dir: str | None = field(default=None, metadata={"help": "directory in the original GLUE TSV layout"})
    train_file: str | None = field(default=None, metadata={"help": "CSV/JSON/TSV: a GLUE task's hub columns, or "
                                                                    "your own task's text and label columns"})
    validation_file: str | None = field(default=None, metadata={"help": "CSV/JSON/TSV, columns as --train_file"})
    test_file: str | None = field(default=None, metadata={"help": "rows to predict with --do_predict (default: "
                                                                   "the GLUE test files in --data_dir)"})
    text_columns: str | None = field(default=None, metadata={"help": "own task: one or two text columns, a,b "
                                                                      "(default: sentence, text or sentence1,sentence2)"})
    label_column: str = field(default="label", metadata={"help": "own task: the label column"})
    problem_type: str | None = field(default=None, metadata={"help": "own task: regression or "
                                                                      "single_label_classification (default: "
                                                                      "regression for float labels)"})
    max_seq_length: int = field(default=128)
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    overwrite_cache: bool = field(default=False)


@dataclass
class SparseTransferArguments:
    recipe: str = field(default="gradual_unfreeze", metadata={"help": "a recipe name (gradual_unfreeze, dense_transfer, extended_dense_transfer, gradual_unfreeze_distill) or a YAML file"})
    grid: bool = field(default=False, metadata={"help": "run the recipe's LR x dropout grid"})
    sweep_epochs: str | None = field(default=None, metadata={"help": "dense recipes rescaled to these epochs: 1-7"})
    teacher: str | None = field(default=None, metadata={"help": "distill from this dense model fine-tuned on the "
                                                                 "task (the recipe's distillation.teacher)"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace results already in output_dir"})
    block_path: str | None = field(default=None, metadata={"help": "dotted path of the transformer blocks, from the "
                                                                    "model or its base encoder (the recipe's "
                                                                    "mask.block_path; found automatically)"})
    module_types: list[str] | None = field(default=None, metadata={"help": "class names of the masked, staged layers "
                                                                           "(the recipe's mask.module_types; Linear)"})


def script_defaults(task_name: str, recipe_name: str) -> dict:
    """Lowest precedence: evaluate and save every epoch, keep the best (early stopping)."""
    return {
        "output_dir": f"runs/{task_name}/{recipe_name}",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "logging_steps": 10,
        "report_to": "none",
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def parse_arguments(argv: list[str]):
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = read_arguments_file(argv[0])
    parser = HfArgumentParser((ModelArguments, DataArguments, SparseTransferArguments, TrainingArguments))
    model_args, data_args, st_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    task = resolve_task(data_args.task, data_args.train_file, data_args.text_columns, data_args.label_column,
                        data_args.problem_type, model_args.cache_dir)
    if "metric_for_best_model" in given_flags(argv):
        task = task.with_main_metric(training_args.metric_for_best_model)
    recipe = load_recipe(st_args.recipe, {"mask.block_path": st_args.block_path, "mask.module_types": st_args.module_types})
    defaults = {**script_defaults(task.name, recipe.name), **recipe.training}
    defaults["metric_for_best_model"] = main_metric_key(task).removeprefix("eval_")
    defaults["greater_is_better"] = True
    model_args, data_args, st_args, training_args = parser.parse_args_into_dataclasses(args=with_defaults(argv, defaults))
    return model_args, data_args, st_args, training_args, task, recipe, argv


def main_metric_key(task) -> str:
    prefix = "eval_matched_" if task.name == "mnli" else "eval_"
    return prefix + task.main_metric


def check_hub(model_args: ModelArguments, data_args: DataArguments, st_args, task) -> None:
    """Fail in seconds, with the offline flags, when what the run needs is on an unreachable hub."""
    wanted = [f"model {name}" for name in {model_args.model_name_or_path, model_args.tokenizer_name, st_args.teacher}
              if is_hub_name(name)]
    if not (data_args.data_dir or data_args.train_file or task.custom):
        wanted.append(f"dataset nyu-mll/glue ({task.name})")
    require_hub(wanted, "--model_name_or_path DIR and --data_dir DIR (GLUE TSVs) or --train_file FILE "
                        "--validation_file FILE")


def load_model(model_args: ModelArguments, task):
    config = load_or_explain(lambda name: AutoConfig.from_pretrained(name, cache_dir=model_args.cache_dir),
                             model_args.model_name_or_path, "--model_name_or_path")
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ConfigurationError(
            f"model {model_args.model_name_or_path} is a {config.model_type!r} model, for which transformers has no "
            "sequence-classification head; use an encoder that has one (BERT, RoBERTa, DeBERTa, ModernBERT, ...)")
    has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if has_head and config.num_labels != task.num_labels and not model_args.ignore_mismatched_sizes:
        raise ConfigurationError(
            f"model {model_args.model_name_or_path} has a {config.num_labels}-label classifier but task {task.name} "
            f"needs {task.num_labels}; pass --ignore_mismatched_sizes to replace the head"
        )
    config.num_labels = task.num_labels
    config.finetuning_task = task.name
    if not task.is_regression:
        config.id2label = dict(enumerate(task.label_names))
        config.label2id = {name: i for i, name in enumerate(task.label_names)}
    if model_args.dropout is not None:
        for name in DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, model_args.dropout)
    return AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path, config=config, cache_dir=model_args.cache_dir,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )


def prepare_data(model_args, data_args, task, tokenizer):
    raw = load_glue(task, data_args.data_dir, data_args.train_file, data_args.validation_file, model_args.cache_dir)
    data = tokenize(raw, tokenizer, task, data_args.max_seq_length, data_args.overwrite_cache)
    train = data["train"]
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    evaluation = {}
    for split in task.eval_splits:
        dataset = data[split]
        if data_args.max_eval_samples is not None:
            dataset = dataset.select(range(min(data_args.max_eval_samples, len(dataset))))
        evaluation[split.removeprefix("validation_") if split != "validation" else split] = dataset
    # One evaluation set is passed plainly (metrics `eval_accuracy`); MNLI's two by name.
    return train, (evaluation["validation"] if "validation" in evaluation else evaluation)


def train_and_report(model_args, data_args, st_args, training_args, task, recipe) -> dict:
    """One fine-tuning run: train, evaluate every epoch, write every output file."""
    output_dir = training_args.output_dir
    checkpoint = resume_point(output_dir, st_args.overwrite_output_dir, training_args.resume_from_checkpoint,
                              RESULTS_NAME)
    tokenizer = load_or_explain(lambda name: AutoTokenizer.from_pretrained(name, cache_dir=model_args.cache_dir),
                                model_args.tokenizer_name or model_args.model_name_or_path,
                                "--tokenizer_name" if model_args.tokenizer_name else "--model_name_or_path")
    train, evaluation = prepare_data(model_args, data_args, task, tokenizer)
    # read before training: a missing test file must not wait for the end of a long run
    test = load_test(task, data_args.data_dir, data_args.test_file, model_args.cache_dir) \
        if training_args.do_predict else {}
    # Seeded before the model, as Hugging Face's run_glue.py: the new head's initial weights
    # come from the global RNG, which Trainer seeds only later; unseeded, no run repeated.
    (enable_full_determinism if training_args.full_determinism else set_seed)(training_args.seed)
    model = load_model(model_args, task)
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if training_args.fp16 or training_args.bf16 else None)
    trainer = SparseTransferTrainer(
        model, training_args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
        data_collator=collator, compute_metrics=metrics_function(task), recipe=recipe, teacher=st_args.teacher,
    )
    if trainer.is_world_process_zero():
        print(stage_plan_text(trainer.stage_plan))
    if checkpoint:
        print(f"[sparse-transfer] resuming {output_dir} from {checkpoint}")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()  # the best epoch's model, its sparsity report and the resolved recipe
    trainer.save_state()
    # every process takes part in predict (it gathers across them); the best epoch's model is loaded
    per_class = {} if task.is_regression else {
        split: per_class_report(task, *logits_and_labels(trainer, dataset))
        for split, dataset in (evaluation.items() if isinstance(evaluation, dict) else [("validation", evaluation)])}
    test_logits = {split: logits_and_labels(trainer, prediction_input(rows, task, tokenizer, data_args))[0]
                   for split, rows in test.items()}
    if not trainer.is_world_process_zero():
        return {}

    metric_key = main_metric_key(task)
    rows = epoch_rows(trainer.state.log_history)
    best, final = best_and_final(rows, metric_key)
    verdict = training_verdict(rows, metric_key, loss_key(metric_key, task.main_metric))
    report = trainer.sparsity_report()
    prediction_files = [write_own_predictions(task, test[split], logits, output_dir) if task.custom
                        else write_submission(task, split, logits, output_dir) for split, logits in test_logits.items()]
    results = {
        "task": task.name, "recipe": trainer.recipe.name, "model": model_args.model_name_or_path,
        "main_metric": metric_key, "best": best, "final": final, "verdict": verdict,
        "sparsity": report["global_sparsity"], "mask_violations": report["mask_violations"],
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        **({"labels": list(task.label_names), "per_class": per_class} if per_class else {}),
        **({"predictions": [os.path.relpath(path, output_dir) for path in prediction_files]} if test else {}),
    }
    factor = trainer.lr_scheduler.lr_lambdas[0]
    lr_per_step = [training_args.learning_rate * factor(step) for step in range(trainer.state.max_steps)]
    write_csv(rows, os.path.join(output_dir, "epoch_metrics.csv"))
    plot_run(rows, metric_key, lr_per_step, output_dir, f"{task.name} / {trainer.recipe.name}")
    write_json_atomic(os.path.join(output_dir, "all_results.json"),
                      {**train_result.metrics, **{f"best_{k}": v for k, v in best.items()},
                       **{f"final_{k}": v for k, v in final.items()}, "sparsity": results["sparsity"],
                       "mask_violations": results["mask_violations"]})
    write_json_atomic(os.path.join(output_dir, RESULTS_NAME), results)  # last: marks the run finished
    print(markdown_table(
        ["task", "recipe", "best epoch", f"best {task.main_metric}", f"final {task.main_metric}", "sparsity",
         "violations", "verdict"],
        [[task.name, trainer.recipe.name, best["epoch"], best[metric_key], final[metric_key],
          f"{100 * report['global_sparsity']:.2f}%", report["mask_violations"], verdict["verdict"]]],
    ))
    print(f"verdict: {verdict['verdict']} ({verdict['advice']})")
    for path in prediction_files:
        print(f"predictions: {path}")
    return results


def logits_and_labels(trainer, dataset):
    """The model's logits on `dataset` (the first output when it returns several) and its labels, if any."""
    output = trainer.predict(dataset)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return logits, output.label_ids


def prediction_input(rows, task, tokenizer, data_args):
    """Test rows tokenized as training rows are, without any label column (test files may carry one)."""
    rows = rows.remove_columns([c for c in rows.column_names if c in ("label", task.label_column, "idx")])
    return tokenize(rows, tokenizer, task, data_args.max_seq_length, data_args.overwrite_cache)


def run_grid(model_args, st_args, training_args, task, recipe, argv) -> dict:
    """The recipe's LR x dropout grid (--grid) and/or rescaled epochs (--sweep_epochs),
    each run exactly what its printed command runs, in its own directory."""
    epochs = parse_epochs(st_args.sweep_epochs) if st_args.sweep_epochs else None
    if epochs and recipe.schedule.kind != "dense":
        raise ConfigurationError(
            f"--sweep_epochs rescales a dense recipe, but recipe {recipe.name!r} is staged; "
            "add --recipe dense_transfer"
        )
    learning_rates = recipe.grid.learning_rate if st_args.grid else [training_args.learning_rate]
    dropouts = recipe.grid.dropout if st_args.grid else [model_args.dropout]
    root = training_args.output_dir
    base = without_flags(argv, {"grid", "sweep_epochs", "output_dir", "learning_rate", "dropout", "num_train_epochs"})
    results, commands, verdicts = {}, {}, {}
    for run in grid_runs(learning_rates, dropouts, epochs):
        run_dir = os.path.join(root, run.name)
        run_argv = base + as_argv({**run.overrides, "output_dir": run_dir})
        commands[run.name] = "accelerate launch -m sparse_transfer.transfer " + shlex.join(run_argv)
        finished = os.path.join(run_dir, RESULTS_NAME)
        if os.path.exists(finished) and not st_args.overwrite_output_dir:
            print(f"[grid] {run.name}: finished earlier, skipped")
        else:
            print(f"[grid] {run.name}: training")
            run_model_args, run_data_args, run_st_args, run_training_args, *_ = parse_arguments(run_argv)
            train_and_report(run_model_args, run_data_args, run_st_args, run_training_args, task, recipe)
        if os.path.exists(finished):
            run_results = json.loads(Path(finished).read_text())
            results[run.name] = run_results["best"][main_metric_key(task)]
            verdicts[run.name] = run_results.get("verdict", {}).get("verdict")
    if training_args.process_index != 0:
        return {}
    summary = summarize(results, main_metric_key(task), recipe.grid.top_k, commands, verdicts)
    write_json_atomic(os.path.join(root, "grid_summary.json"), summary)
    markdown = summary_markdown(summary, f"{task.name} / {recipe.name}: grid of {len(results)} runs")
    write_text_atomic(os.path.join(root, "grid_summary.md"), markdown)
    print(markdown)
    return summary


def main(argv: list[str] | None = None, prog: str = "run_glue.py") -> int:
    argv = sys.argv[1:] if argv is None else argv

    def run() -> None:
        model_args, data_args, st_args, training_args, task, recipe, arguments = parse_arguments(argv)
        check_hub(model_args, data_args, st_args, task)
        st_args.grid = st_args.grid or recipe.grid.enabled
        if st_args.grid or st_args.sweep_epochs:
            run_grid(model_args, st_args, training_args, task, recipe, arguments)
        else:
            train_and_report(model_args, data_args, st_args, training_args, task, recipe)

    return exit_status(prog, run)
