"""visionheads: one backbone registry, interchangeable heads, six vision tasks on PyTorch Lightning.

Names load on first use (PEP 562): `import visionheads` stays light, so the command line can answer `--help` and
`list` without importing torch, timm, Lightning or smp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from visionheads.errors import ConfigError, DataError, TrainingError, VisionHeadsError

if TYPE_CHECKING:
    from visionheads import backbones, data
    from visionheads.backbones import create_backbone, list_backbones
    from visionheads.deploy import load_exported
    from visionheads.recipes import run_recipe
    from visionheads.tasks import Evaluation, History, Task, TaskModule, TrainingPlan, list_tasks

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "create_backbone": "visionheads.backbones",
    "load_exported": "visionheads.deploy",
    "list_backbones": "visionheads.backbones",
    "run_recipe": "visionheads.recipes",
    "Evaluation": "visionheads.tasks",
    "History": "visionheads.tasks",
    "Task": "visionheads.tasks",
    "TaskModule": "visionheads.tasks",
    "TrainingPlan": "visionheads.tasks",
    "list_tasks": "visionheads.tasks",
    "task_class": "visionheads.tasks",
}


def __getattr__(name: str) -> Any:
    """Import a public name, or a submodule (`vh.data`, `vh.tasks`, ...), when it is first asked for."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise  # a submodule that exists but fails to import says why
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def list_heads(task: str | None = None) -> dict[str, list[str]]:
    """Head names per task: of every task, or of `task` alone (`list_heads("segmentation")["segmentation"]`)."""
    from visionheads.tasks import list_tasks, task_class

    names = list_tasks() if task is None else [task_class(task).name]
    return {name: sorted(task_class(name).heads) for name in names}


__all__ = [
    "ConfigError",
    "DataError",
    "Evaluation",
    "History",
    "Task",
    "TaskModule",
    "TrainingError",
    "TrainingPlan",
    "VisionHeadsError",
    "__version__",
    "backbones",
    "create_backbone",
    "data",
    "list_backbones",
    "list_heads",
    "list_tasks",
    "load_exported",
    "run_recipe",
]
