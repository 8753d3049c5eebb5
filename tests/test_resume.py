"""A crashed fit loses at most the epoch in flight: fit(resume=run_folder) carries on from last.ckpt."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

import visionheads as vh

FIT = {"train": "digits:train[:256]", "val": "digits:val[:64]", "epochs": 4, "batch_size": 32, "lr": 3e-3}
FIT |= {"plots": False, "progress": False}
STEPS_PER_EPOCH = 256 // 32


class PowerCut(L.Callback):
    """Raises at the end of one epoch, after the checkpoints of that epoch are written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("power cut")


def _task() -> vh.Task:
    return vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)


def test_a_crashed_fit_resumes_where_it_stopped(capsys):
    crashed = _task()
    with pytest.raises(RuntimeError, match="power cut"):
        crashed.fit(**FIT, callbacks=[PowerCut(epoch=1)])
    (run,) = Path("runs/classification").iterdir()
    assert f"resume={str(run)!r}" in capsys.readouterr().err  # the crash says how to continue
    saved = torch.load(run / "last.ckpt", weights_only=True)  # plain data: loads without unpickling objects
    assert saved["global_step"] == 2 * STEPS_PER_EPOCH and saved["optimizer_states"]

    resumed = _task()
    history = resumed.fit(**FIT, resume=run)
    assert history.run_dir == run and list(Path("runs/classification").iterdir()) == [run]  # same folder
    assert [row["epoch"] for row in history.rows] == [0, 1, 2, 3]
    assert history.rows[:2] == crashed.history_rows  # the finished epochs are kept as they were
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 4 * STEPS_PER_EPOCH
    # Continued, not restarted: the first resumed epoch starts from the trained weights.
    assert history.rows[2]["train_loss"] < history.rows[0]["train_loss"]
    with open(run / "metrics.csv") as file:
        epochs = [int(float(row["epoch"])) for row in csv.DictReader(file)]
    assert epochs == [0, 1, 2, 3]
    assert resumed.evaluate("digits:test")["accuracy"] > 0.3  # 10 classes: chance is 0.1


class ReadMetricsFile(L.Callback):
    """Reads metrics.csv as each epoch starts, while the fit is still running."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        path, rows = module.run_dir / "metrics.csv", []
        if path.is_file():
            with open(path) as file:
                rows = list(csv.DictReader(file))
        self.seen.append([int(float(row["epoch"])) for row in rows])


def test_metrics_file_holds_every_finished_epoch_while_training_runs():
    reader = ReadMetricsFile()
    _task().fit(**FIT, callbacks=[reader])
    assert reader.seen == [[], [0], [0, 1], [0, 1, 2]]


def test_resume_without_a_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(vh.ConfigError, match=r"no last.ckpt there; pass the run folder"):
        _task().fit(**FIT, resume=tmp_path)


def test_resume_into_a_different_model_is_a_config_error():
    with pytest.raises(RuntimeError, match="power cut"):
        _task().fit(**FIT, callbacks=[PowerCut(epoch=0)])
    (run,) = Path("runs/classification").iterdir()
    other = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16)
    with pytest.raises(vh.ConfigError, match="does not fit this task's model"):
        other.fit(**FIT, resume=run)
