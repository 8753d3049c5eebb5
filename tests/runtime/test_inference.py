"""Fast inference: predict reads folders batch by batch, runs channels-last and, with compile=True, a compiled model
kept by the task; its results equal plain eager ones. Speed is measured in bench/run.py, not here."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import visionheads as vh
from visionheads.engine import default_workers
from visionheads.runtime import inference
from visionheads.runtime.inference import image_batches


def _task() -> vh.Task:
    torch.manual_seed(0)
    return vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16, num_classes=10)


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 16, 16, 1), dtype=np.uint8)


def _probabilities(results: list[dict]) -> np.ndarray:
    return np.stack([result["probs"] for result in results])


def test_a_folder_is_read_one_batch_at_a_time_and_predicted_as_its_arrays(tmp_path, monkeypatch):
    images = _images(10)
    for index, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(tmp_path / f"{index:02d}.png")
    task = _task()
    read = []
    monkeypatch.setattr(
        inference, "read_image", lambda path, channels: read.append(path) or np.asarray(Image.open(path))[..., None]
    )
    batches = image_batches(task, tmp_path, batch_size=4)
    first, _ = next(batches)
    assert len(first["image"]) == 4 and len(read) == 4  # the other six are not read yet
    from_files = task.predict(tmp_path, batch_size=4)
    np.testing.assert_allclose(_probabilities(from_files), _probabilities(task.predict(images)), atol=1e-6)


def test_compiled_prediction_equals_eager_and_the_compiled_model_is_kept(tmp_path):
    task, images = _task(), _images(16)
    eager = _probabilities(task.predict(images, batch_size=8))
    compiled = _probabilities(task.predict(images, batch_size=8, compile=True))
    np.testing.assert_allclose(compiled, eager, atol=1e-5)
    (model, kept) = inference._COMPILED[task]["inductor"]
    task.predict(images[:8], compile=True)
    assert inference._COMPILED[task]["inductor"][1] is kept and model is task.model  # compiled once per task
    # Afterwards the task is as before: the same state_dict keys, the default layout that training keeps.
    assert all(not key.startswith("model._orig_mod") for key in task.state_dict())
    assert task.backbone(torch.zeros(1, 1, 16, 16))[0].is_contiguous()
    assert all(p.is_contiguous() and not p.is_inference() for p in task.parameters())  # still trainable


def test_evaluate_runs_channels_last_and_gives_the_model_back_trainable():
    task = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=3)
    seen = []
    task.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    images = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    task.evaluate((images, np.arange(12) % 3))
    assert seen and not any(seen)  # channels-last 4-D batches of 3 channels are not contiguous in the default sense
    assert all(p.is_contiguous() and not p.is_inference() for p in task.parameters())  # still trainable


def test_fit_with_channels_last_trains_in_that_layout_and_gives_the_default_one_back(tmp_path):
    task = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=3, seed=0)
    seen = []  # (training?, the batch in channels-last layout?, the first conv's weight too?)
    conv = next(m for m in task.modules() if isinstance(m, torch.nn.Conv2d))
    task.backbone.register_forward_pre_hook(
        lambda module, args: seen.append(
            (
                task.model.training,
                args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous(),
                conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous(),
            )
        )
    )
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 3
    images = (rng.normal(60, 10, (24, 16, 16, 3)) + 60 * labels[:, None, None, None]).clip(0, 255).astype(np.uint8)
    history = task.fit((images, labels), (images[:6], labels[:6]), epochs=6, batch_size=8, lr=1e-2,
                       channels_last=True, plots=False, progress=False, project=tmp_path)  # fmt: skip
    assert {training for training, _, _ in seen} == {True, False}  # training and validation batches were seen
    assert all(batch and weight for _, batch, weight in seen)
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert all(p.is_contiguous() and not p.is_inference() for p in task.parameters())  # the default layout again
    with pytest.raises(vh.ConfigError, match="channels_last must be True or False"):
        task.fit((images, labels), False, epochs=1, channels_last="yes", project=tmp_path)


def test_workers_follow_the_cores_where_a_gpu_computes(monkeypatch):
    assert default_workers() == 0 or torch.cuda.is_available()  # on the CPU, workers would compete for its cores
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for cores, workers in ((2, 1), (8, 7), (64, 8)):
        monkeypatch.setattr(os, "cpu_count", lambda c=cores: c)
        assert default_workers() == workers


def test_predict_takes_only_images_or_folders_of_them(tmp_path):
    with pytest.raises(vh.DataError, match="no image files"):
        _task().predict(tmp_path)


def test_predict_shows_progress_on_a_terminal_or_when_asked_and_is_quiet_when_piped_or_told(capsys, monkeypatch):
    task = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=3)
    images = np.zeros((12, 16, 16, 3), dtype=np.uint8)  # three batches of 4
    task.predict(images, batch_size=4)  # stderr is captured here, not a terminal: quiet
    assert capsys.readouterr().err == ""
    task.predict(images, batch_size=4, progress=True)
    bar = capsys.readouterr().err
    assert "predict" in bar and "3/3" in bar
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    task.predict(images, batch_size=4, progress=False)
    assert capsys.readouterr().err == ""
