"""GLUE: tasks, data loading (hub, original TSVs, CSV/JSON files) and metrics."""

from sparse_transfer.glue.metrics import glue_metrics
from sparse_transfer.glue.tasks import TASKS, GlueTask, get_task

__all__ = ["TASKS", "GlueTask", "get_task", "glue_metrics"]
