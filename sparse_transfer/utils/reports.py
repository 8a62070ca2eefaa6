"""Run reports: per-epoch and per-step rows from the Trainer's log history, the best and
final epochs, and plots in the style of the paper's Figures 11-12."""

from __future__ import annotations

from pathlib import Path


def epoch_rows(log_history: list[dict]) -> list[dict]:
    """One row per evaluated epoch: epoch, mean training loss over the epoch, stage, eval_*."""
    rows, losses, stage = [], [], None
    for entry in log_history:
        if "stage" in entry:
            stage = entry["stage"]
        if "loss" in entry:
            losses.append(entry["loss"])
        if any(key.startswith("eval_") and key.endswith("loss") for key in entry):
            row = {"epoch": int(round(entry["epoch"])), "train_loss": sum(losses) / len(losses) if losses else None,
                   "stage": stage}
            row.update({k: v for k, v in entry.items() if k.startswith("eval_") and not k.endswith(
                ("_runtime", "_samples_per_second", "_steps_per_second"))})
            rows.append(row)
            losses = []
    return rows


def best_and_final(rows: list[dict], metric_key: str, greater_is_better: bool = True) -> tuple[dict, dict]:
    """The best epoch (earliest among ties: early stopping) and the last one."""
    sign = 1 if greater_is_better else -1
    best = max(rows, key=lambda row: (sign * row[metric_key], -row["epoch"]))
    return best, rows[-1]


def plot_curves(curves: dict[str, list[dict]], metric_key: str, path: str | Path, title: str) -> Path:
    """Eval loss and main metric per epoch, one line per run (`curves`: label -> epoch rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, rows in curves.items():
        epochs = [row["epoch"] for row in rows]
        loss_key = next((k for k in rows[0] if k.startswith("eval_") and k.endswith("loss")), None) if rows else None
        if loss_key:
            loss_axis.plot(epochs, [row[loss_key] for row in rows], marker="o", label=label)
        metric_axis.plot(epochs, [row[metric_key] for row in rows], marker="o", label=label)
    loss_axis.set(xlabel="Epoch", ylabel="Evaluation loss")
    metric_axis.set(xlabel="Epoch", ylabel=metric_key.removeprefix("eval_"))
    figure.suptitle(title, fontsize=10)  # once over both: a long model name overflows a title per axis
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
    if len(curves) > 1:
        metric_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_run(rows: list[dict], metric_key: str, lr_per_step: list[float], out_dir: str | Path, title: str) -> list[Path]:
    """`eval_curves.png` (eval loss and main metric per epoch) and `lr_schedule.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    curves = plot_curves({title: rows}, metric_key, out_dir / "eval_curves.png", title)

    figure, axis = plt.subplots(figsize=(8, 3))
    axis.plot(range(1, len(lr_per_step) + 1), lr_per_step)
    axis.set(xlabel="Optimizer step", ylabel="Learning rate", title=f"{title}: learning rate")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    schedule = out_dir / "lr_schedule.png"
    figure.savefig(schedule, dpi=110)
    plt.close(figure)
    return [curves, schedule]


def step_rows(log_history: list[dict], columns: list[str]) -> list[dict]:
    """One row per training log entry (those with a `loss`): `step` and `columns`."""
    return [{"step": entry["step"], **{key: entry.get(key) for key in columns}}
            for entry in log_history if "loss" in entry]


def plot_steps(rows: list[dict], panels: dict[str, list[str]], path: str | Path, title: str) -> Path:
    """One panel per entry of `panels` (panel title -> columns), values against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    steps = [row["step"] for row in rows]
    for axis, (panel, columns) in zip(axes[0], panels.items()):
        for column in columns:
            axis.plot(steps, [row[column] for row in rows], label=column)
        axis.set(xlabel="Optimizer step", title=f"{title}: {panel}")
        if len(columns) > 1:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
