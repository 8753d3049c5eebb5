"""Photos keep their shape: a (height, width) image size, random training crops, and evaluation at each image's own
size against its labels as they are (never labels resized to the model's input), also for sizes that the body's
stride does not divide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import visionheads as vh
from visionheads.data.catalog import Source
from visionheads.tasks.segmentation import IGNORE_INDEX

pytestmark = pytest.mark.segmentation

FAST = {"batch_size": 8, "lr": 3e-3, "plots": False, "progress": False}


def _scenes(count: int, height: int, width: int, seed: int = 0) -> list[dict]:
    """Grey noise with a bright 1-pixel-thin line (class 1) and a dark block (class 2); the line would blur away
    in a resized label."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        image = rng.normal(120, 15, size=(height, width, 3))
        mask = np.zeros((height, width), dtype=np.int64)
        row = int(rng.integers(2, height - 2))
        image[row], mask[row] = 240, 1
        y, x = int(rng.integers(0, height - 10)), int(rng.integers(0, width - 12))
        image[y : y + 10, x : x + 12], mask[y : y + 10, x : x + 12] = 10, 2
        mask[0, :3] = IGNORE_INDEX
        samples.append({"image": np.clip(image, 0, 255).astype(np.uint8), "mask": mask})
    return samples


def test_image_size_takes_height_and_width_and_a_checkpoint_keeps_them(tmp_path):
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=[36, 48], crop_size=[32, 40])
    assert task.config.image_size == (36, 48) and task.config.crop_size == (32, 40)
    assert vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=(40, 40)).config.image_size == 40
    loaded = vh.Task.load(task.save(tmp_path / "seg.pt"))
    assert loaded.config.image_size == (36, 48) and loaded.config.crop_size == (32, 40)
    assert loaded.config.arguments()["image_size"] == [36, 48]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": (36, 0)}, r"image_size\[1\] must be a whole number >= 1, got 0"),
        ({"image_size": (36, 48, 3)}, r"image_size is a side or \(height, width\), got \[36, 48, 3\]"),
        ({"image_size": "big"}, "image_size must be a whole number"),
        ({"image_size": (4, 64)}, r"image_size=\[4, 64\] is below what backbone 'simple_cnn' accepts"),
        ({"crop_size": (32,)}, r"crop_size is a side or \(height, width\), got \[32\]"),
        ({"scale_range": (1.5, 0.75)}, r"scale_range=\(1.5, 0.75\); give \[low, high\] with 0 < low <= high"),
    ],
)
def test_bad_sizes_are_config_errors_that_name_the_field(options, message):
    with pytest.raises(vh.ConfigError, match=message):
        vh.Task("segmentation", backbone="simple_cnn", num_classes=3, **({"image_size": 32} | options))


def test_the_autoencoder_asks_for_one_side():
    with pytest.raises(vh.ConfigError, match="decoder draws square images; pass one side"):
        vh.Task("autoencoder", backbone="simple_cnn", image_size=(32, 48))


def test_training_crops_have_the_crop_size_and_pad_with_ignored_labels():
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=(30, 40), crop_size=(24, 48))
    source = Source(_scenes(1, 30, 40), "scenes")
    pipeline = task.train_transform(source)
    for seed in range(5):
        pipeline.set_random_seed(seed)
        sample = task.to_tensors(pipeline, _scenes(1, 30, 40, seed=seed)[0], "scenes[0]")
        assert sample["image"].shape == (3, 24, 48) and sample["mask"].shape == (24, 48)
        # 40 px resized wide, 48 cropped: the 8 columns padded in are labelled "ignore", never a class
        assert (sample["mask"] == IGNORE_INDEX).sum() >= 24 * 8


def test_scale_range_zooms_training_images_and_what_a_zoom_out_brings_in_is_ignored():
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=(30, 40), scale_range=(0.5, 0.5))
    pipeline = task.train_transform(Source(_scenes(1, 30, 40), "scenes"))
    ignored = []
    for seed in range(6):
        pipeline.set_random_seed(seed)
        mask = task.to_tensors(pipeline, _scenes(1, 30, 40, seed=seed)[0], "scenes[0]")["mask"]
        ignored.append(float((mask == IGNORE_INDEX).float().mean()))
    # at half size three quarters of the frame come from outside (when the affine step runs: 80 % of draws)
    assert max(ignored) > 0.6 and sorted(ignored)[len(ignored) // 2] > 0.6


def test_without_augment_training_takes_crops_and_flips_of_the_pixels_as_they_are():
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=(30, 40), crop_size=(24, 32),
                   scale_range=(0.5, 0.5), augment=False)  # fmt: skip
    pipeline = task.train_transform(Source(_scenes(1, 30, 40), "scenes"))
    mirrored = 0
    for seed in range(8):
        pipeline.set_random_seed(seed)
        scene = _scenes(1, 30, 40, seed=seed)[0]
        sample = task.to_tensors(pipeline, scene, "scenes[0]")
        pixels = sample["image"].numpy()  # uint8 (3, H, W): no zoom, shift or colour change allowed
        windows = [
            (flip, top, left)
            for top in range(30 - 24 + 1)
            for left in range(40 - 32 + 1)
            for flip in (False, True)
            if np.array_equal(_window(scene["mask"], top, left, flip), sample["mask"].numpy())
            and np.array_equal(_window(scene["image"], top, left, flip).transpose(2, 0, 1), pixels)
        ]
        assert windows, f"seed {seed}: the training sample is no crop of the scene"
        mirrored += windows[0][0]
    assert 0 < mirrored < 8  # flips still happen, on some draws


def _window(array: np.ndarray, top: int, left: int, flip: bool) -> np.ndarray:
    window = array[top : top + 24, left : left + 32]
    return window[:, ::-1] if flip else window


def test_sizes_the_stride_does_not_divide_are_padded_with_mirrored_pixels_and_cropped_back():
    # simple_cnn's deepest stride is 16: 45x61 is scored as its mirror-padded 48x64, so that every decoder block
    # meets its skip map at exactly twice its own size (upsampling a 12-row map to 23 rows would misplace cells)
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=(45, 61)).eval()
    assert task.backbone.strides[-1] == 16
    images = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        scores = task.forward(images)
        by_hand = task.model(torch.nn.functional.pad(images, (0, 3, 0, 3), mode="reflect"))[..., :45, :61]
        divisible = torch.randn(2, 3, 48, 64)
        assert torch.equal(task.forward(divisible), task.model(divisible))  # nothing padded where nothing is needed
    assert scores.shape == (2, 3, 45, 61)
    torch.testing.assert_close(scores, by_hand)
    with torch.no_grad():  # a pad as large as the image cannot mirror it: its edge pixels are repeated instead
        assert task.forward(torch.randn(1, 3, 3, 5)).shape == (1, 3, 3, 5)


def test_evaluation_scores_each_image_at_its_own_size_against_its_labels_as_they_are():
    # Sizes the body's stride (8) does not divide, several in one batch, none at the model's input size.
    train = _scenes(48, 36, 48, seed=0)
    val = _scenes(3, 45, 61, seed=1) + _scenes(3, 38, 50, seed=2) + _scenes(2, 36, 48, seed=3)
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=(36, 48), crop_size=(32, 40))
    history = task.fit(train, val, epochs=6, **FAST)
    assert history["train_loss"][-1] < 0.6 * history["train_loss"][0]
    metrics = task.evaluate(val, batch_size=8)  # one batch holding all three sizes
    predicted = task.predict([sample["image"] for sample in val])
    assert [mask.shape for mask in predicted] == [sample["mask"].shape for sample in val]
    # The same figures by hand from the predicted masks and the untouched labels: every labelled pixel counts once.
    matrix = np.zeros((3, 3), dtype=np.int64)
    for mask, sample in zip(predicted, val, strict=True):
        keep = sample["mask"] != IGNORE_INDEX
        np.add.at(matrix, (sample["mask"][keep], mask[keep]), 1)
    assert matrix.sum() == sum(int((s["mask"] != IGNORE_INDEX).sum()) for s in val)
    iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))
    assert metrics["miou"] == pytest.approx(iou.mean(), abs=1e-9)
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum(), abs=1e-9)
    assert metrics["miou"] > 0.5 and metrics["iou_1"] > 0.2  # it learnt the thin line, scored at full resolution


def test_a_batch_of_several_sizes_collates_masks_as_a_list_and_its_loss_is_the_mean_over_images():
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=3, image_size=(36, 48))
    pipeline = task.eval_transform()
    samples = [task.to_tensors(pipeline, s, "val") for s in _scenes(1, 45, 61) + _scenes(1, 38, 50)]
    batch = task.collate(samples)
    assert batch["image"].shape == (2, 3, 36, 48)
    assert [tuple(mask.shape) for mask in batch["mask"]] == [(45, 61), (38, 50)]
    outputs = torch.randn(2, 3, 36, 48)
    one_by_one = [task.losses(outputs[i : i + 1], {"mask": batch["mask"][i][None]}) for i in range(2)]
    both = task.losses(outputs, batch)
    assert both["cross_entropy"] == pytest.approx(float(sum(o["cross_entropy"] for o in one_by_one) / 2), rel=1e-6)
