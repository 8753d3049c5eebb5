"""COCO subsets through pycocotools, and the built-in `shapes` scenes written as COCO and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionheads as vh
from visionheads.data import COCOSubset
from visionheads.data.catalog import resolve_builtin
from visionheads.data.samples import IGNORE_INDEX
from visionheads.data.shapes import CATEGORIES, shapes_split, write_shapes


def write_coco(root: Path, annotations: list[dict], *, images: list[dict] | None = None) -> Path:
    """A 2-image COCO folder: 40x30 grey PNGs, categories cat (7) and dog (9); returns the JSON path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images = images or [
        {"id": 1, "file_name": "images/a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "images/b.png", "width": 40, "height": 30},
    ]
    for info in images:
        path = root / info["file_name"]
        if path.resolve().is_relative_to(root.resolve()) and path.suffix == ".png":
            Image.fromarray(np.full((30, 40, 3), 90, dtype=np.uint8)).save(path)
    for number, annotation in enumerate(annotations, start=1):
        annotation.setdefault("id", number)
    categories = [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def square(image_id: int, category_id: int, x: float, y: float, side: float, **extra) -> dict:
    polygon = [x, y, x + side, y, x + side, y + side, x, y + side]
    return {"image_id": image_id, "category_id": category_id, "bbox": [x, y, side, side],
            "segmentation": [polygon], "area": side * side, "iscrowd": 0, **extra}  # fmt: skip


def test_samples_hold_xyxy_boxes_contiguous_labels_instance_and_semantic_masks(tmp_path):
    path = write_coco(tmp_path, [square(1, 9, 2, 3, 10), square(1, 7, 20, 10, 8), square(2, 7, 0, 0, 5)])
    dataset = COCOSubset(path)
    assert dataset.class_names == ["background", "cat", "dog"]
    sample = dataset[0]
    assert sample["image"].shape == (30, 40, 3)
    np.testing.assert_allclose(sample["boxes"], [[2, 3, 12, 13], [20, 10, 28, 18]])
    assert sample["labels"].tolist() == [2, 1]  # dog is the 2nd category by id, cat the 1st
    assert sample["masks"].shape == (2, 30, 40)
    assert sample["masks"][0, 5:11, 4:10].all() and not sample["masks"][0, 20:, 30:].any()
    assert sample["mask"][8, 7] == 2 and sample["mask"][14, 24] == 1 and sample["mask"][25, 35] == 0


def test_categories_by_name_or_id_choose_images_and_renumber_labels(tmp_path):
    path = write_coco(tmp_path, [square(1, 9, 2, 3, 10), square(1, 7, 20, 10, 8), square(2, 7, 0, 0, 5)])
    dogs = COCOSubset(path, categories=["dog"])
    assert len(dogs) == 1 and dogs.class_names == ["background", "dog"]
    assert dogs[0]["labels"].tolist() == [1] and set(np.unique(dogs[0]["mask"])) == {0, 1}
    assert len(COCOSubset(path, categories=[9, 7])) == 2
    assert COCOSubset(path, categories=[9, 7])[0]["labels"].tolist() == [1, 2]
    assert len(COCOSubset(path, max_images=1)) == 1
    with pytest.raises(vh.DataError, match=r"no category 'horse'.*\['cat', 'dog'\]"):
        COCOSubset(path, categories=["horse"])


def test_crowd_regions_and_box_only_annotations(tmp_path):
    crowd = square(1, 7, 20, 10, 8, iscrowd=1)
    box_only = {"image_id": 1, "category_id": 9, "bbox": [1, 1, 4, 3]}
    path = write_coco(tmp_path, [crowd, box_only])
    sample = COCOSubset(path)[0]
    assert sample["labels"].tolist() == [2]  # the crowd region is left out
    assert sample["masks"][0].sum() == 12 and sample["masks"][0, 1:4, 1:5].all()
    assert COCOSubset(path, include_crowd=True)[0]["labels"].tolist() == [1, 2]


@pytest.mark.parametrize("form", ["polygon", "rle"])
def test_crowd_regions_are_ignored_in_the_semantic_mask_where_no_object_covers_them(tmp_path, form):
    crowd = square(1, 7, 10, 5, 12, iscrowd=1)  # x 10..22, y 5..17
    if form == "rle":  # uncompressed RLE, column-major, as COCO writes crowds
        area = np.zeros((30, 40), dtype=np.uint8)
        area[5:17, 10:22] = 1
        flat = area.flatten(order="F")
        changes = np.flatnonzero(np.diff(np.r_[0, flat, 0])).tolist()
        counts = np.diff([0, *changes, flat.size]).tolist()
        crowd["segmentation"] = {"size": [30, 40], "counts": [c for c in counts if c > 0]}
    dog = square(1, 9, 18, 12, 8)  # x 18..26, y 12..20: lies partly on the crowd
    path = write_coco(tmp_path, [crowd, dog])
    sample = COCOSubset(path)[0]
    assert sample["labels"].tolist() == [2] and len(sample["boxes"]) == 1  # the crowd is no target
    semantic = sample["mask"]
    crowd_pixels = COCOSubset(path).coco.annToMask(COCOSubset(path).coco.anns[1]) > 0
    dog_pixels = sample["masks"][0] > 0
    assert (semantic[crowd_pixels & ~dog_pixels] == IGNORE_INDEX).all()
    assert (semantic[dog_pixels] == 2).all()
    assert (semantic[~crowd_pixels & ~dog_pixels] == 0).all()
    assert (crowd_pixels & ~dog_pixels).sum() > 50
    with_crowd = COCOSubset(path, include_crowd=True)[0]
    assert with_crowd["labels"].tolist() == [1, 2] and IGNORE_INDEX not in with_crowd["mask"]


def test_an_image_with_only_crowd_regions_is_not_a_sample(tmp_path):
    path = write_coco(tmp_path, [square(1, 7, 20, 10, 8, iscrowd=1), square(2, 7, 0, 0, 5)])
    assert len(COCOSubset(path)) == 1 and COCOSubset(path)[0]["image_id"] == 2


@pytest.mark.parametrize("file_name", ["../outside.png", "/etc/passwd", "images/../../outside.png", ""])
def test_a_file_name_cannot_leave_the_images_folder(tmp_path, file_name):
    root = tmp_path / "coco"
    (tmp_path / "outside.png").write_bytes(b"")
    images = [{"id": 1, "file_name": file_name, "width": 40, "height": 30}]
    dataset = COCOSubset(write_coco(root, [square(1, 7, 0, 0, 5)], images=images))
    with pytest.raises(vh.DataError, match="leaves the images folder"):
        dataset[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON file"),
        ("3", "its top level is not an object"),
        ('{"images": []}', r"missing \['annotations', 'categories'\]"),
        ('{"images": [{"id": 1}], "annotations": [], "categories": []}', r"images\[0\] lacks"),
        ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}', "no image holds"),
    ],
)
def test_malformed_annotation_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(vh.DataError, match=message) as raised:
        COCOSubset(path)
    assert "bad.json" in str(raised.value)
    with pytest.raises(vh.DataError, match="not found"):
        COCOSubset(tmp_path / "missing.json")


def test_missing_image_and_wrong_size_are_data_errors_naming_the_file(tmp_path):
    path = write_coco(tmp_path, [square(1, 7, 0, 0, 5), square(2, 7, 0, 0, 5)])
    (tmp_path / "images" / "a.png").unlink()
    Image.fromarray(np.zeros((31, 40, 3), dtype=np.uint8)).save(tmp_path / "images" / "b.png")
    dataset = COCOSubset(path)
    with pytest.raises(vh.DataError, match=r"a\.png: image file not found.*images_root"):
        dataset[0]
    with pytest.raises(vh.DataError, match=r"b\.png: image is 40x31 but annotations.json says 40x30"):
        dataset[1]


def test_shapes_scenes_are_seeded_and_written_once(tmp_path):
    first = write_shapes(tmp_path / "a", count=5, seed=3, size=64)
    second = write_shapes(tmp_path / "b", count=5, seed=3, size=64)
    assert (first / "annotations.json").read_text() == (second / "annotations.json").read_text()
    assert (first / "images" / "00003.png").read_bytes() == (second / "images" / "00003.png").read_bytes()
    other = write_shapes(tmp_path / "c", count=5, seed=4, size=64)
    assert (other / "annotations.json").read_text() != (first / "annotations.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no staging folder left behind
    folder = shapes_split("val")
    stamp = (folder / "annotations.json").stat().st_mtime_ns
    assert shapes_split("val") == folder and (folder / "annotations.json").stat().st_mtime_ns == stamp


def test_shapes_pixels_agree_with_their_masks_and_boxes(tmp_path):
    dataset = COCOSubset(write_shapes(tmp_path / "s", count=20, seed=0, size=96) / "annotations.json")
    assert dataset.class_names == ["background", *CATEGORIES]
    objects = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        image, masks = sample["image"].astype(float), sample["masks"].astype(bool)
        background = image[sample["mask"] == 0].mean(axis=0)
        for mask, box in zip(masks, sample["boxes"], strict=True):
            assert np.abs(image[mask].mean(axis=0) - background).sum() > 100  # the shape is painted there
            ys, xs = np.nonzero(mask)
            np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1)
            objects += 1
        assert not (masks.sum(axis=0) > 1).any()  # shapes never overlap
    assert objects >= 2 * len(dataset)  # 1-4 shapes per scene


def test_builtin_shapes_splits_resolve_with_the_requested_channels():
    train = resolve_builtin("shapes", 3)
    val = resolve_builtin("shapes:val", 1)
    assert (train.description, len(train.dataset), train.val) == ("shapes:train", 400, "shapes:val")
    assert len(val.dataset) == 100 and val.dataset[0]["image"].shape == (128, 128, 1)
    assert resolve_builtin("shapes:test[:7]", 3).dataset[6]["mask"].shape == (128, 128)
    with pytest.raises(vh.DataError, match="unknown split"):
        resolve_builtin("shapes:bogus", 3)


def test_a_coco_dict_as_in_recipes_chooses_categories_and_images():
    from visionheads.data.sources import resolve_source

    folder = shapes_split("val")
    spec = {"coco": str(folder / "annotations.json"), "categories": ["triangle", "circle"], "max_images": 10}
    source = resolve_source(spec, channels=3, target_key="mask", from_path=None)
    assert source.class_names == ["background", "triangle", "circle"] and len(source.dataset) == 10
    assert source.description == f"coco:{folder / 'annotations.json'}:triangle,circle[:10]"
    assert set(np.unique(source.dataset[0]["mask"])) <= {0, 1, 2}
    with pytest.raises(vh.DataError, match=r"unknown key\(s\) \['category'\]; use \['categories', 'coco', 'fractions'"):
        resolve_source({"coco": "x.json", "category": ["cat"]}, channels=3, target_key="mask", from_path=None)


def test_the_cli_evaluates_a_segmentation_task_on_a_coco_subset(capsys):
    from visionheads.cli import main

    annotations = shapes_split("test") / "annotations.json"
    args = ["fit", "segmentation", "train=shapes[:16]", "val=false", "epochs=1", "backbone=lenet5", "image_size=32",
            f"test={{coco: {annotations}, max_images: 8}}", "plots=false"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"test metrics on coco:{annotations}[:8]" in out and "miou" in out and "iou_triangle" in out
