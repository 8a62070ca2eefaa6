import pytest

from sparse_transfer.vision.schedules import (
    DENSE,
    SPARSE,
    Phase,
    acdc_phases,
    describe,
    phase_at,
)


def _check_contiguous(phases, total):
    assert phases[0].start == 0 and phases[-1].end == total - 1
    assert sum(p.length for p in phases) == total
    for before, after in zip(phases, phases[1:]):
        assert after.start == before.end + 1 and after.kind != before.kind
    assert phases[-1].kind == SPARSE


def test_reference_100_epoch_schedule():
    phases = acdc_phases()
    assert phases[:3] == [Phase(DENSE, 0, 9), Phase(SPARSE, 10, 14), Phase(DENSE, 15, 19)]
    assert phases[-3:] == [Phase(SPARSE, 70, 74), Phase(DENSE, 75, 84), Phase(SPARSE, 85, 99)]
    assert len(phases) == 16
    _check_contiguous(phases, 100)
    # the paper: an equal number of dense and sparse epochs
    assert sum(p.length for p in phases if p.kind == SPARSE) == 50


@pytest.mark.parametrize("scale, total", [(1, 100), (2.5, 250), (5, 500), (10, 1000)])
def test_scaled_schedules_add_up_and_end_sparse(scale, total):
    phases = acdc_phases(scale=scale)
    _check_contiguous(phases, total)
    assert phases[0] == Phase(DENSE, 0, round(total * 0.1) - 1)
    assert all(p.length == 5 for p in phases[1:-2])  # the alternation keeps 5 epochs
    assert phases[-2].length == round(10 * scale)
    assert phases[-1].length >= round(15 * scale)


def test_remainder_goes_to_the_final_sparse_phase():
    # 250 epochs: warm-up 25, final dense 25, final sparse 38 -> 162 middle epochs hold
    # 31 five-epoch phases; the 7 epochs left over lengthen the final sparse phase.
    phases = acdc_phases(scale=2.5)
    assert len(phases) == 1 + 31 + 2
    assert phases[-1] == Phase(SPARSE, 205, 249)


def test_short_schedule_and_lookup():
    phases = acdc_phases(12, warmup_fraction=0.1, phase_length=1, final_dense=1, final_sparse=2)
    assert describe(phases).startswith("dense 0-0, sparse 1-1, dense 2-2")
    assert phases[-1] == Phase(SPARSE, 9, 11)
    assert phase_at(phases, 10) == phases[-1]
    with pytest.raises(ValueError, match="outside"):
        phase_at(phases, 12)


def test_no_warmup_starts_sparse_and_impossible_schedules_are_refused():
    assert acdc_phases(6, warmup_fraction=0.0, phase_length=1, final_dense=1, final_sparse=1)[0] == Phase(SPARSE, 0, 0)
    with pytest.raises(ValueError, match="cannot hold"):
        acdc_phases(20)
