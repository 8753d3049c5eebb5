"""Instance-mask folders (pixel value k = object k) and YOLO-layout datasets: read by detection and segmentation;
the same scenes written as YOLO and as COCO give the same samples; Penn-Fudan's release prepares into instance-mask
folders split as torchvision's tutorial splits it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import visionheads as vh
from visionheads.data import COCOSubset
from visionheads.data.instances import InstanceMasks
from visionheads.data.shapes import shapes_split
from visionheads.data.yolo import YOLODataset

REPO = Path(__file__).resolve().parents[2]


def _instance_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "instances").mkdir()
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("person\nbicycle\n")
    image = np.full((20, 30, 3), 90, dtype=np.uint8)
    instances = np.zeros((20, 30), dtype=np.uint8)
    instances[2:8, 3:10] = 1  # rows 2-7, columns 3-9
    instances[10:18, 20:28] = 2
    instances[0, :] = 255  # void
    Image.fromarray(image).save(root / "images" / "a.png")
    Image.fromarray(instances).save(root / "instances" / "a.png")
    (root / "labels" / "a.txt").write_text("bicycle\n0\n")  # object 1 a bicycle, object 2 class 0 (person)
    Image.fromarray(image).save(root / "images" / "b.jpg")
    Image.fromarray(np.where(instances == 1, 1, 0).astype(np.uint8)).save(root / "instances" / "b.png")
    return root


def test_an_instance_mask_folder_gives_boxes_masks_and_a_class_mask(tmp_path):
    folder = _instance_folder(tmp_path / "data")
    dataset = InstanceMasks(folder)
    assert dataset.class_names == ["background", "person", "bicycle"]
    sample = dataset[0]
    np.testing.assert_array_equal(sample["boxes"], [[3, 2, 10, 8], [20, 10, 28, 18]])  # pixel edges, as COCO's
    assert sample["labels"].tolist() == [2, 1] and sample["masks"].shape == (2, 20, 30)
    assert sample["masks"][0].sum() == 6 * 7 and (sample["mask"][0] == 255).all() and sample["mask"][3, 5] == 2
    assert dataset[1]["labels"].tolist() == [1]  # no labels/b.txt: every object is the first class
    detection = vh.Task("detection", backbone="lenet5", min_size=32, max_size=32).source(folder, fitting=True)
    assert detection.class_names == ["background", "person", "bicycle"]
    segmentation = vh.Task("segmentation", backbone="lenet5", image_size=32).source(folder, fitting=True)
    assert segmentation.class_names == ["background", "person", "bicycle"]
    (folder / "labels" / "a.txt").write_text("car\n")
    with pytest.raises(vh.DataError, match=r"a\.txt: line 1 \('car'\) should name object 1's class"):
        dataset[0]


def _write_yolo(root: Path, coco: COCOSubset, *, polygons: bool) -> Path:
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    ids = {category: index for index, category in enumerate(coco.category_ids)}
    for image_id in coco.image_ids:
        info = coco.coco.imgs[image_id]
        width, height = info["width"], info["height"]
        name = Path(info["file_name"])
        Image.open(coco.images_root / name).save(root / "images" / "val" / name.name)
        lines = []
        for annotation in coco.coco.imgToAnns[image_id]:
            if polygons:
                polygon = np.asarray(annotation["segmentation"][0], dtype=np.float64).reshape(-1, 2) / [width, height]
                lines.append(" ".join([str(ids[annotation["category_id"]]), *(f"{v:.10f}" for v in polygon.ravel())]))
            else:
                x, y, w, h = annotation["bbox"]
                values = [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
                lines.append(" ".join([str(ids[annotation["category_id"]]), *(f"{v:.10f}" for v in values)]))
        (root / "labels" / "val" / f"{name.stem}.txt").write_text("\n".join(lines) + "\n")
    names = [coco.coco.cats[c]["name"] for c in coco.category_ids]
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": names}))
    return root / "data.yaml"


@pytest.fixture(scope="module")
def shapes_coco() -> COCOSubset:
    folder = shapes_split("val")
    return COCOSubset(folder / "annotations.json", folder)


def test_yolo_boxes_equal_the_same_scenes_read_from_coco(shapes_coco, tmp_path):
    data = _write_yolo(tmp_path / "boxes", shapes_coco, polygons=False)
    yolo = YOLODataset(data, "val")
    assert yolo.class_names == shapes_coco.class_names and len(yolo) == len(shapes_coco)
    by_name = {path.name: index for index, path in enumerate(yolo.images)}
    for index, image_id in enumerate(shapes_coco.image_ids[:20]):
        ours = yolo[by_name[Path(shapes_coco.coco.imgs[image_id]["file_name"]).name]]
        theirs = shapes_coco[index]
        np.testing.assert_array_equal(ours["image"], theirs["image"])
        np.testing.assert_allclose(ours["boxes"], theirs["boxes"], atol=1e-3)
        assert ours["labels"].tolist() == theirs["labels"].tolist() and "masks" not in ours  # boxes hold no masks


def test_yolo_polygons_give_the_masks_of_the_same_coco_polygons(shapes_coco, tmp_path):
    data = _write_yolo(tmp_path / "polygons", shapes_coco, polygons=True)
    yolo = YOLODataset(data, "val")
    by_name = {path.name: index for index, path in enumerate(yolo.images)}
    worst = 1.0
    for index, image_id in enumerate(shapes_coco.image_ids[:20]):
        ours = yolo[by_name[Path(shapes_coco.coco.imgs[image_id]["file_name"]).name]]
        theirs = shapes_coco[index]
        for a, b in zip(ours["masks"].astype(bool), theirs["masks"].astype(bool), strict=True):
            worst = min(worst, (a & b).sum() / (a | b).sum())
        assert ours["labels"].tolist() == theirs["labels"].tolist()
    assert worst >= 0.99
    task = vh.Task("segmentation", backbone="lenet5", image_size=32)
    assert task.source(f"yolo:{data}:val", fitting=True).class_names == shapes_coco.class_names


def test_bad_yolo_files_are_data_errors_naming_file_and_line(tmp_path):
    root = tmp_path / "bad"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(root / "images" / "train" / "x.png")
    (root / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["a", "b"]}))
    with pytest.raises(vh.DataError, match=r"x\.txt, line 2: class 3 outside 0\.\.1"):
        YOLODataset(root / "data.yaml")[0]
    (root / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(vh.DataError, match="3 numbers after the class"):
        YOLODataset(root / "data.yaml")[0]
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "../../etc", "names": ["a"]}))
    with pytest.raises(vh.DataError, match="leaves the dataset's folder"):
        YOLODataset(root / "data.yaml")


def test_penn_fudans_release_prepares_into_the_tutorials_split(tmp_path):
    source = tmp_path / "PennFudanPed"
    (source / "PNGImages").mkdir(parents=True)
    (source / "PedMasks").mkdir()
    names = [f"{'Fudan' if i % 2 else 'Penn'}Ped{i:05d}" for i in range(60)]
    for name in names:
        Image.fromarray(np.full((12, 16, 3), 50, dtype=np.uint8)).save(source / "PNGImages" / f"{name}.png")
        mask = np.zeros((12, 16), dtype=np.uint8)
        mask[2:6, 3:9] = 1
        Image.fromarray(mask).save(source / "PedMasks" / f"{name}_mask.png")
    script = REPO / "datasets" / "pennfudan" / "prepare.py"
    result = subprocess.run([sys.executable, str(script), str(source), str(tmp_path / "out"), "--test", "20"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    torch.manual_seed(1)
    order = torch.randperm(len(names)).tolist()
    expected_test = sorted(sorted(names)[i] for i in order[-20:])
    assert sorted(p.stem for p in (tmp_path / "out" / "test" / "images").iterdir()) == expected_test
    train = InstanceMasks(tmp_path / "out" / "train")
    assert len(train) == 40 and train.class_names == ["background", "person"]
    np.testing.assert_array_equal(train[0]["boxes"], [[3, 2, 9, 6]])
    json.dumps(train.class_names)


def test_segnets_camvid_folder_prepares_into_split_mask_folders(tmp_path):
    source = tmp_path / "CamVid"
    rng = np.random.default_rng(0)
    truth = {}
    for split in ("train", "val", "test"):
        (source / split).mkdir(parents=True)
        (source / f"{split}annot").mkdir()
        for name in ("0001TP_000010", "0016E5_000020"):
            photo = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
            label = rng.integers(0, 12, size=(12, 16), dtype=np.uint8)  # 11: unlabelled
            Image.fromarray(photo).save(source / split / f"{name}.png")
            Image.fromarray(label).save(source / f"{split}annot" / f"{name}.png")
            truth[split, name] = photo, label
    script = REPO / "datasets" / "camvid" / "prepare.py"
    result = subprocess.run([sys.executable, str(script), str(source), str(tmp_path / "out"), "--size", "6", "8"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    task = vh.Task("segmentation", backbone="lenet5", image_size=16)
    train = task.source(tmp_path / "out" / "train", fitting=True)
    assert train.class_names[:3] == ["Sky", "Building", "Pole"] and len(train.class_names) == 11
    for index, name in enumerate(("0001TP_000010", "0016E5_000020")):
        photo, label = truth["train", name]
        sample = train.dataset[index]
        expected = np.where(label == 11, 255, label)[1::2, 1::2]  # nearest neighbour of a 2x reduction
        np.testing.assert_array_equal(sample["mask"], expected)
        area = photo.reshape(6, 2, 8, 2, 3).mean(axis=(1, 3))
        assert np.abs(sample["image"].astype(float) - area).max() <= 1  # pixel-area averaging
    (source / "valannot" / "0016E5_000020.png").unlink()
    result = subprocess.run([sys.executable, str(script), str(source), str(tmp_path / "out2")], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0 and "valannot/0016E5_000020.png: missing" in result.stderr
