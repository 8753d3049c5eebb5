"""The segmentation task: heads over every backbone, CE + Dice, confusion-matrix metrics, data checks, plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import visionheads as vh
from visionheads.data.masks import MaskFolders
from visionheads.tasks.segmentation import IGNORE_INDEX

from contract import check_training_step, input_size

pytestmark = pytest.mark.segmentation

FAST = {"batch_size": 8, "lr": 3e-3, "plots": False, "progress": False}


def _mask_samples(count: int = 4, size: int = 24, channels: int = 3, seed: int = 0) -> list[dict]:
    """Noisy grey images with a bright square (class 1) and a dark bar (class 2) at seeded places."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        image = rng.normal(128, 20, size=(size, size, channels))
        mask = np.zeros((size, size), dtype=np.int64)
        y, x = rng.integers(0, size - 8, size=2)
        image[y : y + 8, x : x + 8], mask[y : y + 8, x : x + 8] = 230, 1
        column = int(rng.integers(0, size - 3))
        image[:, column : column + 3], mask[:, column : column + 3] = 20, 2
        samples.append({"image": np.clip(image, 0, 255).astype(np.uint8), "mask": mask})
    return samples


def test_metrics_skip_ignored_pixels():
    task = vh.Task("segmentation", backbone="lenet5", num_classes=2)
    metrics = task.new_metrics(None)
    scores = torch.tensor([[[[5.0, 5.0]], [[0.0, 0.0]]]])  # predicts class 0 for both pixels
    task.update_metrics(metrics, scores, {"mask": torch.tensor([[[0, IGNORE_INDEX]]])})
    assert task.metric_values(metrics.compute())["pixel_accuracy"] == 1.0


# SegNet unpools with pooling indices, which only the VGG bodies hand over: its own test below walks those.
@pytest.mark.parametrize("head", [head for head in vh.list_heads("segmentation")["segmentation"] if head != "segnet"])
@pytest.mark.parametrize("backbone", vh.list_backbones())
def test_every_backbone_trains_a_step(backbone, head, bodies):
    body = bodies(backbone)
    size = input_size(body)
    task = vh.Task("segmentation", backbone=body, head=head, num_classes=3, image_size=size)
    values = check_training_step(task, _mask_samples(2, size=size))
    assert {"miou", "dice", "pixel_accuracy", "class_accuracy", "iou_0", "iou_1", "iou_2"} == set(values)
    assert task(torch.randn(2, 3, size, size)).shape == (2, 3, size, size)


@pytest.mark.parametrize("backbone", ["vgg11_bn", "vgg16_bn"])
def test_segnet_trains_a_step_on_the_bodies_that_hand_over_their_pooling_indices(backbone, bodies):
    task = vh.Task("segmentation", backbone=bodies(backbone), head="segnet", num_classes=3, image_size=32)
    values = check_training_step(task, _mask_samples(2, size=32))
    assert {"miou", "iou_0"} <= set(values)
    assert task(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_segnet_unpools_each_value_exactly_at_the_encoders_argmax(bodies):
    from visionheads.heads.segnet import unpool

    body = bodies("vgg11_bn").eval()
    with torch.no_grad():
        features, pools = body.forward_with_pool_indices(torch.randn(2, 3, 32, 32))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2, 1] and len(pools) == 5
    for read, pool in zip(features[:-1], pools, strict=True):
        # the encoder's own argmax, recomputed by hand: the position of each 2x2 window's maximum in the map it read
        b, c, h, w = read.shape
        windows = read.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // 2, w // 2, 4)
        best = windows.argmax(-1)
        rows = torch.arange(h // 2).view(1, 1, -1, 1) * 2 + best // 2
        cols = torch.arange(w // 2).view(1, 1, 1, -1) * 2 + best % 2
        assert torch.equal(pool.indices, rows * w + cols)
        values = torch.randn(b, c, h // 2, w // 2)
        unpooled = unpool(values, pool)  # what the decoder does first at this stage
        expected = torch.zeros(b, c, h * w).scatter_(2, (rows * w + cols).flatten(2), values.flatten(2))
        assert torch.equal(unpooled, expected.view(b, c, h, w))
    assert torch.allclose(features[-1], torch.nn.functional.max_pool2d(features[-2], 2))  # pool 5: the deepest map


def test_segnet_decodes_from_fewer_pools_when_asked_and_the_deeper_layers_neither_run_nor_train(monkeypatch):
    body = vh.create_backbone("vgg11_bn")  # its own: the task freezes part of it
    task = vh.Task("segmentation", backbone=body, head="segnet", num_classes=3, image_size=32, unpools=3)
    assert len(task.head.stages) == 3 and task.head.stages[0][-1][0].in_channels == body.channels[2]
    unpooled, ran = [], []  # the sizes max_unpool2d restored; the body's convolutions that ran
    unpool = torch.nn.functional.max_unpool2d
    monkeypatch.setattr(
        torch.nn.functional, "max_unpool2d", lambda *a, **k: unpooled.append(k["output_size"][-1]) or unpool(*a, **k)
    )
    convs = [m for m in body.modules() if isinstance(m, torch.nn.Conv2d)]  # vgg11: 1, 1, 2, 2, 2 per block
    for conv in convs:
        conv.register_forward_hook(lambda module, args, out: ran.append(module))
    check_training_step(task, _mask_samples(2, size=32))  # every trainable parameter gets a gradient
    assert unpooled[:3] == [8, 16, 32] and len(set(map(id, ran))) == 6  # pools 3, 2, 1; blocks 1-4 ran, not 5
    deepest = [p for conv in convs[6:] for p in conv.parameters()]
    assert not any(p.requires_grad for p in deepest)
    task.model.set_body_trainable(False)
    task.model.set_body_trainable(True)  # finetune's unfreezing leaves them frozen
    assert not any(p.requires_grad for p in deepest) and all(p.requires_grad for p in convs[0].parameters())
    for wrong in (0, 6, 2.5):
        with pytest.raises(vh.ConfigError, match=rf"unpools={wrong}, but this body has 5 pools; use 1..5"):
            vh.Task("segmentation", backbone=body, head="segnet", num_classes=3, unpools=wrong)


def test_segnet_on_a_body_without_pooling_indices_names_those_that_have_them():
    with pytest.raises(vh.ConfigError, match=r"'simple_cnn' cannot hand over.*'vgg11_bn' or 'vgg16_bn'.*segnet_lite"):
        vh.Task("segmentation", backbone="simple_cnn", head="segnet", num_classes=2)


def test_head_options_reach_their_head():
    fpn = vh.Task("segmentation", backbone="lenet5", head="fpn", num_classes=2, pyramid_channels=32)
    assert all(conv.out_channels == 32 for conv in fpn.head.lateral)
    deeplab = vh.Task("segmentation", backbone="lenet5", head="deeplabv3plus", num_classes=2, aspp_channels=40)
    assert deeplab.head.classifier.in_channels == 40
    with pytest.raises(vh.ConfigError, match="has no option 'decoder_width'.*options of head 'unet': decoder_channels"):
        vh.Task("segmentation", backbone="lenet5", num_classes=2, decoder_width=8)
    with pytest.raises(vh.ConfigError, match="an option of head 'fpn', not of 'unet'"):
        vh.Task("segmentation", backbone="lenet5", num_classes=2, pyramid_channels=32)


def test_fit_learns_to_segment_from_scratch():
    task = vh.Task("segmentation", backbone="simple_cnn", image_size=24, num_classes=3, seed=0)
    history = task.fit(_mask_samples(48), _mask_samples(16, seed=1), epochs=8, **FAST)
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    metrics = task.evaluate(_mask_samples(32, seed=2))
    assert {"miou", "dice", "pixel_accuracy", "class_accuracy", "iou_0", "iou_1", "iou_2"} <= set(metrics)
    # Calling every pixel background scores mIoU ~0.27 (its IoU ~0.8, the two others 0).
    assert metrics["miou"] > 0.6 and min(metrics["iou_1"], metrics["iou_2"]) > 0.4


@pytest.mark.smoke
def test_predict_gives_masks_at_each_image_size_and_load_keeps_them(tmp_path):
    task = vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=3)
    task.fit(_mask_samples(), epochs=1, **FAST)
    images = [np.zeros((40, 50, 3), dtype=np.uint8), np.full((20, 20, 3), 200, dtype=np.uint8)]
    masks = task.predict(images)
    assert [m.shape for m in masks] == [(40, 50), (20, 20)]
    assert all(m.dtype == np.int64 and m.min() >= 0 and m.max() < 3 for m in masks)
    loaded = vh.Task.load(task.save(tmp_path / "seg.pt"))
    assert all((a == b).all() for a, b in zip(loaded.predict(images), masks, strict=True))


def test_plots_show_images_with_true_and_predicted_masks(tmp_path):
    task = vh.Task("segmentation", backbone="lenet5", image_size=32)
    task.fit("shapes[:16]", "shapes:val[:8]", epochs=1, **FAST)
    names = [p.name for p in task.plot(tmp_path, data="shapes:val[:8]")]
    assert names == ["curves.png", "masks.png", "confusion_matrix.png"]
    assert Image.open(tmp_path / "masks.png").size[0] > 400


def test_masks_figure_paints_each_class_in_the_colour_given_for_it(tmp_path):
    colors = [[0, 0, 0], [255, 0, 255], [0, 255, 255]]  # magenta and cyan appear nowhere else in the figure
    task = vh.Task("segmentation", backbone="lenet5", image_size=24, num_classes=3, class_colors=colors)
    task.fit(_mask_samples(8), epochs=1, **FAST)
    task.plot(tmp_path, data=_mask_samples(4, seed=3))
    pixels = np.asarray(Image.open(tmp_path / "masks.png").convert("RGB")).reshape(-1, 3)
    for color in colors[1:]:
        assert (pixels == color).all(axis=1).sum() > 50, color
    assert vh.Task.load(task.save(tmp_path / "seg.pt")).config.class_colors == tuple(map(tuple, colors))


@pytest.mark.parametrize("colors", [[[0, 0, 0], [255, 0]], [[0, 0, 0], [256, 0, 0]], [[0, 0, 0]], "red"])
def test_bad_class_colors_say_what_they_take(colors):
    with pytest.raises(vh.ConfigError, match=r"class_colors=.*give 2 \[R, G, B\] triples of whole numbers 0..255"):
        vh.Task("segmentation", backbone="lenet5", num_classes=2, class_colors=colors)


def test_mask_folders_and_coco_paths_are_read(tmp_path):
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, sample in enumerate(_mask_samples(3)):
        Image.fromarray(sample["image"]).save(root / "images" / f"{index}.jpg")
        Image.fromarray(sample["mask"].astype(np.uint8)).save(root / "masks" / f"{index}.png")
    (root / "classes.txt").write_text("background\nsquare\nbar\n")
    task = vh.Task("segmentation", backbone="lenet5", image_size=32)
    task.fit(root, epochs=1, **FAST)
    assert task.class_names == ["background", "square", "bar"]
    assert set(task.evaluate(root)) >= {"miou", "iou_square", "iou_bar"}
    (root / "masks" / "2.png").unlink()
    with pytest.raises(vh.DataError, match=r"no mask for 1 image\(s\), e.g. \['2.png'\]"):
        task.evaluate(root)


def test_split_folders_with_labels_share_the_datasets_classes(tmp_path):
    # CamVid as SegNet's copies keep it: camvid/{train,val}/{images,labels}/ and one camvid/classes.txt
    for split, seed in (("train", 0), ("val", 1)):
        folder = tmp_path / "camvid" / split
        (folder / "images").mkdir(parents=True)
        (folder / "labels").mkdir()
        for index, sample in enumerate(_mask_samples(3, seed=seed)):
            Image.fromarray(sample["image"]).save(folder / "images" / f"{index}.png")
            Image.fromarray(sample["mask"].astype(np.uint8)).save(folder / "labels" / f"{index}.png")
    (tmp_path / "camvid" / "classes.txt").write_text("Road\nSign\nPole\n")
    task = vh.Task("segmentation", backbone="lenet5", image_size=24)
    task.fit(tmp_path / "camvid" / "train", tmp_path / "camvid" / "val", epochs=1, **FAST)
    assert task.class_names == ["Road", "Sign", "Pole"]
    stored = MaskFolders(tmp_path / "camvid" / "val")[2]["mask"]
    np.testing.assert_array_equal(stored, _mask_samples(3, seed=1)[2]["mask"])


def test_bad_masks_are_named():
    task = vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=3)
    samples = _mask_samples(2)
    samples[1]["mask"] = samples[1]["mask"][:-1]
    with pytest.raises(vh.DataError, match=r"list\[1\]\['mask'\]: shape \(23, 24\) but the image is \(24, 24\)"):
        task.evaluate(samples)
    samples = _mask_samples(2)
    samples[0]["mask"][0, 0] = 7
    with pytest.raises(vh.DataError, match=r"\['mask'\]: class index 7 outside 0..2 \(use 255 for pixels to ignore"):
        task.evaluate(samples)
    samples = _mask_samples(2)
    samples[0]["mask"] = samples[0]["mask"].astype(np.float32)
    with pytest.raises(vh.DataError, match="dtype float32; a mask holds integer class indices"):
        task.evaluate(samples)


def test_class_count_mismatch_and_unknown_classes_are_config_errors():
    with pytest.raises(vh.ConfigError, match=r"num_classes=3 but shapes\[:8\] has 4 classes"):
        vh.Task("segmentation", backbone="lenet5", num_classes=3).fit("shapes[:8]", epochs=1, **FAST)
    with pytest.raises(vh.ConfigError, match="pass num_classes"):
        vh.Task("segmentation", backbone="lenet5").fit(_mask_samples(), epochs=1, **FAST)
    renamed = vh.Task("segmentation", backbone="lenet5", class_names=["background", "a", "b", "c"])
    with pytest.raises(vh.ConfigError, match=r"classes \['background', 'circle', 'square', 'triangle'\] differ"):
        renamed.fit("shapes[:8]", epochs=1, **FAST)


def test_cli_predict_writes_mask_pngs(tmp_path, capsys):
    from visionheads.cli import main

    task = vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=3)
    task.fit(_mask_samples(), epochs=1, **FAST)
    checkpoint = task.save(tmp_path / "seg.pt")
    image = tmp_path / "scene.png"
    Image.fromarray(_mask_samples(1)[0]["image"][:20]).save(image)
    assert main(["predict", str(checkpoint), str(image), "--out", str(tmp_path / "out")]) == 0
    written = tmp_path / "out" / "scene_mask.png"
    assert f"mask saved to {written}" in capsys.readouterr().out
    saved = np.asarray(Image.open(written))
    assert saved.shape == (20, 24) and (saved == task.predict([str(image)])[0]).all()
