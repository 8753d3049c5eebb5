"""Faults in the middle of a fit lose nothing: a process killed (SIGKILL) while it writes a checkpoint leaves every
file it had finished as it was and resumes to the very weights of an uninterrupted fit; a full disk stops the fit
with one line that says what to do, the files saved before unchanged; a DDP process that dies stops the others at
once with a clear error, not after the process group's 30-minute timeout.

The processes are forked from the test's own (one `python` start with torch and Lightning costs ~15 s of imports on
a busy machine); a forked child ends with os._exit and never returns into pytest.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import visionheads as vh
from visionheads import engine
from visionheads.runtime.checkpoint import read_task_file

pytestmark = pytest.mark.usefixtures("one_thread")  # forked children and this process compute alike, bit for bit

TASK = {"backbone": "simple_cnn", "in_chans": 1, "image_size": 16, "dropout": 0.3}  # dropout: RNG state matters
FIT = {"train": "digits:train[:64]", "val": "digits:val[:32]", "batch_size": 32, "lr": 3e-3, "plots": False,
       "progress": False, "checkpoint_every": 0}  # fmt: skip


def _hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but the writer's temporary files (.NAME.XXXX.tmp)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))}  # fmt: skip


def _forked(child: Callable[[], object], log: Path) -> int:
    """Run `child()` in a forked process (its output to `log`); its pid. The child exits 0 when `child` returns,
    1 when it raises (the trace in `log`), and never runs pytest's code after the fork."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        out = open(log, "w", buffering=1)  # open until os._exit
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout = sys.stderr = out  # not pytest's capture, which the parent reads
        child()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _tail(log: Path) -> str:
    return log.read_text()[-3000:] if log.is_file() else "(no output)"


# ----- SIGKILL while a checkpoint is half written -------------------------------------------------------------------


class _Hold(L.Callback):
    """Holds the training thread as epoch `epoch` (from 1) starts, so that nothing else writes into the run folder
    while the checkpoint thread hashes it and kills the process (or for 60 s, if no kill comes)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            time.sleep(60)


def _die_halfway_through_save(number: int, record: Path) -> None:
    """From now on, this process's `number`-th write of last.ckpt hashes the run folder's files, writes half of the
    checkpoint into its temporary file, records hashes and temporary file in `record`, and SIGKILLs the process."""
    write_atomically = engine.write_atomically
    count = itertools.count(1)

    def faulty(path: Path, write: Callable[[Any], object], **options: Any) -> Path:
        if Path(path).name != engine.RESUME_CHECKPOINT or next(count) != number:
            return write_atomically(path, write, **options)
        hashes = _hashes(Path(path).parent)  # the complete files, before this write touches anything

        def half_then_die(file: Any) -> None:
            whole = io.BytesIO()
            write(whole)
            data = whole.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            temporary = os.readlink(f"/proc/self/fd/{file.fileno()}")
            record.write_text(json.dumps({"hashes": hashes, "temporary": temporary,
                                          "written": len(data) // 2, "size": len(data)}))  # fmt: skip
            os.kill(os.getpid(), signal.SIGKILL)

        return write_atomically(path, half_then_die, **options)

    engine.write_atomically = faulty  # in the forked child only


def test_a_fit_killed_while_writing_a_checkpoint_loses_nothing_and_resumes_to_the_uninterrupted_weights(tmp_path):
    whole = vh.Task("classification", **TASK)  # first: the child forked below starts with everything imported
    expected = whole.fit(**FIT, epochs=3, name="whole")
    record, log = tmp_path / "killed.json", tmp_path / "killed.log"

    def killed_fit() -> None:
        _die_halfway_through_save(2, record)  # epoch 2's last.ckpt (checkpoint_every=0: one per epoch)
        vh.Task("classification", **TASK).fit(**FIT, epochs=3, name="cut", callbacks=[_Hold(3)])

    _, status = os.waitpid(_forked(killed_fit, log), 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL, _tail(log)
    seen = json.loads(record.read_text())
    run = Path("runs/classification/cut").resolve()
    # Every file complete before the kill is there, byte for byte; none was replaced by a half-written one.
    assert {"config.yaml", "metrics.csv", "last.ckpt", "best.pt"} <= seen["hashes"].keys()
    assert _hashes(run) == seen["hashes"]
    # Killed mid-write: the temporary file beside last.ckpt holds half of epoch 2's checkpoint.
    temporary = Path(seen["temporary"])
    assert temporary.parent == run and temporary.name.startswith(".last.ckpt.")
    assert 0 < temporary.stat().st_size == seen["written"] < seen["size"]
    assert read_task_file(run / "last.ckpt").epoch == 1  # the last finished save

    resumed = vh.Task("classification", **TASK)
    history = resumed.fit(**FIT, epochs=3, resume=run)
    assert not list(run.glob(".*.tmp"))  # the resume deleted the half-written file
    # CPU, seeded, one thread: the resumed run is the uninterrupted one, to the last bit.
    assert history.rows == expected.rows and [row["epoch"] for row in history.rows] == [1, 2, 3]
    pairs = [(resumed.state_dict(), whole.state_dict())]  # the task's weights, then those of its files
    pairs += [(read_task_file(history.run_dir / name).state_dict, read_task_file(expected.run_dir / name).state_dict)
              for name in ("last.pt", "best.pt")]  # fmt: skip
    for mine, theirs in pairs:
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[key], theirs[key]) for key in mine)


# ----- a full disk --------------------------------------------------------------------------------------------------


class _FullDisk:
    """A file on a disk with `room` bytes left: writes beyond them raise ENOSPC (after writing what fits)."""

    def __init__(self, file: Any, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data: Any) -> int:
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exception: object) -> None:
        self.file.close()


def test_a_full_disk_stops_the_fit_with_one_line_and_keeps_what_was_saved(monkeypatch):
    run = Path("runs/classification/full")
    opened: list[str] = []  # the files written in the run folder, in order
    before: dict[str, str] = {}  # the run folder as the disk fills up
    fdopen = os.fdopen

    def filling_up(fd: int, *arguments: Any, **options: Any) -> Any:
        file = fdopen(fd, *arguments, **options)
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.parent != run.resolve():
            return file
        opened.append(path.name)
        if len(opened) <= 2:  # epoch 1's last.ckpt and best.pt are written whole
            return file
        if not before:
            before.update(_hashes(run))
        return _FullDisk(file, room=4096)

    monkeypatch.setattr(os, "fdopen", filling_up)
    with pytest.raises(vh.TrainingError) as raised:
        vh.Task("classification", **TASK).fit(**FIT, epochs=2, name="full")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("fit stopped: the disk is full, "), message
    assert any(f"{run / name} could not be written (No space left on device)" in message
               for name in ("last.ckpt", "best.pt", "last.pt")), message  # fmt: skip
    assert f"Free some space, then continue with fit(..., resume={str(run)!r})" in message
    shown = "".join(traceback.format_exception(raised.value))  # what an uncaught error prints
    assert "lightning" not in shown and "unexpected pos" not in shown, shown  # no trace from Lightning's thread
    # The files saved before are as they were; no partial file replaced one, and none is left beside them.
    assert {"config.yaml", "metrics.csv", "last.ckpt", "best.pt"} <= before.keys()
    assert _hashes(run) == before
    assert not list(run.glob(".*")) and read_task_file(run / "last.ckpt").epoch == 1
    # The disk filled as epoch 2's last.ckpt was written (into its temporary file), after epoch 1's two saves.
    assert [name.split(".")[1] for name in opened[:3]] == ["last", "best", "last"] and opened[2].endswith(".tmp")

    monkeypatch.setattr(os, "fdopen", fdopen)  # space freed: the run continues where it was saved
    history = vh.Task("classification", **TASK).fit(**FIT, epochs=2, resume=run)
    assert [row["epoch"] for row in history.rows] == [1, 2] and read_task_file(run / "last.ckpt").epoch == 2


# ----- a DDP process that dies --------------------------------------------------------------------------------------


class _DieAt(L.Callback):
    """Process `rank` ends at once (os._exit(1), as a crash or the OOM killer leaves it) as epoch `epoch`'s batch
    `batch` (both from 1) starts, after writing the time to `record`."""

    def __init__(self, rank: int, epoch: int, batch: int, record: Path) -> None:
        self.rank, self.epoch, self.batch, self.record = rank, epoch, batch, record

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, index: int) -> None:
        if (trainer.global_rank, trainer.current_epoch + 1, index + 1) == (self.rank, self.epoch, self.batch):
            self.record.write_text(str(time.time()))
            os._exit(1)


# 4 steps of 16 images per process and epoch; the death comes in epoch 2, after epoch 1 was saved.
DDP_FIT = FIT | {"train": "digits:train[:128]", "val": False, "epochs": 2, "batch_size": 16, "accelerator": "cpu",
                 "devices": 2, "distributed": "ddp", "name": "ddp"}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
@pytest.mark.parametrize("dying", [1, 0])
def test_when_a_ddp_process_dies_the_other_stops_at_once_with_a_clear_error(dying, tmp_path):
    # Two processes started as torchrun starts them (its environment; Lightning then launches nothing itself).
    port, died = _free_port(), tmp_path / "died"
    environment = {"TORCHELASTIC_RUN_ID": "faults", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0"}  # fmt: skip

    def rank(number: int) -> Callable[[], None]:
        def fit() -> None:
            os.environ.update(environment, RANK=str(number), LOCAL_RANK=str(number))
            try:
                vh.Task("classification", **TASK).fit(**DDP_FIT, callbacks=[_DieAt(dying, 2, 2, died)])
            except Exception as error:
                (tmp_path / f"error{number}.json").write_text(
                    json.dumps({"type": type(error).__name__, "message": str(error)})
                )
                raise

        return fit

    vh.Task("classification", **TASK).source(DDP_FIT["train"], fitting=True)  # imports, data: once, not per process
    logs = [tmp_path / f"rank{number}.log" for number in (0, 1)]
    pids = [_forked(rank(number), logs[number]) for number in (0, 1)]
    ended: dict[int, tuple[int, float]] = {}  # rank -> (exit code, when)
    deadline = time.time() + 120
    while len(ended) < 2 and time.time() < deadline:
        for number, pid in enumerate(pids):
            if number not in ended:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    ended[number] = (os.waitstatus_to_exitcode(status), time.time())
        time.sleep(0.02)
    for number, pid in enumerate(pids):
        if number not in ended:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    survivor = 1 - dying
    assert survivor in ended, f"rank {survivor} still ran 120 s on:\n{_tail(logs[survivor])}"
    assert ended[dying][0] == 1 and died.is_file(), _tail(logs[dying])
    stop = ended[survivor][1] - float(died.read_text())
    print(f"rank {dying} died; rank {survivor} stopped {stop:.2f} s later")
    assert stop < 30, stop  # gloo's own timeout would be 30 minutes
    error = json.loads((tmp_path / f"error{survivor}.json").read_text())
    assert error["type"] == "TrainingError" and "\n" not in error["message"], error
    assert error["message"].startswith("fit stopped: another of its 2 processes ended, so this one stops too ("), error
    assert "continue with fit(..., resume='runs/classification/ddp')" in error["message"], error
    assert read_task_file("runs/classification/ddp/last.ckpt").epoch == 1  # the epoch saved before the death is kept
