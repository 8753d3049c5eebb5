"""What fit leaves on disk and in the task: the best epoch, checkpoints that hold the epochs they claim, metrics.csv
as training goes, and a crashed fit that resumes to the very weights an uninterrupted one ends with."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import visionheads as vh
from visionheads.runtime.checkpoint import read_task_file

FIT = {"train": "digits:train[:256]", "val": "digits:val[:64]", "epochs": 4, "batch_size": 32, "lr": 3e-3}
FIT |= {"plots": False, "progress": False, "checkpoint_every": 0}  # every epoch's state saved, whatever its length
STEPS_PER_EPOCH = 256 // 32


class PowerCut(L.Callback):
    """Raises as epoch `epoch` (counted from 1) starts: the epochs before it are finished and saved."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            raise RuntimeError("power cut")


def _task() -> vh.Task:
    return vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)


def _csv_rows(path: Path) -> list[dict[str, float]]:
    with open(path) as file:
        return [{key: float(value) for key, value in row.items() if value} for row in csv.DictReader(file)]


def test_a_crashed_fit_resumes_where_it_stopped(capsys):
    with pytest.raises(RuntimeError, match="power cut"):
        _task().fit(**FIT, callbacks=[PowerCut(epoch=3)])
    (run,) = Path("runs/classification").iterdir()
    assert f"resume={str(run)!r}" in capsys.readouterr().err  # the crash says how to continue
    saved = torch.load(run / "last.ckpt", weights_only=True)  # plain data: loads without unpickling objects
    assert saved["global_step"] == 2 * STEPS_PER_EPOCH and saved["optimizer_states"]
    finished = _csv_rows(run / "metrics.csv")

    resumed = _task()
    history = resumed.fit(**FIT, resume=run)
    assert history.run_dir == run and list(Path("runs/classification").iterdir()) == [run]  # same folder
    assert [row["epoch"] for row in history.rows] == [1, 2, 3, 4]
    for kept, before in zip(history.rows[:2], finished, strict=True):  # the finished epochs are kept as they were
        assert kept == pytest.approx({key: value for key, value in before.items() if key != "step"})
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 4 * STEPS_PER_EPOCH
    # Continued, not restarted: the first resumed epoch starts from the trained weights.
    assert history.rows[2]["train_loss"] < history.rows[0]["train_loss"]
    assert [row["epoch"] for row in _csv_rows(run / "metrics.csv")] == [1, 2, 3, 4]
    assert resumed.evaluate("digits:test")["accuracy"] > 0.3  # 10 classes: chance is 0.1


def test_a_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one():
    # Shuffling, augmentation and dropout are drawn from (seed, epoch): resuming replays exactly what was lost.
    settings = FIT | {"val": False, "epochs": 3}
    uninterrupted = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16, dropout=0.3)
    uninterrupted.fit(**settings, name="whole")
    with pytest.raises(RuntimeError, match="power cut"):
        vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16, dropout=0.3).fit(
            **settings, name="cut", callbacks=[PowerCut(epoch=3)]
        )
    resumed = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16, dropout=0.3)
    resumed.fit(**settings, resume="runs/classification/cut")
    expected, got = uninterrupted.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    # Without validation, "best" is the last epoch, and best.pt says so.
    assert resumed.history.best_epoch == 3 and read_task_file("runs/classification/cut/best.pt").epoch == 3


def test_fit_keeps_the_best_epoch_and_the_files_hold_the_epochs_they_claim():
    task = _task()
    history = task.fit(**FIT | {"epochs": 5, "lr": 3e-2})
    run = history.run_dir
    monitored = history["val_accuracy"]
    best = 1 + max(range(len(monitored)), key=lambda i: (monitored[i], -i))  # the first epoch of the top value
    assert history.best_epoch == best and history.best["val_accuracy"] == max(monitored)
    assert read_task_file(run / "best.pt").epoch == best and read_task_file(run / "last.pt").epoch == 5
    final = task.state_dict()
    assert all(torch.equal(final[key], value) for key, value in read_task_file(run / "best.pt").state_dict.items())
    for name, epoch in (("best.pt", best), ("last.pt", 5)):  # each file's weights reproduce its epoch's val row
        row = history.rows[epoch - 1]
        metrics = vh.Task.load(run / name).evaluate(FIT["val"])
        assert metrics["accuracy"] == pytest.approx(row["val_accuracy"], abs=1e-6)
        assert metrics["loss"] == pytest.approx(row["val_loss"], rel=1e-5)


def test_every_checkpoint_of_a_run_loads_with_task_load_and_with_lightning(tmp_path):
    task = _task()
    history = task.fit(**FIT | {"epochs": 1})
    images = np.zeros((3, 16, 16), dtype=np.uint8)
    expected = np.stack([r["probs"] for r in task.predict(images)])
    for path in (history.run_dir / "last.ckpt", history.run_dir / "best.pt", task.save(tmp_path / "model.pt")):
        for loaded in (vh.Task.load(path), vh.TaskModule.load_from_checkpoint(path).task):
            assert loaded.config == task.config
            np.testing.assert_allclose(np.stack([r["probs"] for r in loaded.predict(images)]), expected, atol=1e-6)


def test_features_strategy_writes_the_same_run_folder_and_resumes():
    settings = FIT | {"strategy": "features", "epochs": 6, "lr": 5e-2}
    with pytest.raises(RuntimeError, match="power cut"):
        _task().fit(**settings, callbacks=[PowerCut(epoch=4)])
    (run,) = Path("runs/classification").iterdir()
    assert {"last.ckpt", "best.pt", "metrics.csv", "config.yaml"} <= {p.name for p in run.iterdir()}
    task = _task()
    body_before = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    history = task.fit(**settings, resume=run)
    assert [row["epoch"] for row in history.rows] == [1, 2, 3, 4, 5, 6]
    assert history.rows[-1]["train_loss"] < 0.95 * history.rows[0]["train_loss"]
    assert task.evaluate("digits:test")["accuracy"] > 0.3  # a linear head on a random body's features; chance 0.1
    assert [row["epoch"] for row in _csv_rows(run / "metrics.csv")] == [1, 2, 3, 4, 5, 6]
    assert read_task_file(run / "last.pt").epoch == 6 and read_task_file(run / "last.ckpt").epoch == 6
    assert all(torch.equal(v, task.backbone.state_dict()[k]) for k, v in body_before.items())  # the body is frozen


class SeeResumeFile(L.Callback):
    """Notes, as each epoch starts, whether last.ckpt exists yet."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seen.append((Path(trainer.default_root_dir) / "last.ckpt").is_file())


def test_short_epochs_save_the_training_state_at_most_every_interval_and_at_the_end():
    seen = SeeResumeFile()
    history = _task().fit(**FIT | {"checkpoint_every": 3600}, callbacks=[seen])
    assert seen.seen == [False, False, False, False]  # 4 sub-second epochs: no save before the interval ...
    assert read_task_file(history.run_dir / "last.ckpt").epoch == 4  # ... but always after the last epoch
    # (checkpoint_every=0 saves after every epoch: the crash tests above resume from the epoch before the crash)


class ReadMetricsFile(L.Callback):
    """Reads metrics.csv as each epoch starts, while the fit is still running."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        path = Path(trainer.default_root_dir) / "metrics.csv"
        self.seen.append([int(row["epoch"]) for row in _csv_rows(path)] if path.is_file() else [])


def test_metrics_file_holds_every_finished_epoch_while_training_runs(capsys):
    reader = ReadMetricsFile()
    _task().fit(**FIT, callbacks=[reader])
    assert reader.seen == [[], [1], [1, 2], [1, 2, 3]]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]  # one line per epoch, from 1


def test_resume_without_a_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(vh.ConfigError, match=r"no last.ckpt there; pass the run folder"):
        _task().fit(**FIT, resume=tmp_path)


def test_resume_into_a_different_model_is_a_config_error():
    with pytest.raises(RuntimeError, match="power cut"):
        _task().fit(**FIT, callbacks=[PowerCut(epoch=2)])
    (run,) = Path("runs/classification").iterdir()
    other = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16)
    with pytest.raises(vh.ConfigError, match="the run's task differs from this one \\(backbone: 'lenet5' in the run"):
        other.fit(**FIT, resume=run)


def test_a_run_saved_before_a_config_field_existed_still_resumes(tmp_path):
    with pytest.raises(RuntimeError, match="power cut"):
        _task().fit(**FIT, callbacks=[PowerCut(epoch=2)], project=tmp_path)
    (run,) = (tmp_path / "classification").iterdir()
    saved = torch.load(run / "last.ckpt", weights_only=True)
    del saved["hyper_parameters"]["standardize_images"]  # as a checkpoint from before the field was added
    torch.save(saved, run / "last.ckpt")
    history = _task().fit(**FIT, resume=run, project=tmp_path)  # the field at its default matches the old run
    assert [row["epoch"] for row in history.rows] == [1, 2, 3, 4]
    with pytest.raises(vh.ConfigError, match="standardize_images: False in the run, True now"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16, standardize_images=True).fit(
            **FIT, resume=run, project=tmp_path
        )
