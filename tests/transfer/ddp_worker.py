"""Run by test_ddp.py under `torch.distributed.run --nproc_per_node 2` (gloo, CPU)."""

import json
import sys

import torch
from helpers import ToyDataset, tiny_sparse_bert
from transformers import TrainerCallback, TrainingArguments

from sparse_transfer import SparseTransferTrainer
from sparse_transfer.utils.distributed import process_group_released

out = sys.argv[1]
model = tiny_sparse_bert(num_layers=2)
first_block = {n: p.detach().clone() for n, p in model.named_parameters()
               if ".layer.0." in n and n.endswith(".weight") and "LayerNorm" not in n}
args = TrainingArguments(output_dir=out, per_device_train_batch_size=8, learning_rate=1e-3, weight_decay=0.01,
                         use_cpu=True, report_to="none", save_strategy="no", seed=0, disable_tqdm=True,
                         logging_steps=1, ddp_backend="gloo")
trainer = SparseTransferTrainer(model, args, train_dataset=ToyDataset(), recipe="gradual_unfreeze")
unchanged_before_stage3 = []


class Probe(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        if round(state.epoch) == 2:
            unchanged_before_stage3.append(all(torch.equal(model.get_parameter(n), p) for n, p in first_block.items()))


trainer.add_callback(Probe())
with process_group_released():  # or gloo may abort the finished process at exit
    trainer.train()
    rank = trainer.args.process_index
    torch.save({n: p.detach() for n, p in model.named_parameters()}, f"{out}/rank{rank}.pt")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"world_size": trainer.args.world_size, "violations": trainer.masks.verify(),
                   "steps": trainer.state.global_step, "first_block_frozen_until_stage_2": unchanged_before_stage3,
                   "first_block_trained": not any(torch.equal(model.get_parameter(n), p) for n, p in first_block.items())}, f)
