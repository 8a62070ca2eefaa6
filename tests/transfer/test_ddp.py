"""Two CPU processes (gloo) through 4 stages: ranks stay identical, unfrozen blocks sync."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


def _two_processes(worker: str, *args, port: int) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS / "upstream"), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               str(HERE / worker), *map(str, args)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_process_data_parallel_keeps_ranks_identical_and_masks_exact(tmp_path):
    _two_processes("ddp_worker.py", tmp_path, port=29533)
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


def test_two_process_upstream_obs_pruning_gives_every_rank_the_same_masks(tmp_path, tiny_dense_dir, small_corpus):
    _two_processes("ddp_upstream_worker.py", tiny_dense_dir, small_corpus, tmp_path, port=29534)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["violations"] == 0 for r in reports)
    assert reports[0]["sparsity"] == reports[1]["sparsity"] > 0.7
    masks0, masks1 = (torch.load(tmp_path / f"masks{r}.pt") for r in (0, 1))
    assert all(torch.equal(masks0[name], masks1[name]) for name in masks0)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(weight, rank1[name]) for name, weight in rank0.items())
