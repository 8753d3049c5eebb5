"""class_weights= for classification and segmentation: SegNet's median-frequency balancing from the training
labels (computed once, kept in the config and checkpoint), given weights, what the loss does with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import visionheads as vh
from visionheads.data.balance import median_frequency_weights

FAST = {"batch_size": 8, "lr": 3e-3, "plots": False, "progress": False}


def _scenes(count: int, seed: int = 0, size: int = 16) -> list[dict]:
    """Grey noise, a bright 6x6 square (class 1) and a dark one-pixel column (class 2, the rare class)."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        image, mask = rng.normal(128, 25, size=(size, size, 3)), np.zeros((size, size), dtype=np.int64)
        y, x = rng.integers(0, size - 6, size=2)
        image[y : y + 6, x : x + 6], mask[y : y + 6, x : x + 6] = 220, 1
        column = int(rng.integers(0, size))
        image[:, column], mask[:, column] = 60, 2
        samples.append({"image": np.clip(image, 0, 255).astype(np.uint8), "mask": mask})
    return samples


def test_median_frequency_is_segnets_formula():
    # class 0 in both images (200 px of 200), class 1 only in the first (30 of its 100 px), class 2 nowhere
    counts, exposure = np.array([170.0, 30.0, 0.0]), np.array([200.0, 100.0, 0.0])
    frequency = np.array([170 / 200, 30 / 100])
    expected = np.median(frequency) / frequency
    np.testing.assert_allclose(median_frequency_weights(counts, exposure), [*expected, 1.0])


@pytest.mark.segmentation
def test_segmentation_resolves_median_frequency_from_the_training_masks_and_keeps_it(tmp_path):
    train = _scenes(12)
    train[0]["mask"][:2, :2] = 255  # void pixels count for no class
    masks = np.stack([s["mask"] for s in train])
    counts = np.array([(masks == k).sum() for k in range(3)], dtype=float)
    exposure = np.array([sum((m != 255).sum() for m in masks if (m == k).any()) for k in range(3)], dtype=float)
    task = vh.Task("segmentation", backbone="lenet5", image_size=16, num_classes=3, class_weights="median_frequency")
    task.fit(train, epochs=1, **FAST)
    weights = np.array(task.config.class_weights)
    np.testing.assert_allclose(weights, median_frequency_weights(counts, exposure), rtol=1e-5)
    assert weights[2] > weights[1] > weights[0]  # the one-pixel column is rarest
    loaded = vh.Task.load(task.save(tmp_path / "seg.pt"))
    assert loaded.config.class_weights == task.config.class_weights  # numbers now, not "median_frequency"

    scores = torch.randn(2, 3, 16, 16)
    target = torch.from_numpy(masks[:2])
    weight = torch.tensor(weights, dtype=torch.float32)
    expected = F.cross_entropy(scores, target, weight=weight, ignore_index=255)
    assert torch.allclose(task.losses(scores, {"mask": target})["cross_entropy"], expected)


@pytest.mark.segmentation
def test_median_frequency_makes_the_model_find_the_rare_class():
    test = _scenes(16, seed=1)
    found = {}
    for weights in (None, "median_frequency"):
        task = vh.Task("segmentation", backbone="simple_cnn", image_size=16, num_classes=3, class_weights=weights)
        task.fit(_scenes(32), epochs=6, **FAST)
        predicted = task.predict([s["image"] for s in test])
        recall = np.mean([np.mean(p[s["mask"] == 2] == 2) for p, s in zip(predicted, test, strict=True)])
        share = np.mean([np.mean(p == 2) for p in predicted])
        found[weights] = task.evaluate(test)["class_accuracy"], recall, share
    # unweighted, the one-pixel column (1/16 of the pixels) is never predicted: class accuracy about 0.6
    assert found["median_frequency"][0] > found[None][0] + 0.1, found
    assert found["median_frequency"][1] > 0.5 and found["median_frequency"][2] < 0.25, found  # found, not everywhere


@pytest.mark.classification
def test_classification_weights_from_label_counts_and_bad_values():
    images = np.random.default_rng(0).integers(0, 255, size=(20, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0] * 15 + [1] * 5)
    task = vh.Task("classification", backbone="lenet5", image_size=16, class_weights="median_frequency")
    task.fit((images, labels), epochs=1, **FAST)
    frequency = np.array([15 / 20, 5 / 20])
    np.testing.assert_allclose(task.config.class_weights, np.median(frequency) / frequency, rtol=1e-5)
    logits, target = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    weight = torch.tensor(task.config.class_weights, dtype=torch.float32)
    assert torch.allclose(task.losses(logits, {"label": target})["cross_entropy"],
                          F.cross_entropy(logits, target, weight=weight))  # fmt: skip
    with pytest.raises(vh.ConfigError, match="class_weights='median'; use None, 'median_frequency'"):
        vh.Task("classification", backbone="lenet5", class_weights="median")
    with pytest.raises(vh.ConfigError, match="3 class_weights for 2 classes"):
        vh.Task("classification", backbone="lenet5", image_size=16, class_weights=[1, 2, 3]).fit(
            (images, labels), epochs=1, **FAST
        )
