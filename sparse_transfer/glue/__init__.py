"""GLUE: tasks, data loading (hub, original TSVs, CSV/JSON files) and metrics."""

from .metrics import glue_metrics
from .tasks import TASKS, GlueTask, get_task

__all__ = ["TASKS", "GlueTask", "get_task", "glue_metrics"]
