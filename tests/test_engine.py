"""The engine's device and precision policy (checked on CPU by pretending CUDA is there), callbacks and scoping."""

from __future__ import annotations

import logging
import warnings

import torch

from visionheads.engine import (
    EPOCH_LINE_VALUES,
    build_trainer,
    epoch_line,
    quiet_lightning,
    resolve_accelerator,
    resolve_precision,
)


def test_cpu_trains_in_float32():
    assert resolve_accelerator() == ("gpu" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_accelerator(devices="cpu") == "cpu" and resolve_accelerator("cpu", devices=2) == "cpu"


def test_gpu_gets_mixed_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_accelerator() == "gpu"
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"
    assert resolve_precision("32-true", "gpu") == "32-true"  # an explicit choice wins


def test_trainer_records_the_run_with_our_checkpoint_callback(tmp_path):
    trainer, record = build_trainer(run_dir=tmp_path, epochs=3, monitor="val_loss", mode="min", patience=2,
                                    progress=False)  # fmt: skip
    names = [type(c).__name__ for c in trainer.callbacks]
    assert "EarlyStopping" in names and "ModelCheckpoint" not in names
    assert trainer.checkpoint_callback is record  # Lightning runs it last: after the task's and early stopping's hooks
    assert names.index("EarlyStopping") < names.index("RunRecord")
    assert trainer.max_epochs == 3 and record.monitor == "val_loss" and record.print_lines


def test_epoch_line_keeps_long_rows_readable():
    row = {"epoch": 3, "train_loss": 0.5, **{f"val_iou_class{i}": i / 100 for i in range(30)}}
    line = epoch_line(row, 10, seconds=1.25)
    assert line.startswith("epoch 3/10  train_loss=0.5000  val_iou_class0=0.0000")
    assert line.count("=") == EPOCH_LINE_VALUES and line.endswith(f"(+{31 - EPOCH_LINE_VALUES} in metrics.csv)  (1.2s)")
    assert "(+" not in epoch_line({"epoch": 1, "train_loss": 0.5}, 1)


def test_quieting_lightning_is_scoped_to_the_block():
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = rank_zero.level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning():
            warnings.warn("Checkpoint directory x exists and is not empty.", UserWarning, stacklevel=1)
            assert rank_zero.level == logging.WARNING
        warnings.warn("Checkpoint directory x exists and is not empty.", UserWarning, stacklevel=1)
    assert len(caught) == 1 and rank_zero.level == level  # hidden inside the block only; nothing left changed
