"""The detection task: Faster / Mask R-CNN over every backbone, COCO evaluation exactly as pycocotools does it
(ground truth scores 1.0, parity with plain pycocotools, original category ids, crowd regions), box checks, VOC
folders, learning on shapes, predict, save/load and the command line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import visionheads as vh
from visionheads.cli import main
from visionheads.data import COCOSubset
from visionheads.data.samples import IGNORE_INDEX
from visionheads.data.shapes import shapes_split
from visionheads.metrics.coco import BACKENDS, STAT_NAMES, coco_backend

from contract import check_training_step, input_size

pytestmark = pytest.mark.detection

# Small enough for CPU tests: a narrow pyramid, few proposals and RoIs.
TINY = {"fpn_channels": 16, "representation_size": 32, "proposals_train": 64, "proposals_test": 64,
        "rois_per_image": 32}  # fmt: skip
SHAPES = ("background", "circle", "square", "triangle")


def _square_scenes(count: int, size: int, seed: int = 0) -> list[dict]:
    """Seeded noise images with 1-2 bright squares (label 1) or dark ones (label 2): boxes, labels, masks."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        image = rng.integers(90, 160, (size, size, 3), dtype=np.uint8)
        boxes, labels, masks = [], [], []
        for k in range(int(rng.integers(1, 3))):
            side = int(rng.integers(size // 5, size // 3))
            x, y = (int(v) for v in rng.integers(0, size - side, 2))
            if k and (abs(x - boxes[0][0]) < side + 2 and abs(y - boxes[0][1]) < side + 2):
                continue  # no overlaps: each square is one clear object
            label = int(rng.integers(1, 3))
            image[y : y + side, x : x + side] = 245 if label == 1 else 10
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[y : y + side, x : x + side] = 1
            boxes.append([x, y, x + side, y + side])
            labels.append(label)
            masks.append(mask)
        samples.append({"image": image, "boxes": np.asarray(boxes, dtype=np.float32),
                        "labels": np.asarray(labels), "masks": np.stack(masks)})  # fmt: skip
    return samples


def _truth_as_detections(task: vh.Task, extra: list | None = None) -> None:
    """Make `task` answer each evaluation batch with its true objects, plus `extra` boxes per image scored above
    them (so a false one among them costs precision)."""

    def outputs(batch):
        found = []
        for target in batch["targets"]:
            boxes, labels = target["boxes"].clone(), target["labels"].clone()
            scores = torch.linspace(0.9, 0.5, len(boxes))
            if extra:
                boxes = torch.cat([boxes, torch.tensor([box for box, _ in extra], dtype=torch.float32)])
                labels = torch.cat([labels, torch.tensor([label for _, label in extra])])
                scores = torch.cat([scores, torch.ones(len(extra))])
            detection = {"boxes": boxes, "labels": labels, "scores": scores}
            if task.with_masks:
                masks = target["masks"].clone()
                for box, _ in extra or []:
                    x0, y0, x1, y1 = (int(v) for v in box)
                    extra_mask = torch.zeros(1, *masks.shape[1:], dtype=masks.dtype)
                    extra_mask[0, y0:y1, x0:x1] = 1
                    masks = torch.cat([masks, extra_mask])
                detection["masks"] = masks[:, None].float()
            found.append(detection)
        return found

    task.evaluation_outputs = outputs


def _coco_file(root: Path, annotations: list[dict], categories: list[dict], count: int = 2) -> Path:
    """`count` 60x50 grey PNGs under root/images and a COCO JSON of them; returns the JSON path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for image_id in range(1, count + 1):
        Image.fromarray(np.full((50, 60, 3), 100, dtype=np.uint8)).save(root / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"images/{image_id}.png", "width": 60, "height": 50})
    for number, annotation in enumerate(annotations, start=1):
        annotation.setdefault("id", number)
        annotation.setdefault("iscrowd", 0)
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _square(image_id: int, category_id: int, x: float, y: float, side: float) -> dict:
    polygon = [x, y, x + side, y, x + side, y + side, x, y + side]
    return {"image_id": image_id, "category_id": category_id, "bbox": [x, y, side, side],
            "segmentation": [polygon], "area": side * side}  # fmt: skip


def _pycocotools_stats(annotations: Path, results: Path, iou_type: str, image_ids: list[int], category_ids: list[int]):
    """What plain pycocotools computes from a results JSON (segm: the boxes dropped, as Detectron2 does)."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        rows = json.loads(results.read_text())
        if iou_type == "segm":
            rows = [{k: v for k, v in row.items() if k != "bbox"} for row in rows]
        evaluation = COCOeval(truth, truth.loadRes(rows), iou_type)
        evaluation.params.imgIds, evaluation.params.catIds = image_ids, category_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


@pytest.mark.parametrize("backbone", vh.list_backbones())
def test_every_backbone_trains_a_step_with_faster_rcnn(backbone, bodies):
    body = bodies(backbone)
    size = input_size(body)
    task = vh.Task("detection", backbone=body, num_classes=3, min_size=size, max_size=size, **TINY)
    values = check_training_step(task, _square_scenes(2, size))
    assert set(STAT_NAMES) <= set(values)
    assert set(task.training_losses(_batch(task, _square_scenes(2, size)), 0)) == {
        "objectness", "rpn_box_reg", "classifier", "box_reg"
    }  # fmt: skip


def _batch(task: vh.Task, samples: list[dict]) -> dict:
    task.train()
    pipeline = task.eval_transform()
    batch = task.collate([task.to_tensors(pipeline, {"index": i, **s}, f"samples[{i}]") for i, s in enumerate(samples)])
    return batch | {"image": task.model_inputs(batch["image"])}


def test_mask_rcnn_trains_a_step_and_predicts_masks_at_the_image_size():
    task = vh.Task("detection", backbone="simple_cnn", head="mask_rcnn", num_classes=3, min_size=64, **TINY)
    values = check_training_step(task, _square_scenes(2, 64))
    assert {"AP", "segm_AP", "segm_AP50"} <= set(values)
    assert "mask" in task.training_losses(_batch(task, _square_scenes(2, 64)), 0)
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    (found,) = task.predict([image])
    assert found["masks"].shape[1:] == (48, 80) and found["masks"].dtype == bool
    assert len(found["boxes"]) == len(found["scores"]) == len(found["labels"]) == len(found["masks"])


def test_anchor_sizes_follow_the_pyramid_strides_and_bad_ones_are_config_errors():
    task = vh.Task("detection", backbone="resnet18", num_classes=2, **TINY)
    assert task.head.strides == [4, 8, 16, 32, 64]  # resnet18's stages from stride 4, and FPN's pooled level
    sizes = [s[0] for s in task.head.rpn.anchor_generator.sizes]
    assert sizes == [32, 64, 128, 256, 512]  # torchvision's defaults, 8x each stride
    assert vh.Task("detection", backbone="lenet5", num_classes=2, **TINY).head.strides == [4, 8, 16]
    with pytest.raises(vh.ConfigError, match="one size per pyramid level"):
        vh.Task("detection", backbone="resnet18", num_classes=2, anchor_sizes=[16, 32])
    with pytest.raises(vh.ConfigError, match="features"):
        vh.Task("detection", backbone="lenet5", num_classes=3, **TINY).fit(_square_scenes(4, 32), strategy="features")


@pytest.mark.parametrize("head", vh.list_heads("detection")["detection"])
def test_ground_truth_fed_back_as_detections_scores_ap_one(head):
    task = vh.Task("detection", backbone="lenet5", head=head, class_names=SHAPES, **TINY)
    _truth_as_detections(task)
    metrics = task.evaluate("shapes:test[:12]")
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)
    assert all(metrics[f"AP_{name}"] == pytest.approx(1.0) for name in SHAPES[1:])
    if head == "mask_rcnn":
        assert metrics["segm_AP"] == pytest.approx(1.0) and metrics["segm_AR100"] == pytest.approx(1.0)
    # Data without an annotation file (sample dicts): the truth comes from the samples, same result.
    samples = _square_scenes(6, 48)
    task = vh.Task("detection", backbone="lenet5", head=head, num_classes=3, **TINY)
    _truth_as_detections(task, extra=[([0, 0, 9, 9], 1)])  # one false positive per image, scored first
    metrics = task.evaluate(samples)
    assert 0.5 < metrics["AP"] < 1.0 and metrics["AR100"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval", "hotcoco"])
def test_evaluate_equals_plain_pycocotools_on_the_results_json_it_writes(tmp_path, backend):
    task = vh.Task("detection", backbone="lenet5", head="mask_rcnn", class_names=SHAPES, coco_backend=backend, **TINY)
    rng = np.random.default_rng(0)

    def jittered(batch):  # true objects moved a little, with random scores and a false positive each
        found = []
        for target in batch["targets"]:
            boxes = target["boxes"] + torch.from_numpy(rng.normal(0, 3, target["boxes"].shape)).float()
            boxes = torch.cat([boxes, torch.tensor([[5.0, 5.0, 30.0, 30.0]])])
            labels = torch.cat([target["labels"], torch.tensor([2])])
            masks = torch.cat([target["masks"], torch.zeros(1, *target["masks"].shape[1:], dtype=torch.uint8)])
            masks[-1, 5:30, 5:30] = 1
            masks = torch.roll(masks, shifts=int(rng.integers(-2, 3)), dims=2)
            scores = torch.from_numpy(rng.uniform(0.1, 1.0, len(boxes))).float()
            found.append({"boxes": boxes, "labels": labels, "scores": scores, "masks": masks[:, None].float()})
        return found

    task.evaluation_outputs = jittered
    results = tmp_path / "detections.json"
    metrics = task.evaluate("shapes:test[:15]", results=results)
    assert 0.2 < metrics["AP"] < 0.95 and 0.2 < metrics["segm_AP"] < 0.95  # neither trivial nor perfect
    annotations = shapes_split("test") / "annotations.json"
    for iou_type, prefix in (("bbox", ""), ("segm", "segm_")):
        plain = _pycocotools_stats(annotations, results, iou_type, list(range(1, 16)), [1, 2, 3])
        ours = [metrics[f"{prefix}{name}"] for name in STAT_NAMES]
        np.testing.assert_allclose(ours, plain, rtol=0, atol=1e-9)


def test_a_category_subset_keeps_its_annotations_and_its_original_ids(tmp_path):
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 11, "name": "bird"}]
    annotations = [_square(1, 3, 2, 2, 10), _square(1, 7, 20, 5, 12), _square(1, 11, 40, 20, 8),
                   _square(2, 11, 5, 30, 9), _square(2, 3, 30, 10, 14)]  # fmt: skip
    path = _coco_file(tmp_path, annotations, categories)
    data = {"coco": str(path), "categories": ["dog", "bird"]}
    task = vh.Task("detection", backbone="lenet5", **TINY)
    source = task.source(data, fitting=True)
    assert task.class_names == ["background", "dog", "bird"] and task.config.category_ids == (7, 11)
    assert [s["labels"].tolist() for s in (source.dataset[0], source.dataset[1])] == [[1, 2], [2]]
    _truth_as_detections(task)
    metrics = task.evaluate(data, results=tmp_path / "results.json")
    assert metrics["AP"] == pytest.approx(1.0) and set(metrics) >= {"AP_dog", "AP_bird"} and "AP_cat" not in metrics
    written = json.loads((tmp_path / "results.json").read_text())
    assert sorted((r["image_id"], r["category_id"]) for r in written) == [(1, 7), (1, 11), (2, 11)]
    # predict answers with the original ids too (learnt from the data when fitting, kept in the checkpoint)
    assert vh.Task.load(task.save(tmp_path / "t.pt")).config.category_ids == (7, 11)


def test_crowd_regions_are_ignored_not_targets_and_crowd_for_cocoeval(tmp_path):
    crowd_area = np.zeros((50, 60), dtype=np.uint8)
    crowd_area[10:30, 30:55] = 1
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(crowd_area))
    crowd = {"image_id": 1, "category_id": 1, "bbox": [30, 10, 25, 20], "area": 500, "iscrowd": 1,
             "segmentation": {"size": [50, 60], "counts": rle["counts"].decode("ascii")}}  # fmt: skip
    person = _square(1, 1, 25, 20, 10)  # x 25..35, y 20..30: partly on the crowd
    path = _coco_file(tmp_path, [crowd, person, _square(1, 1, 5, 5, 12)], [{"id": 1, "name": "person"}], count=1)
    sample = COCOSubset(path)[0]
    assert sample["boxes"].tolist() == [[25.0, 20.0, 35.0, 30.0], [5.0, 5.0, 17.0, 17.0]]  # the crowd is no target
    person_pixels = sample["masks"].max(axis=0) > 0
    crowd_pixels = crowd_area > 0
    assert (sample["mask"] == IGNORE_INDEX).sum() == (crowd_pixels & ~person_pixels).sum() > 300
    assert (sample["mask"][crowd_pixels & ~person_pixels] == IGNORE_INDEX).all()

    # COCOeval sees the region as crowd: a detection on it is ignored, the same one elsewhere is a false positive.
    # Every backend gives pycocotools' 12 numbers on both.
    for extra, expected in (([32.0, 11.0, 52.0, 28.0], 1.0), ([0.0, 36.0, 20.0, 49.0], None)):
        stats = {}
        for backend in BACKENDS:
            task = vh.Task("detection", backbone="lenet5", class_names=("background", "person"), coco_backend=backend,
                           **TINY)  # fmt: skip
            _truth_as_detections(task, extra=[(extra, 1)])
            metrics = task.evaluate(str(path))
            stats[backend] = [metrics[name] for name in STAT_NAMES]
        assert stats["hotcoco"] == pytest.approx(stats["pycocotools"], abs=1e-12)
        assert stats["faster-coco-eval"] == pytest.approx(stats["pycocotools"], abs=1e-12)
        if expected is not None:
            assert stats["pycocotools"][0] == pytest.approx(expected)
        else:
            assert stats["pycocotools"][0] < 0.99


def test_bad_boxes_are_data_errors_naming_the_box_and_slightly_outside_ones_are_clipped():
    task = vh.Task("detection", backbone="lenet5", num_classes=3, **TINY)
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    pipeline = task.eval_transform()

    def tensors(boxes, labels):
        sample = {"image": image, "boxes": np.asarray(boxes, dtype=np.float32), "labels": np.asarray(labels),
                  "index": 0}  # fmt: skip
        return task.to_tensors(pipeline, sample, "data[4]")

    with pytest.raises(vh.DataError, match=r"data\[4\]\['boxes'\]\[1\].*zero or negative size"):
        tensors([[1, 1, 9, 9], [10, 10, 10, 20]], [1, 2])
    with pytest.raises(vh.DataError, match=r"\['boxes'\]\[0\].*outside the 50x40 image"):
        tensors([[30, 5, 80, 20]], [1])
    with pytest.raises(vh.DataError, match=r"\['labels'\]\[0\]: 3 outside 1..2"):
        tensors([[1, 1, 9, 9]], [3])
    with pytest.warns(UserWarning, match="clipped"):
        out = tensors([[-0.5, 2, 50.6, 20]], [1])
    assert out["target"]["boxes"].tolist() == [[0.0, 2.0, 50.0, 20.0]]
    assert len(tensors(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))["target"]["boxes"]) == 0  # a negative image


def test_coco_boxes_without_size_come_from_their_mask_or_are_data_errors(tmp_path):
    flat = _square(1, 1, 5, 5, 10) | {"bbox": [5, 5, 0, 10]}  # a broken bbox, a good polygon
    path = _coco_file(tmp_path / "a", [flat], [{"id": 1, "name": "thing"}])
    assert COCOSubset(path)[0]["boxes"].tolist() == [[5.0, 5.0, 15.0, 15.0]]
    box_only = {"image_id": 1, "category_id": 1, "bbox": [5, 5, -3, 10]}
    path = _coco_file(tmp_path / "b", [box_only], [{"id": 1, "name": "thing"}])
    with pytest.raises(vh.DataError, match=r"annotation 1 \(image 1\).*no size and no mask"):
        COCOSubset(path)[0]


def test_negatives_keep_images_without_chosen_objects(tmp_path):
    path = _coco_file(tmp_path, [_square(1, 1, 5, 5, 10)], [{"id": 1, "name": "thing"}], count=3)
    assert len(COCOSubset(path)) == 1
    kept = COCOSubset(path, negatives=True)
    assert len(kept) == 3 and len(kept[1]["boxes"]) == 0 and kept[1]["masks"].shape == (0, 50, 60)
    task = vh.Task("detection", backbone="lenet5", **TINY)
    source = task.source({"coco": str(path), "negatives": True}, fitting=True)
    assert len(source.dataset) == 3


def test_pascal_voc_folders_read_as_detectron2_does(tmp_path):
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    (tmp_path / "voc" / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(tmp_path / "voc" / "JPEGImages" / "a.jpg")
    (tmp_path / "voc" / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>60</width><height>40</height></size>"
        "<object><name>dog</name><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax><ymax>25</ymax></bndbox></object>"
        "<object><name>cat</name><bndbox><xmin>31</xmin><ymin>1</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>"
    )
    task = vh.Task("detection", backbone="lenet5", **TINY)
    source = task.source(tmp_path / "voc", fitting=True)
    assert task.class_names == ["background", "cat", "dog"]
    sample = source.dataset[0]
    assert sample["boxes"].tolist() == [[10, 5, 30, 25], [30, 0, 60, 40]] and sample["labels"].tolist() == [2, 1]
    (tmp_path / "voc" / "Annotations" / "b.xml").write_text("<annotation><object/></annotation>")
    with pytest.raises(vh.DataError, match=r"b.xml: not a Pascal VOC annotation"):
        task.source(tmp_path / "voc")


def test_faster_rcnn_learns_square_scenes():
    task = vh.Task("detection", backbone="simple_cnn", num_classes=3, min_size=64, max_size=64,
                   anchor_sizes=[16, 32, 64, 128], seed=0, **TINY)  # fmt: skip
    before = task.evaluate(_square_scenes(24, 64, seed=1))
    history = task.fit(_square_scenes(96, 64), epochs=6, batch_size=8, lr=0.004, val=False, plots=False,
                       progress=False)  # fmt: skip
    losses = [row["train_loss"] for row in history.rows]
    assert losses[-1] < 0.6 * losses[0]
    after = task.evaluate(_square_scenes(24, 64, seed=1))
    assert after["AP50"] > max(0.5, before["AP50"] + 0.4), (before, after)


def test_predict_returns_boxes_in_each_images_pixels_and_load_gives_the_same(tmp_path):
    task = vh.Task("detection", backbone="lenet5", num_classes=3, min_size=64, max_size=96, score_threshold=0.0,
                   **TINY)  # fmt: skip
    images = [np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8) for i, (h, w) in
              enumerate([(40, 90), (70, 30)])]  # fmt: skip
    found = task.predict(images)
    for result, image in zip(found, images, strict=True):
        assert len(result["boxes"]) > 0
        assert (result["boxes"][:, 2] <= image.shape[1] + 1e-3).all()
        assert (result["boxes"][:, 3] <= image.shape[0] + 1e-3).all()
        assert set(result["labels"]) <= {"1", "2"} and (np.diff(result["scores"]) <= 0).all()
    again = vh.Task.load(task.save(tmp_path / "det.pt")).predict(images)
    np.testing.assert_allclose(again[0]["boxes"], found[0]["boxes"], atol=1e-4)


def test_cli_evaluates_coco_subsets_and_predict_writes_results_and_pictures(tmp_path, capsys):
    task = vh.Task("detection", backbone="lenet5", class_names=SHAPES, min_size=64, max_size=64, **TINY)
    checkpoint = task.save(tmp_path / "det.pt")
    folder = shapes_split("test")
    spec = f"coco:{folder / 'annotations.json'}:circle,square[:5]"
    assert main(["evaluate", str(checkpoint), spec, "--results", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert f"metrics on {spec}" in out and "AP50" in out and (tmp_path / "r.json").is_file()
    moved = tmp_path / "elsewhere.json"  # the images stay where they are: --images names their folder
    moved.write_text((folder / "annotations.json").read_text())
    assert main(["evaluate", str(checkpoint), f"coco:{moved}[:3]", "--images", str(folder)]) == 0
    assert "AP_triangle" in capsys.readouterr().out
    assert main(["evaluate", str(checkpoint), f"coco:{moved}:horse"]) == 2
    assert "no category 'horse'" in capsys.readouterr().err

    image = folder / "images" / "00001.png"
    assert main(["predict", str(checkpoint), str(image), "--out", str(tmp_path / "out")]) == 0
    assert "detection(s)" in capsys.readouterr().out
    rows = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert all(r["image_id"] == 1 and r["category_id"] in (1, 2, 3) and len(r["bbox"]) == 4 for r in rows)
    assert (tmp_path / "out" / "00001_detections.png").stat().st_size > 1000


@pytest.mark.smoke
def test_fit_writes_the_run_folder_with_figures_and_results(tmp_path):
    task = vh.Task("detection", backbone="lenet5", min_size=64, max_size=64, **TINY)
    history = task.fit("shapes[:16]", "shapes:val[:8]", epochs=1, batch_size=8, progress=False)
    assert "val_AP" in history.rows[0] and task.class_names == list(SHAPES)
    paths = task.plot(history.run_dir, data="shapes:test[:4]")
    names = {p.name for p in paths}
    assert {"curves.png", "detections.png", "precision_recall.png", "detections.json"} <= names


def test_one_annotation_file_splits_into_seeded_parts_by_image(tmp_path):
    annotations = [_square(i, 1, 5, 5, 10 + i % 5) for i in range(1, 21)]
    path = _coco_file(tmp_path, annotations, [{"id": 1, "name": "thing"}], count=20)
    parts = {part: COCOSubset(path, split=part).image_ids for part in ("train", "val", "test")}
    assert [len(ids) for ids in parts.values()] == [16, 2, 2]
    assert sorted(sum(parts.values(), [])) == list(range(1, 21))  # disjoint, and nothing lost
    assert COCOSubset(path, split="val").image_ids == parts["val"]  # seeded: the same every time
    assert COCOSubset(path, split="val", split_seed=1).image_ids != parts["val"]
    assert len(COCOSubset(path, split="val", fractions={"train": 0.5, "val": 0.5, "test": 0.0})) == 10
    task = vh.Task("detection", backbone="lenet5", **TINY)
    source = task.source(f"coco:{path}@test", fitting=True)
    assert source.description.endswith("@test") and [s["image_id"] for s in source.dataset] == parts["test"]
    assert task.source({"coco": str(path), "split": "val"}).dataset.image_ids == parts["val"]
    with pytest.raises(vh.DataError, match="split 'dev' is not one of the parts"):
        COCOSubset(path, split="dev")


def test_training_augmentation_moves_boxes_and_masks_together_and_drops_both():
    task = vh.Task("detection", backbone="lenet5", head="mask_rcnn", num_classes=3, **TINY)
    samples = _square_scenes(30, 64, seed=3)
    pipeline = task.train_transform(vh.data.Source(samples, "scenes"))
    pipeline.set_random_seed(0)
    dropped = changed = 0
    for index, sample in enumerate(samples * 3):
        out = task.to_tensors(pipeline, {"index": index, **sample}, f"scenes[{index}]")
        target = out["target"]
        assert target["masks"].shape[1:] == out["image"].shape[-2:] and len(target["masks"]) == len(target["boxes"])
        dropped += len(sample["boxes"]) - len(target["boxes"])
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            rows, columns = torch.nonzero(mask, as_tuple=True)
            assert len(rows), "a kept box must keep its mask"
            from_mask = torch.tensor([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]).float()
            assert torch.allclose(box, from_mask, atol=2.5), (box, from_mask)  # the box still frames its mask
        changed += not np.array_equal(target["boxes"].numpy(), sample["boxes"][: len(target["boxes"])])
    assert dropped > 0 and changed > 30  # crops did drop boxes, and the geometry did change most samples


def test_the_fastest_installed_coco_backend_is_the_default_and_a_missing_one_is_a_config_error(monkeypatch):
    assert coco_backend() == "hotcoco"  # all three are installed with the dev extra; hotcoco is the fastest
    assert vh.Task("detection", backbone="lenet5", num_classes=2, **TINY).new_metrics(None).backend == "hotcoco"
    with pytest.raises(vh.ConfigError, match="coco_backend='cocoapi'; use 'auto' or one of"):
        vh.Task("detection", backbone="lenet5", num_classes=2, coco_backend="cocoapi")
    monkeypatch.setattr("visionheads.metrics.coco._installed", lambda name: name == "pycocotools")
    assert coco_backend() == "pycocotools"
    with pytest.raises(vh.ConfigError, match="pip install hotcoco"):
        coco_backend("hotcoco")
