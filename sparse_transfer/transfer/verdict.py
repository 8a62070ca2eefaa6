"""Under- or over-training, read from a run's per-epoch eval loss and metric (the paper's
section 4: sparse models are undertrained by dense recipes and overfit when simply
trained longer). Every threshold is here, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VerdictThresholds:
    metric_rise: float = 0.002  # a last-epoch gain above this (0.2 points) is "still rising"
    loss_rise: float = 0.05  # eval loss this much above (relative) its value at the best epoch is "overfitting"


THRESHOLDS = VerdictThresholds()
# The advice follows what was measured (benchmarks/RESULTS.md): on the 90% MiniLM, training
# longer with the extended dense recipe beat gradual unfreezing on CoLA, STS-B and SST-2.
ADVICE = {
    "undertrained": "eval loss still falling and the metric still rising at the last epoch: train more epochs "
                    "(--num_train_epochs N, or --recipe extended_dense_transfer, the best measured recipe on a 90% "
                    "MiniLM)",
    "overfitting": "the best epoch is not the last and eval loss has risen since: the saved model is the best "
                   "epoch's; fewer epochs would give it sooner",
    "converged": "neither still improving nor overfitting at the last epoch",
    "undetermined": "one evaluated epoch shows no trend",
}


def loss_key(metric_key: str, metric: str) -> str:
    """The eval loss beside a metric: `eval_accuracy` -> `eval_loss`, `eval_matched_accuracy` -> `eval_matched_loss`."""
    return metric_key.removesuffix(metric) + "loss"


def training_verdict(rows: list[dict], metric_key: str, loss_key: str = "eval_loss",
                     thresholds: VerdictThresholds = THRESHOLDS) -> dict:
    """`rows`: one dict per evaluated epoch (epoch, metric, loss), in order; higher metric is better."""
    if len(rows) < 2:
        verdict, best = "undetermined", rows[0] if rows else None
    else:
        best = max(rows, key=lambda row: (row[metric_key], -row["epoch"]))  # earliest among ties
        last, previous = rows[-1], rows[-2]
        still_improving = (last[metric_key] - previous[metric_key] > thresholds.metric_rise
                           and last[loss_key] < previous[loss_key])
        if best is last and still_improving:
            verdict = "undertrained"
        elif best is not last and last[loss_key] > best[loss_key] * (1 + thresholds.loss_rise):
            verdict = "overfitting"
        else:
            verdict = "converged"
    return {"verdict": verdict, "advice": ADVICE[verdict], "best_epoch": best["epoch"] if best else None,
            "epochs": len(rows)}
