"""Tasks: each bundles a head family with its data adapter, loss, metrics, decoding and plots."""

from visionheads.tasks import classification, regression, segmentation  # noqa: F401  (registers the tasks)
from visionheads.tasks.base import Task, list_tasks, register_task
from visionheads.tasks.history import History

__all__ = ["History", "Task", "list_tasks", "register_task"]
