"""visionheads: one backbone registry, interchangeable heads, six vision tasks on PyTorch Lightning."""

from visionheads import backbones, data
from visionheads.backbones import create_backbone, list_backbones
from visionheads.errors import ConfigError, DataError, TrainingError, VisionHeadsError
from visionheads.recipes import run_recipe
from visionheads.tasks import Evaluation, History, Task, list_tasks, task_class

__version__ = "0.1.0"


def list_heads(task: str | None = None) -> dict[str, list[str]] | list[str]:
    """Head names of `task`, or of every task as a dict when no task is named."""
    if task is not None:
        return sorted(task_class(task).heads)
    return {name: sorted(task_class(name).heads) for name in list_tasks()}


__all__ = [
    "ConfigError",
    "DataError",
    "Evaluation",
    "History",
    "Task",
    "TrainingError",
    "VisionHeadsError",
    "__version__",
    "backbones",
    "create_backbone",
    "data",
    "list_backbones",
    "list_heads",
    "list_tasks",
    "run_recipe",
]
