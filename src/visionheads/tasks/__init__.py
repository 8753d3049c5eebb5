"""Task definitions: the shared `Task` (base.py), its config and models, and one module per task bundling a head
family with its data adapter, loss, metrics, decoding and figures. Importing the package registers them.

What runs a task (fit, evaluation passes, inference, checkpoints) is in `visionheads.runtime`.
"""

from visionheads.runtime.fitting import FitSettings
from visionheads.runtime.history import History
from visionheads.runtime.module import TaskModule, TrainingPlan
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import list_tasks, register_task, task_class
from visionheads.tasks import (  # noqa: F401  (they register themselves)
    autoencoder,
    classification,
    detection,
    regression,
    segmentation,
    siamese,
)
from visionheads.tasks.base import Task
from visionheads.tasks.config import TaskConfig

__all__ = [
    "Evaluation",
    "FitSettings",
    "History",
    "Task",
    "TaskConfig",
    "TaskModule",
    "TrainingPlan",
    "list_tasks",
    "register_task",
    "task_class",
]
