"""The tasks a run can build by name: each task module registers its class here. `Task("segmentation")` and
checkpoint files (which name their task) find the class through it."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from visionheads._registry import Registry

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask

_TASKS: Registry[type[RunnableTask]] = Registry("task", "list_tasks() shows all")
TaskType = TypeVar("TaskType", bound=type)


def register_task(cls: TaskType) -> TaskType:
    """Class decorator: make a Task subclass available as `Task(cls.name)`."""
    _TASKS.register(cls.name, cls)
    return cls


def task_class(name: str) -> type[RunnableTask]:
    """The Task subclass registered as `name`."""
    return _TASKS.get(name)


def list_tasks() -> list[str]:
    """Names of all tasks."""
    return _TASKS.names()
