"""What fit leaves on disk and in the task: the best epoch, checkpoints that hold the epochs they claim, metrics.csv
as training goes, and a crashed fit that resumes to the very weights an uninterrupted one ends with."""

from __future__ import annotations

import csv
import gc
import weakref
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import visionheads as vh
from visionheads.cli import main
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


class SeeValidations(L.Callback):
    """Notes the epochs (from 1) after which a validation ran, the sanity check before training aside."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.epochs.append(trainer.current_epoch + 1)


def test_val_every_validates_every_nth_epoch_and_the_last_and_records_no_stale_values():
    seen = SeeValidations()
    history = _task().fit(**FIT | {"epochs": 5, "val_every": 2, "lr": 3e-2}, callbacks=[seen])
    assert seen.epochs == [2, 4, 5]  # 5 is no multiple of 2, yet the last epoch is validated
    assert [row["epoch"] for row in history.rows if "val_loss" in row] == [2, 4, 5]
    assert all("train_loss" in row for row in history.rows)
    file_rows = _csv_rows(history.run_dir / "metrics.csv")
    assert [row["epoch"] for row in file_rows if "val_loss" in row] == [2, 4, 5]  # empty cells, not repeats
    validated = {row["epoch"]: row["val_accuracy"] for row in history.rows if "val_accuracy" in row}
    assert history.best_epoch == max(validated, key=lambda epoch: (validated[epoch], -epoch))
    assert read_task_file(history.run_dir / "best.pt").epoch == history.best_epoch


def test_early_stopping_with_val_every_counts_validations_not_epochs():
    # Lightning keeps the previous validation's values between validations; checked after every epoch, the
    # unchanged value would end a patience of 1 on the first epoch without validation.
    history = _task().fit(**FIT | {"epochs": 8, "val_every": 2, "patience": 1, "lr": 3e-2})
    last = history.rows[-1]
    assert last["epoch"] % 2 == 0 and "val_loss" in last


class SeeAtEpochStart(L.Callback):
    """Notes what `look` returns as each training epoch starts."""

    def __init__(self, look: Callable[[], object]) -> None:
        self.look, self.seen = look, []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seen.append(self.look())


def test_training_keeps_the_objects_alive_before_it_out_of_garbage_collections_and_gives_them_back():
    seen = SeeAtEpochStart(gc.get_freeze_count)  # how many objects the garbage collector leaves alone
    before = gc.get_freeze_count()
    _task().fit(**FIT | {"epochs": 2}, callbacks=[seen])
    assert all(count > before + 10_000 for count in seen.seen)  # torch's and Lightning's objects, at least
    assert gc.get_freeze_count() == before


class Cycle:
    """An object that refers to itself: only Python's cyclic collector frees it."""

    def __init__(self) -> None:
        self.itself = self


def test_garbage_left_from_before_a_fit_is_freed_when_training_starts_not_kept_through_it():
    # Held until a full collection has moved it to the oldest generation, then dropped: garbage that only a full
    # collection frees, as an earlier fit's Trainer and module (and the model they hold) are.
    cycle = Cycle()
    gc.collect()
    ref = weakref.ref(cycle)
    seen = SeeAtEpochStart(lambda: ref() is not None)  # whether the object still exists
    del cycle
    _task().fit(**FIT | {"epochs": 1}, callbacks=[seen])
    assert seen.seen == [False]


def test_lightnings_check_val_every_n_epoch_points_to_val_every():
    with pytest.raises(vh.ConfigError, match="val_every=3"):
        _task().fit(**FIT, check_val_every_n_epoch=3)


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


def test_fits_racing_for_one_run_name_all_get_their_own_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from visionheads.engine import new_run_dir

    (tmp_path / "classification" / "same").mkdir(parents=True)  # an earlier run took the name
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(tmp_path, "classification", "same"), range(32)))
    assert len(set(folders)) == 32 and all(folder.is_dir() for folder in folders)
    assert {folder.name for folder in folders} == {f"same-{n}" for n in range(2, 34)}


# ----- weights files: every tensor fits, or a ConfigError that lists what does not ---------------------------------


class _PowerCut:
    """A Lightning callback raising as epoch `epoch` (from 1) starts: the epochs before it are finished and saved."""

    def __new__(cls, epoch: int):
        import lightning as L

        class PowerCut(L.Callback):
            def on_train_epoch_start(self, trainer, module):
                if trainer.current_epoch + 1 == epoch:
                    raise RuntimeError("power cut")

        return PowerCut()


def _hashes(folder):
    import hashlib

    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_a_refused_resume_leaves_the_run_folder_unchanged_hash_for_hash(tmp_path):
    fit = {"train": "digits:train[:64]", "val": "digits:val[:32]", "epochs": 3, "batch_size": 32,
           "project": tmp_path, "name": "cut", "plots": False, "progress": False, "checkpoint_every": 0}  # fmt: skip
    with pytest.raises(RuntimeError, match="power cut"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(**fit, callbacks=[_PowerCut(2)])
    run = tmp_path / "classification" / "cut"
    before = _hashes(run)
    assert {"last.ckpt", "metrics.csv", "config.yaml", "best.pt"} <= {p.name for p in before}

    def resume(task_arguments, reason, **changes):
        task = vh.Task(**{"name": "classification", "backbone": "lenet5", "in_chans": 1, "image_size": 16}
                       | task_arguments)  # fmt: skip
        with pytest.raises(vh.ConfigError, match=reason):
            task.fit(**fit | {"name": None, "resume": run} | changes)
        assert _hashes(run) == before and {p.name for p in (tmp_path / "classification").iterdir()} == {"cut"}

    resume({"backbone": "simple_cnn"}, r"the run's task differs from this one \(backbone: 'lenet5' in the run")
    resume({"name": "siamese"}, "a classification checkpoint, given to a siamese fit")
    resume({"image_size": 20}, r"image_size: 16 in the run, 20 now")
    resume({}, r"changes epochs=3 in the run, 5 now .*learning-rate schedule", epochs=5)
    resume({}, r"changes batch_size=32 in the run, 16 now", batch_size=16)
    resume({}, r"changes train='digits:train\[:64\]' in the run, 'digits:train\[:48\]' now", train="digits:train[:48]")
    checkpoint = run / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])  # a copy cut short by a full disk
    before = _hashes(run)
    resume({}, r"last.ckpt: not a readable visionheads checkpoint")


def test_resuming_a_finished_run_says_there_is_nothing_to_resume(tmp_path):
    fit = {"train": "digits:train[:64]", "val": False, "epochs": 1, "batch_size": 32, "project": tmp_path,
           "plots": False, "progress": False}  # fmt: skip
    run = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(**fit).run_dir
    with pytest.raises(vh.ConfigError, match=r"the run finished all its 1 epoch\(s\); there is nothing to resume"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(**fit, resume=run)


# ----- a fit that cannot go on: NaN loss, signals, and what is left on disk -----------------------------------------


_TINY_FIT = {"train": "digits:train[:64]", "val": "digits:val[:32]", "epochs": 3, "batch_size": 32,
             "plots": False, "progress": False, "checkpoint_every": 0}  # fmt: skip


class _AtEpoch:
    """A Lightning callback running `action(trainer)` as epoch `epoch` (from 1) starts."""

    def __new__(cls, epoch: int, action):
        import lightning as L

        class AtEpoch(L.Callback):
            def on_train_epoch_start(self, trainer, module):
                if trainer.current_epoch + 1 == epoch:
                    action(trainer)

        return AtEpoch()


def _poison_the_weights(trainer):  # as an overflow in the previous step would leave them
    for parameter in trainer.lightning_module.parameters():
        parameter.data.fill_(float("nan"))


def test_a_loss_that_turns_nan_stops_the_fit_naming_epoch_and_batch_and_keeps_the_last_good_checkpoint(tmp_path):
    import torch

    from visionheads.runtime.checkpoint import read_task_file

    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)
    with pytest.raises(vh.TrainingError, match=r"loss became (nan|inf) at epoch 2, batch 1; .*Lower lr"):
        task.fit(**_TINY_FIT, project=tmp_path, name="nan", callbacks=[_AtEpoch(2, _poison_the_weights)])
    saved = read_task_file(tmp_path / "classification" / "nan" / "last.ckpt")
    assert saved.epoch == 1 and all(torch.isfinite(v).all() for v in saved.state_dict.values() if v.is_floating_point())
    assert (tmp_path / "classification" / "nan" / "best.pt").is_file()


def test_a_fit_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    def fail(trainer):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(
            **_TINY_FIT, project=tmp_path, callbacks=[_AtEpoch(1, fail)]
        )
    with pytest.raises(vh.ConfigError, match="invalid training option"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(
            **_TINY_FIT, project=tmp_path, accelerator="abacus"
        )
    assert not any((tmp_path / "classification").iterdir())


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_and_sigterm_exit_130_and_143_with_the_resume_state_saved(signal_name, code, monkeypatch, capsys):
    import os
    import signal

    from visionheads.runtime import fitting
    from visionheads.runtime.checkpoint import read_task_file

    def send(trainer):
        os.kill(os.getpid(), getattr(signal, signal_name))

    build = fitting.build_trainer
    monkeypatch.setattr(fitting, "build_trainer", lambda **kw: build(**kw | {"callbacks": [_AtEpoch(3, send)]}))
    sigint = signal.getsignal(signal.SIGINT)
    try:
        arguments = [f"{key}={value}" for key, value in _TINY_FIT.items() if key != "progress"]
        command = ["fit", "classification", "backbone=lenet5", "in_chans=1", "image_size=16", "name=cut", *arguments]
        if signal_name == "SIGINT":
            assert main(command) == code
        else:
            with pytest.raises(SystemExit) as stop:
                main(command)
            assert stop.value.code == code
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores further Ctrl-C after a graceful shutdown
    assert "resume=runs/classification/cut" in capsys.readouterr().err
    assert read_task_file("runs/classification/cut/last.ckpt").epoch == 2


def test_every_number_of_steps_gives_a_one_cycle_schedule_that_runs_to_its_end():
    import torch

    from visionheads.runtime.module import one_cycle_warmup

    for steps in range(1, 60):  # 5 steps (160 images, batch 32, 1 epoch) divided by zero inside OneCycleLR
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=1e-3, total_steps=steps, pct_start=one_cycle_warmup(steps)
        )
        for _ in range(steps):
            optimizer.step()
            schedule.step()


def test_a_fit_of_exactly_five_steps_trains():
    history = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(
        "digits:train[:160]", val=False, epochs=1, batch_size=32, plots=False, progress=False
    )
    assert len(history.rows) == 1


def test_one_sample_batches_never_reach_training():
    import numpy as np

    images, labels = np.random.default_rng(0).integers(0, 255, (33, 32, 32, 1), dtype=np.uint8), np.arange(33) % 2
    task = vh.Task("classification", backbone="resnet18", in_chans=1, image_size=32)  # BatchNorm on 1x1 maps
    loader = task.data_loader((images, labels), train=True, batch_size=32)
    assert [len(batch["label"]) for batch in loader] == [32]  # the 33rd sample's batch of one is dropped
    with pytest.raises(vh.DataError, match="1 training sample; training needs at least 2"):
        task.fit((images[:1], labels[:1]), val=False, epochs=1)


def test_users_loggers_go_beside_the_run_folders_csv(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    task = vh.Task("classification", backbone="lenet5", image_size=16)
    quiet = {"epochs": 2, "batch_size": 64, "progress": False, "plots": False, "project": tmp_path / "runs"}
    history = task.fit("digits[:128]", logger=False, **quiet)  # a plain Trainer argument, not a TypeError
    assert (history.run_dir / "metrics.csv").is_file()
    theirs = CSVLogger(save_dir=str(tmp_path / "theirs"), name="", version="")
    history = task.fit("digits[:128]", logger=theirs, **quiet)
    ours = list(csv.DictReader((history.run_dir / "metrics.csv").open()))
    mirrored = list(csv.DictReader((tmp_path / "theirs" / "metrics.csv").open()))
    assert [row["epoch"] for row in mirrored] == [row["epoch"] for row in ours] == ["1", "2"]
    assert mirrored[-1]["train_loss"] == ours[-1]["train_loss"]
    with pytest.raises(vh.ConfigError, match=r"logger='neptune': give one of \('csv', 'tensorboard', 'mlflow', "):
        task.fit("digits[:128]", logger="neptune", **quiet)
