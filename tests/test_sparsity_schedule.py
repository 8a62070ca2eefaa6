import pytest

from sparse_transfer.sparsity_schedule import PruningSteps, cubic_sparsity


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
