"""tta=True in predict and evaluate: outputs averaged over the task's views, each brought back to the image's frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import visionheads as vh


def _images(count: int, size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def test_classification_averages_the_logits_of_the_image_and_its_mirror():
    task = vh.Task("classification", backbone="lenet5", image_size=24, num_classes=4)
    images = _images(3)
    found = task.predict(images, tta=True)
    inputs = task.model_inputs(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.no_grad():
        logits = (task(inputs) + task(inputs.flip(-1))) / 2
    np.testing.assert_allclose(np.stack([r["probs"] for r in found]), logits.softmax(dim=1).numpy(), atol=1e-6)
    plain = task.predict(images)
    assert not np.allclose(np.stack([r["probs"] for r in plain]), logits.softmax(dim=1).numpy(), atol=1e-4)


def _threshold_samples(count: int, seed: int = 0) -> list[dict]:
    """Noise images whose mask marks the pixels with a bright red channel: masks of many shapes."""
    return [{"image": image, "mask": (image[:, :, 0] > 127).astype(np.int64)} for image in _images(count, 32, seed)]


def test_segmentation_with_tta_is_exactly_mirror_equivariant():
    # Averaged over an image and its mirror at each scale, the scores of a mirrored image are the mirrored scores
    task = vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=2, seed=0)
    task.fit(_threshold_samples(16), epochs=10, batch_size=8, lr=1e-2, plots=False, progress=False)
    images = _images(4, size=32, seed=1)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    with_tta = task.predict(images, tta=True)
    assert all(0 < mask.mean() < 1 for mask in with_tta)  # not one class everywhere, which would be trivially so
    for ours, theirs in zip(with_tta, task.predict(mirrored, tta=True), strict=True):
        np.testing.assert_array_equal(ours[:, ::-1], theirs)
    without = [a[:, ::-1] == b for a, b in zip(task.predict(images), task.predict(mirrored), strict=True)]
    assert not all(same.all() for same in without)  # the model alone is not


def test_evaluate_with_tta_scores_the_averaged_outputs():
    samples = _threshold_samples(4)
    task = vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=2)
    metrics = task.evaluate(samples, tta=True)
    predicted = task.predict([s["image"] for s in samples], tta=True)
    truth = np.stack([s["mask"] for s in samples])
    assert metrics["pixel_accuracy"] == pytest.approx(np.mean(np.stack(predicted) == truth), abs=1e-6)


def test_segmentation_views_rescale_only_where_training_zoomed():
    images = _images(2, size=32, seed=2)
    zoomed = vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=2, seed=0)
    fixed = vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=2, seed=0, augment=False).eval()
    assert sorted({scale for _, scale in zoomed.tta_views}) == [0.75, 1.0, 1.25]
    assert sorted(fixed.tta_views) == [(False, 1.0), (True, 1.0)]  # the image and its mirror only
    inputs = fixed.model_inputs(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.no_grad():
        scores = (fixed(inputs) + fixed(inputs.flip(-1)).flip(-1)) / 2
    found = fixed.predict(images, tta=True)
    np.testing.assert_array_equal(np.stack(found), scores.argmax(dim=1).numpy())


def test_tasks_without_views_refuse_tta():
    with pytest.raises(vh.ConfigError, match="tta=True is for classification and segmentation"):
        vh.Task("regression", backbone="lenet5").predict(_images(1, size=32), tta=True)


def test_the_command_line_evaluates_with_tta(tmp_path, capsys):
    from visionheads.cli import main

    task = vh.Task("classification", backbone="lenet5", image_size=16)
    task.fit("digits[:64]", epochs=1, batch_size=32, plots=False, progress=False)
    path = task.save(tmp_path / "digits.pt")
    assert main(["evaluate", str(path), "digits:test[:40]", "--tta"]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines() if len(line.split()) == 2)
    assert float(printed["accuracy"]) == pytest.approx(task.evaluate("digits:test[:40]", tta=True)["accuracy"])
