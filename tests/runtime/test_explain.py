"""Seeing inside: Grad-CAM and kin find the object a trained classifier looks at; heatmaps, filters and feature maps
have the shapes they promise; `visionheads explain` writes one overlay per image."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

import visionheads as vh
from visionheads.backbones import Backbone
from visionheads.backbones.small import SimpleCNN
from visionheads.cli import main
from visionheads.data.shapes import CATEGORIES, IMAGE_SIZE, shapes_split
from visionheads.runtime.explain import CAM_METHODS, cell_grid
from visionheads.viz.inside import kernel_mosaic


def single_object_crops(folder: Path, rng: np.random.Generator) -> list[tuple]:
    """(image, label, mask) of square crops of the shapes scenes in `folder`, as they are, each around one whole
    object alone in it: twice the object's size, the object at a random place (so that a map peaking at the centre
    fails)."""
    coco = COCO(str(folder / "annotations.json"))
    crops = []
    for image_id in coco.getImgIds():
        pixels = np.asarray(Image.open(folder / coco.loadImgs(image_id)[0]["file_name"]).convert("RGB"))
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        masks = [coco.annToMask(a).astype(bool) for a in annotations]
        for index, (annotation, mask) in enumerate(zip(annotations, masks, strict=True)):
            x, y, w, h = annotation["bbox"]
            side = round(2 * max(w, h))
            lowest = [max(0, int(np.ceil(start + extent)) - side) for start, extent in ((x, w), (y, h))]
            highest = [min(IMAGE_SIZE - side, int(start)) for start in (x, y)]
            if lowest[0] > highest[0] or lowest[1] > highest[1]:
                continue  # too close to the scene's edge
            left, top = (int(rng.integers(low, high + 1)) for low, high in zip(lowest, highest, strict=True))
            window = np.s_[top : top + side, left : left + side]
            if any(other[window].any() for k, other in enumerate(masks) if k != index):
                continue  # another object in view
            crops.append((pixels[window], annotation["category_id"] - 1, mask[window]))
    return crops


pytestmark = pytest.mark.usefixtures("one_thread")

EPOCHS = 40  # of ~380 crops of shapes:train at 64 px, on one thread: about 30 s


def narrow_body(seed: int = 0) -> Backbone:
    """simple_cnn's layout, narrower (8, 16, 32) and a stage shorter: stride 8 at the end, so 8x8 cells at 64 px."""
    widths = (8, 16, 32)
    with torch.random.fork_rng():  # its initial weights, seeded like a registry body's, the global state untouched
        torch.manual_seed(seed)
        body = SimpleCNN(3, widths)
    return Backbone(body, name="narrow_cnn", channels=list(widths), strides=[2, 4, 8], in_chans=3)


@pytest.fixture(scope="module")
def shape_classifier(one_thread, tmp_path_factory):
    """A tiny CNN trained (seeded) to tell circles, squares and triangles apart on one-object crops of shapes:train
    as they are; the crops of shapes:test; seconds of training."""
    rng = np.random.default_rng(0)
    train, test = (single_object_crops(shapes_split(split), rng) for split in ("train", "test"))
    # Each crop's background has its own random colour, which swamps the shape unless each image is standardised
    # (simple_cnn stays at chance on these crops); the statistics are constants to the gradient, so explain still
    # places its heatmap where the cells look.
    task = vh.Task("classification", backbone=narrow_body(), image_size=64, class_names=list(CATEGORIES),
                   standardize_images=True, seed=0)  # fmt: skip
    start = time.perf_counter()
    samples = [{"image": image, "label": label} for image, label, _ in train]
    task.fit(samples, False, epochs=EPOCHS, batch_size=32, lr=3e-3, plots=False,
             project=tmp_path_factory.mktemp("runs"), progress=False)  # fmt: skip
    return task, test, time.perf_counter() - start


def test_gradcam_peaks_inside_the_object_on_shapes_crops(shape_classifier):
    task, test, seconds = shape_classifier
    images, labels, masks = zip(*test, strict=True)
    accuracy = np.mean([result["index"] == label for result, label in zip(task.predict(images), labels, strict=True)])
    heatmaps = task.explain(images)  # Grad-CAM of the predicted class at the deepest stage, at each crop's size
    peaks = [np.unravel_index(heatmap.argmax(), heatmap.shape) for heatmap in heatmaps]
    rate = float(np.mean([mask[peak] for mask, peak in zip(masks, peaks, strict=True)]))
    area = float(np.mean([mask.mean() for mask in masks]))  # what a peak at a random pixel would score
    print(f"\nGrad-CAM peak inside the object in {rate:.1%} of {len(test)} test crops (objects cover {area:.1%}); "
          f"accuracy {accuracy:.1%}; trained in {seconds:.1f} s")  # fmt: skip
    assert accuracy > 0.8  # chance: 1/3
    assert rate >= 0.9, f"{rate:.1%} of peaks inside the object (accuracy {accuracy:.1%})"


def test_heatmaps_have_the_images_sizes_and_lie_in_the_unit_interval(tmp_path):
    task = vh.Task("classification", backbone="simple_cnn", num_classes=3, image_size=32)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((40, 50, 3), (33, 20, 3))]
    Image.fromarray(images[1]).save(tmp_path / "b.png")
    for method in CAM_METHODS:
        heatmaps = task.explain([images[0], tmp_path / "b.png"], method=method)
        assert [h.shape for h in heatmaps] == [(40, 50), (33, 20)], method
        assert all(h.dtype == np.float32 and 0 <= h.min() and h.max() <= 1 for h in heatmaps), method
    batch = task.explain(np.stack([images[0]] * 3), target=2, stage=0)  # a batch NxHxWxC, a class, a shallow stage
    assert len(batch) == 3 and batch[0].shape == (40, 50)


def test_heatmaps_sit_where_the_cells_look():
    # "same"-padded strided convolutions centre cell i at stride * i (not at stride * (i + 0.5) - 0.5, where image
    # resizing puts it); 2x2 pooling at stride * (i + 0.5) - 0.5.
    assert cell_grid(vh.create_backbone("simple_cnn"), 2, 8, (3, 64, 64)) == ((0.0, 8), (0.0, 8))
    lenet = vh.create_backbone("lenet5")
    assert cell_grid(lenet, 2, 8, (3, 64, 64)) == ((3.5, 8), (3.5, 8))


def test_regression_and_segmentation_explain_their_outputs():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(36, 30, 3), dtype=np.uint8)
    regression = vh.Task("regression", backbone="simple_cnn", image_size=32)
    (heatmap,) = regression.explain(image, method="gradcam++")
    assert heatmap.shape == (36, 30)
    segmentation = vh.Task("segmentation", backbone="simple_cnn", class_names=["background", "disc"], image_size=32)
    for target in (1, "disc"):
        (heatmap,) = segmentation.explain(image, target=target)
        assert heatmap.shape == (36, 30) and 0 <= heatmap.min() and heatmap.max() <= 1
    with pytest.raises(vh.ConfigError, match="one class at a time"):
        segmentation.explain(image)
    with pytest.raises(vh.ConfigError, match="disc"):
        segmentation.explain(image, target="cat")


def test_unknown_method_stage_or_missing_package_are_config_errors(monkeypatch):
    task = vh.Task("classification", backbone="simple_cnn", num_classes=3, image_size=32)
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(vh.ConfigError, match="gradcam\\+\\+") as error:
        task.explain(image, method="grad-cam")
    assert all(name in str(error.value) for name in ("gradcam", "xgradcam", "eigencam", "layercam", "scorecam"))
    with pytest.raises(vh.ConfigError, match="stage=4"):
        task.explain(image, stage=4)
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # as if grad-cam were not installed
    with pytest.raises(vh.ConfigError, match=r'pip install "visionheads\[explain\]"'):
        task.explain(image)


def test_plot_filters_shows_one_tile_per_first_layer_kernel(tmp_path):
    task = vh.Task("classification", backbone="simple_cnn", num_classes=3, image_size=32)
    path = task.plot_filters(tmp_path / "filters.png")
    assert path.is_file() and Image.open(path).size[0] > 100
    kernels = task.backbone.body.stages[0][0][0].weight.detach().numpy()  # (32, 3, 3, 3)
    mosaic = kernel_mosaic(kernels)
    tiles = [mosaic[1 + 4 * r : 4 * r + 4, 1 + 4 * c : 4 * c + 4] for r in range(6) for c in range(6)]
    assert mosaic.shape == (6 * 4 + 1, 6 * 4 + 1, 3)  # a 6 x 6 grid of 3x3 tiles, 1-pixel gaps
    assert sum(not np.all(tile == 1) for tile in tiles) == len(kernels) == 32  # 4 cells of the grid stay empty


def test_feature_maps_are_the_bodys_maps_at_a_stage(tmp_path):
    task = vh.Task("classification", backbone="simple_cnn", num_classes=3, image_size=48)
    body = task.backbone
    image = np.zeros((60, 40, 3), dtype=np.uint8)
    for stage in (0, 1, 2, -1):
        maps = task.feature_maps(image, stage=stage)
        assert maps.shape == (body.channels[stage], 48 // body.strides[stage], 48 // body.strides[stage])
        assert maps.dtype == np.float32
    assert task.plot_feature_maps(image, stage=0, path=tmp_path / "maps.png").is_file()


def test_feature_maps_take_one_image_and_figures_a_file_name():
    task = vh.Task("classification", backbone="simple_cnn", num_classes=3, image_size=32)
    with pytest.raises(vh.ConfigError, match="one image"):
        task.feature_maps(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(vh.ConfigError, match="path must be a file name"):
        task.plot_filters(3)


def test_cli_explain_writes_one_overlay_per_image(tmp_path, capsys):
    task = vh.Task("classification", backbone="simple_cnn", class_names=["a", "b"], image_size=32)
    checkpoint = task.save(tmp_path / "model.pt")
    rng = np.random.default_rng(2)
    images = []
    for name, size in (("x.png", (40, 30)), ("y.jpg", (24, 24))):
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(tmp_path / name)
        images.append(str(tmp_path / name))
    out = tmp_path / "overlays"
    assert main(["explain", str(checkpoint), *images, "--out", str(out), "--method", "gradcam++", "--class", "b"]) == 0
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["x_gradcam++.png", "y_gradcam++.png"]
    assert [Image.open(p).size for p in written] == [(30, 40), (24, 24)]  # (width, height): each image's own size
    printed = capsys.readouterr().out
    assert all(str(p) in printed for p in written)
    assert main(["explain", str(checkpoint), images[0], "--method", "nope"]) == 2
    assert "unknown explain method 'nope'" in capsys.readouterr().err
