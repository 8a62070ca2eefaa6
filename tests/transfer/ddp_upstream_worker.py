"""Run by test_ddp.py under `torch.distributed.run --nproc_per_node 2` (gloo, CPU): oBS upstream pruning."""

import json
import sys

import torch
from test_upstream import _recipe, _trainer

from sparse_transfer.utils.distributed import process_group_released

model_dir, corpus, out = sys.argv[1:4]
recipe = _recipe(criterion="obs", obs={"block_size": 8, "num_grads": 4, "grad_batch_size": 2})
trainer = _trainer(model_dir, corpus, out, recipe, max_steps=8, ddp_backend="gloo")
with process_group_released():  # or gloo may abort the finished process at exit
    trainer.train()
    rank = trainer.args.process_index
    torch.save({name: mask.cpu() for name, mask in trainer.masks.masks.items()}, f"{out}/masks{rank}.pt")
    torch.save({n: p.detach() for n, p in trainer.model.named_parameters()}, f"{out}/rank{rank}.pt")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"world_size": trainer.args.world_size, "violations": trainer.masks.verify(),
                   "sparsity": trainer.masks.mask_sparsity()}, f)
