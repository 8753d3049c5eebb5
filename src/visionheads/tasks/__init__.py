"""Tasks: each bundles a head family with its data adapter, loss, metrics, decoding and figures.

Importing the package registers the built-in tasks.
"""

from visionheads.tasks import (  # noqa: F401  (they register themselves)
    autoencoder,
    classification,
    detection,
    regression,
    segmentation,
    siamese,
)
from visionheads.tasks.base import Evaluation, Task, list_tasks, register_task, task_class
from visionheads.tasks.config import TaskConfig
from visionheads.tasks.fitting import FitSettings
from visionheads.tasks.history import History

__all__ = ["Evaluation", "FitSettings", "History", "Task", "TaskConfig", "list_tasks", "register_task", "task_class"]
