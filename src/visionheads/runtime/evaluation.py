"""One evaluation pass of a task over a source: Lightning's test loop on the GPU when there is one (or several
processes), with attacks when asked; its `Evaluation` comes back through the run module's `report`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionheads.data.catalog import Source
from visionheads.engine import RunData, build_evaluator, quiet_lightning
from visionheads.runtime.attacks import AttackSettings
from visionheads.runtime.loaders import data_loader
from visionheads.runtime.module import TaskModule
from visionheads.runtime.passes import Evaluation

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask


def evaluate_source(
    task: RunnableTask,
    source: Source,
    *,
    batch_size: int = 64,
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    distributed: str = "auto",
    precision: str | int = "auto",
    progress: bool | None = None,
    attack: AttackSettings | None = None,
    tta: bool = False,
) -> Evaluation:
    """The task's metrics on `source` (a Source the task has checked), and what they computed (see Task.evaluation)."""
    loader = data_loader(task, source, train=False, batch_size=batch_size, num_workers=0)
    trainer = build_evaluator(
        accelerator=accelerator, devices=devices, distributed=distributed, precision=precision, progress=progress
    )
    finished: list[Evaluation] = []
    module = TaskModule(task, test=source, attack=attack, tta=tta, report=finished.append)
    with quiet_lightning():
        trainer.test(module, datamodule=RunData(test=loader), verbose=False)
    (evaluation,) = finished
    return evaluation
