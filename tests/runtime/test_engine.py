"""The engine's device and precision policy (checked on CPU by pretending CUDA is there), callbacks and scoping."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

import visionheads as vh
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


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """CUDA as Lightning sees it: available, two devices, bf16-capable (nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored after the test: Trainer sets it


def _gpu_trainer(tmp_path, **options):
    trainer, _ = build_trainer(run_dir=tmp_path, epochs=1, monitor="val_loss", mode="min", progress=False, **options)
    return trainer


def test_the_trainer_of_fit_on_gpus_uses_them_all_in_mixed_precision(two_fake_gpus, tmp_path):
    trainer = _gpu_trainer(tmp_path)
    assert isinstance(trainer.accelerator, CUDAAccelerator) and trainer.num_devices == 2
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.strategy.root_device == torch.device("cuda", 0)
    assert trainer.precision == "bf16-mixed" and torch.backends.cudnn.benchmark
    assert isinstance(trainer.precision_plugin, MixedPrecision) and trainer.precision_plugin.scaler is None


def test_fp16_on_gpus_scales_gradients_and_one_gpu_runs_without_ddp(two_fake_gpus, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # an older GPU
    trainer = _gpu_trainer(tmp_path, devices=1)
    assert trainer.precision == "16-mixed" and isinstance(trainer.precision_plugin.scaler, torch.amp.GradScaler)
    assert isinstance(trainer.strategy, SingleDeviceStrategy) and trainer.num_devices == 1


def test_varying_input_sizes_keep_cudnn_benchmark_off_and_the_cpu_stays_in_float32(two_fake_gpus, tmp_path):
    _gpu_trainer(tmp_path, fixed_input_size=False)
    assert not torch.backends.cudnn.benchmark
    cpu = _gpu_trainer(tmp_path, accelerator="cpu")
    assert isinstance(cpu.accelerator, CPUAccelerator) and cpu.precision == "32-true"


def test_a_checkpoint_saved_from_gpu_tensors_loads_on_a_machine_without_one(tmp_path, monkeypatch):
    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16, num_classes=3)
    with monkeypatch.context() as gpu:
        gpu.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")  # as torch.save tags GPU tensors
        path = task.save(tmp_path / "gpu.pt")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)  # the file does say cuda:0
    loaded = vh.Task.load(path)
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    assert all(torch.equal(a, b) for a, b in zip(task.state_dict().values(), loaded.state_dict().values(), strict=True))
