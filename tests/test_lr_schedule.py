import pytest
import torch

from sparse_transfer.lr_schedule import rewinding_factor, rewinding_scheduler


def test_sawtooth_decays_linearly_and_rewinds_at_each_stage():
    factor = rewinding_factor([4, 4, 2])
    assert [factor(s) for s in range(10)] == [1, 0.75, 0.5, 0.25, 1, 0.75, 0.5, 0.25, 1, 0.5]
    assert factor(10) == 0.0  # past the end


def test_end_factor_and_per_stage_warmup():
    factor = rewinding_factor([5, 5], warmup_steps=2, end_factor=0.1)
    # warm-up 0, 1/2, then 1 -> 0.1 over the remaining 3 steps (0.1 reached one step past the end)
    assert [factor(s) for s in range(10)] == pytest.approx([0, 0.5, 1.0, 0.7, 0.4] * 2)


def test_scheduler_drives_the_optimizer_lr():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=3e-4)
    scheduler = rewinding_scheduler(optimizer, [2, 2])
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([3e-4, 1.5e-4, 3e-4, 1.5e-4])
