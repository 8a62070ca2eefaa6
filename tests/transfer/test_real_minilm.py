"""The real MiniLM pruned to 90% trains on real RTE examples with exact zeros."""

import csv

import pytest
import torch
from helpers import GLUE_DIR
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainerCallback,
    TrainingArguments,
)

from sparse_transfer import SparseTransferTrainer

pytestmark = pytest.mark.slow


def read_rte(n):
    path = GLUE_DIR / "RTE" / "train.tsv"
    if not path.exists():
        pytest.skip(f"{path} is missing (../shared/data beside the project)")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    return rows


class StopAfter(TrainerCallback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.epoch >= self.epochs


def test_minilm_90_trains_two_stages_on_real_rte_with_zero_violations(minilm_90, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_90)
    rows = read_rte(256)
    encoded = tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], truncation=True,
                        max_length=64)  # short sequences keep the suite fast; the logic is the same
    dataset = [{"input_ids": ids, "attention_mask": am, "token_type_ids": tt, "labels": int(r["label"] != "entailment")}
               for ids, am, tt, r in zip(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"], rows)]
    model = AutoModelForSequenceClassification.from_pretrained(minilm_90, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=32, learning_rate=1e-4,
                             use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=4)
    trainer = SparseTransferTrainer(model, args, train_dataset=dataset, recipe="gradual_unfreeze",
                                    data_collator=DataCollatorWithPadding(tokenizer), callbacks=[StopAfter(2)])
    assert trainer.plan.total_epochs == 8  # 1 + 6 + 1
    last_block_before = model.bert.encoder.layer[5].output.dense.weight.detach().clone()
    trainer.train()
    assert trainer.state.global_step == 16
    assert trainer.masks.verify() == 0
    assert trainer.masks.mask_sparsity() == pytest.approx(0.9, abs=1e-7)
    assert not torch.equal(model.bert.encoder.layer[5].output.dense.weight, last_block_before)  # stage 1 trained it
    assert trainer.current_stage is None  # training ended cleanly
