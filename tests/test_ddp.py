"""Two CPU processes (gloo) through 4 stages: ranks stay identical, unfrozen blocks sync."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent


def test_two_process_data_parallel_keeps_ranks_identical_and_masks_exact(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(TESTS / "ddp_worker.py"), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["world_size"] == 2
        assert report["violations"] == 0
        assert report["steps"] == 4 * 4  # 64 examples / (2 ranks x 8) = 4 steps per stage
        assert report["first_block_frozen_until_stage_2"] == [True]
        assert report["first_block_trained"]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name, weight in rank0.items():
        assert torch.equal(weight, rank1[name]), name
