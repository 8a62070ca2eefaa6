"""Grid search as in the paper: LR x dropout (x epochs for the rescaled-recipe sweep),
each run in its own directory, summarised by the mean of the top-k runs."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field

from sparse_transfer.utils.arguments import int_list
from sparse_transfer.utils.errors import ConfigurationError
from sparse_transfer.utils.io import markdown_table


@dataclass(frozen=True)
class GridRun:
    name: str
    overrides: dict = field(hash=False)  # learning_rate, dropout, num_train_epochs


def grid_runs(
    learning_rates: list[float], dropouts: list[float | None], epochs: list[int] | None = None
) -> list[GridRun]:
    """One run per combination, named by it (`epochs3_lr0.0001_dropout0.1`); a None
    dropout keeps the model's own and is left out of the name."""
    runs = []
    for n_epochs, lr, dropout in itertools.product(epochs or [None], learning_rates, dropouts):
        overrides = {"num_train_epochs": n_epochs, "learning_rate": lr, "dropout": dropout}
        overrides = {key: value for key, value in overrides.items() if value is not None}
        short = {"num_train_epochs": "epochs", "learning_rate": "lr", "dropout": "dropout"}
        name = "_".join(f"{short[key]}{value:g}" for key, value in overrides.items())
        runs.append(GridRun(name, overrides))
    return runs


def parse_epochs(text: str) -> list[int]:
    """`1-7` or `2,3,5` -> a list of epoch counts."""
    values = int_list(text)
    if not values or min(values) < 1:
        raise ConfigurationError(f"--sweep_epochs {text!r} is not a range like 1-7 or a list like 2,3,5 of epochs >= 1")
    return values


def summarize(results: dict[str, float], metric: str, top_k: int = 2, commands: dict[str, str] | None = None,
              verdicts: dict[str, str | None] | None = None) -> dict:
    """Every run's main metric (and training verdict), the best run, and mean / std of the `top_k` best."""
    ranked = sorted(results.items(), key=lambda item: -item[1])
    top = [value for _, value in ranked[:top_k]]
    return {
        "metric": metric,
        "runs": {name: {"value": value, "verdict": (verdicts or {}).get(name), "command": (commands or {}).get(name)}
                 for name, value in results.items()},
        "best_run": ranked[0][0] if ranked else None,
        "best_value": ranked[0][1] if ranked else None,
        "top_k": top_k,
        "top_k_runs": [name for name, _ in ranked[:top_k]],
        "top_k_mean": statistics.mean(top) if top else None,
        "top_k_std": statistics.pstdev(top) if top else None,
    }


def summary_markdown(summary: dict, title: str) -> str:
    rows = [[name, entry["value"], "yes" if name in summary["top_k_runs"] else "", entry.get("verdict") or "",
             f"`{entry['command']}`"]
            for name, entry in sorted(summary["runs"].items(), key=lambda item: -item[1]["value"])]
    text = f"# {title}\n\n" + markdown_table(
        ["run", summary["metric"], f"top {summary['top_k']}", "verdict", "command"], rows)
    text += (f"\nBest: {summary['best_run']} ({summary['best_value']:.4f}). "
             f"Mean of the {summary['top_k']} best: {summary['top_k_mean']:.4f} "
             f"± {summary['top_k_std']:.4f} (population std).\n")
    return text
