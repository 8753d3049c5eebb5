"""Fit a classifier in two processes (Lightning DDP over gloo, on the CPU), stop it after two of its four epochs,
resume it in two processes to the end, then evaluate the cases of ddp_metrics.py in the same two processes; the
first process writes what it saw as JSON.

    python tests/helpers/ddp_fit.py PROJECT OUT.json

Lightning starts the second process by running this script again (with LOCAL_RANK=1), so both processes go through
every step in turn. tests/runtime/test_distributed.py checks the run folder, compares with a single-process fit and with
single-process metrics. (One script for both saves starting two more processes, about 20 s.)
"""

from __future__ import annotations

import json
import sys

import lightning as L
import torch.distributed as dist
from ddp_metrics import cases

import visionheads as vh

# Two processes of 16 images per batch take the steps one process takes with batches of 32.
FIT = {"train": "digits:train[:384]", "val": "digits:val[:101]", "epochs": 4, "lr": 3e-3, "progress": False,
       "checkpoint_every": 0}  # fmt: skip
DDP = {"batch_size": 16, "accelerator": "cpu", "devices": 2, "distributed": "ddp"}
TASK = {"backbone": "lenet5", "in_chans": 1, "image_size": 16}


class StopAfter(L.Callback):
    """Ends the fit cleanly after epoch `epoch` (from 1), as a preempted job would leave it: saved, unfinished."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            trainer.should_stop = True


def main(project: str, out: str) -> None:
    first = vh.Task("classification", **TASK)
    cut = first.fit(**FIT, **DDP, project=project, name="ddp", callbacks=[StopAfter(2)])
    task = vh.Task("classification", **TASK)
    history = task.fit(**FIT, **DDP, project=project, resume=cut.run_dir)
    world_size = dist.get_world_size()  # the fit's process group, which Lightning keeps for the evaluations
    metrics = {name: case.evaluate(data, accelerator="cpu", devices=2, distributed="ddp", batch_size=8)
               for name, case, data in cases()}  # fmt: skip
    if dist.get_rank() == 0:
        record = {"cut_epochs": [row["epoch"] for row in cut.rows], "rows": history.rows,
                  "run_dir": str(history.run_dir), "world_size": world_size, "metrics": metrics}  # fmt: skip
        with open(out, "w") as file:
            json.dump(record, file)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
