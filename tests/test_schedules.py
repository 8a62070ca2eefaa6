import pytest
import torch

from sparse_transfer.schedules import (
    PruningSteps,
    cubic_sparsity,
    rewinding_factor,
    rewinding_scheduler,
)


def test_cubic_law_values():
    assert cubic_sparsity(0.0, 0.9) == 0.0
    assert cubic_sparsity(0.5, 0.8) == pytest.approx(0.7)
    assert cubic_sparsity(1.0, 0.9) == 0.9 and cubic_sparsity(1.5, 0.9) == 0.9


def test_cubic_law_from_a_one_shot_start():
    assert cubic_sparsity(0.0, 0.9, initial=0.7) == pytest.approx(0.7)
    assert cubic_sparsity(0.5, 0.9, initial=0.7) == pytest.approx(0.9 - 0.2 * 0.125)
    assert cubic_sparsity(-1.0, 0.9, initial=0.7) == pytest.approx(0.7)


def test_pruning_steps_and_lr_rewinding_intervals():
    steps = PruningSteps.cubic(total=1000, start=100, end=700, every=200, target=0.9)
    assert list(steps.targets) == [100, 300, 500, 700]
    assert [round(s, 4) for s in steps.targets.values()] == [0.0, round(0.9 * (1 - (2 / 3) ** 3), 4),
                                                            round(0.9 * (1 - (1 / 3) ** 3), 4), 0.9]
    assert steps.last == 700
    # before the first step, between steps, then the fixed-mask phase
    assert steps.interval_lengths() == [100, 200, 200, 200, 300]


def test_pruning_from_step_zero_drops_the_empty_first_interval():
    steps = PruningSteps.cubic(total=12, start=0, end=9, every=3, target=0.5)
    assert list(steps.targets) == [0, 3, 6, 9]
    assert steps.interval_lengths() == [3, 3, 3, 3]
    assert PruningSteps.cubic(total=10, start=0, end=7, every=3, target=0.5).interval_lengths() == [3, 3, 1, 3]


@pytest.mark.parametrize("start, end, every", [(5, 4, 1), (0, 11, 1), (0, 5, 0)])
def test_bad_schedules_are_refused(start, end, every):
    with pytest.raises(ValueError):
        PruningSteps.cubic(total=10, start=start, end=end, every=every, target=0.5)


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
