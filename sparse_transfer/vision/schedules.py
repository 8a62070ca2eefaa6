"""Vision's schedules over epochs. The AC/DC phase list: dense warm-up, alternating sparse/dense phases, a longer final
dense phase and a final sparse fine-tuning phase (AC/DC paper, section 3; AC/DC++
appendix B). The reference 100-epoch run is dense 0-9, sparse 10-14, dense 15-19, ...,
sparse 70-74, dense 75-84, sparse 85-99. And the training resolution of progressive
resizing (AC/DC++ with FFCV).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DENSE, SPARSE = "dense", "sparse"


@dataclass(frozen=True)
class Phase:
    kind: str  # DENSE or SPARSE
    start: int  # first epoch, inclusive
    end: int  # last epoch, inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def __str__(self) -> str:
        return f"{self.kind} {self.start}-{self.end}"


def acdc_phases(
    epochs: int = 100,
    warmup_fraction: float = 0.1,
    phase_length: int = 5,
    final_dense: int = 10,
    final_sparse: int = 15,
    scale: float = 1.0,
) -> list[Phase]:
    """Phases for `round(epochs * scale)` epochs.

    `scale` stretches the run for AC/DC++ (2.5x, 5x, 10x): the warm-up stays a fraction of
    the run and the final dense and sparse phases grow with it, while the alternating
    phases keep `phase_length` (AC/DC++ appendix D: 5 epochs stays near-optimal at 10x).
    The alternation starts and ends sparse; epochs that do not fill a whole pair of
    phases lengthen the final sparse phase, so the run always ends sparse."""
    total = round(epochs * scale)
    warmup = round(total * warmup_fraction)
    last_dense, last_sparse = round(final_dense * scale), round(final_sparse * scale)
    middle = total - warmup - last_dense - last_sparse
    if min(warmup, last_dense, phase_length) < 0 or last_sparse < 1 or middle < phase_length:
        raise ValueError(
            f"{total} epochs cannot hold warm-up {warmup}, one {phase_length}-epoch sparse phase, "
            f"final dense {last_dense} and final sparse {last_sparse}"
        )
    alternating = middle // phase_length
    if alternating % 2 == 0:  # keep an odd count: sparse ... sparse
        alternating -= 1
    last_sparse += middle - alternating * phase_length

    lengths = [(DENSE, warmup)]
    lengths += [(SPARSE if i % 2 == 0 else DENSE, phase_length) for i in range(alternating)]
    lengths += [(DENSE, last_dense), (SPARSE, last_sparse)]
    phases, start = [], 0
    for kind, length in lengths:
        if length == 0:
            continue
        if phases and phases[-1].kind == kind:  # a zero-length phase between two of a kind
            phases[-1] = Phase(kind, phases[-1].start, start + length - 1)
        else:
            phases.append(Phase(kind, start, start + length - 1))
        start += length
    return phases


def phase_at(phases: list[Phase], epoch: int) -> Phase:
    for phase in phases:
        if phase.start <= epoch <= phase.end:
            return phase
    raise ValueError(f"epoch {epoch} is outside the schedule {describe(phases)}")


def describe(phases: list[Phase]) -> str:
    return ", ".join(str(p) for p in phases)


def as_json(phases: list[Phase]) -> list[dict]:
    return [asdict(p) for p in phases]


def resolution_at(epoch: int, epochs: int, low: int, high: int, ramp_start: float, ramp_end: float, step: int) -> int:
    """Training resolution for progressive resizing: `low` before `ramp_start * epochs`,
    `high` from `ramp_end * epochs`, linear in between, rounded down to `step`."""
    start, end = ramp_start * epochs, ramp_end * epochs
    if epoch < start:
        return low
    if epoch >= end:
        return high
    size = low + (high - low) * (epoch - start) / (end - start)
    return int(size // step * step)
