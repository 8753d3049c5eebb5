"""The engine's device and precision policy, checked on CPU by pretending CUDA is there."""

from __future__ import annotations

import torch

from visionheads.engine import build_trainer, resolve_accelerator, resolve_precision


def test_cpu_trains_in_float32():
    assert resolve_accelerator("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_accelerator("cpu") == "cpu"


def test_gpu_gets_mixed_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_accelerator("auto") == "gpu"
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"
    assert resolve_precision("32-true", "gpu") == "32-true"  # an explicit choice wins


def test_trainer_has_our_callbacks_and_no_lightning_checkpointing(tmp_path):
    trainer, saver = build_trainer(run_dir=tmp_path, epochs=3, monitor="val_loss", mode="min", patience=2,
                                   progress=False)  # fmt: skip
    names = [type(c).__name__ for c in trainer.callbacks]
    assert names.index("RecordHistory") < names.index("SaveBestAndLast")  # rows exist before saving
    assert "EarlyStopping" in names and "EpochSummary" in names and "ModelCheckpoint" not in names
    assert trainer.max_epochs == 3 and saver.monitor == "val_loss"


def test_epoch_line_keeps_long_rows_readable():
    from visionheads.engine import EPOCH_LINE_VALUES, epoch_line

    row = {"epoch": 2, "train_loss": 0.5, **{f"val_iou_class{i}": i / 100 for i in range(30)}}
    line = epoch_line(row, 10, seconds=1.25)
    assert line.startswith("epoch 3/10  train_loss=0.5000  val_iou_class0=0.0000")
    assert line.count("=") == EPOCH_LINE_VALUES and line.endswith(f"(+{31 - EPOCH_LINE_VALUES} in metrics.csv)  (1.2s)")
    assert "(+" not in epoch_line({"epoch": 0, "train_loss": 0.5}, 1)
