"""YOLO-format datasets as Ultralytics keeps them: a `data.yaml` (`path`, `train`/`val`/`test`, `names`) and per
image a `labels/<name>.txt` beside `images/<name>.<ext>` (the last `images` folder of its path swapped for
`labels`), one object per line: `class cx cy w h` (a box) or `class x1 y1 x2 y2 ...` (a polygon), normalised to the
image's width and height. An image without a label file holds no objects.

Read as `yolo:DATA.yaml[:train|val|test]` (default train), or a `.yaml` path (its train split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from visionheads.data.coco import BACKGROUND, decode_rle
from visionheads.data.images import IMAGE_SUFFIXES, read_image
from visionheads.data.samples import paint_objects
from visionheads.errors import DataError

SPLITS = ("train", "val", "test")


class YOLODataset(Dataset):
    """Samples `{"image", "boxes", "labels", "image_id"}` of one split (boxes xyxy in pixels, labels from 1); where
    every object of an image is a polygon, also `masks` (N, H, W) uint8 and the class mask `mask` (HxW)."""

    def __init__(self, data_yaml: str | Path, split: str = "train", *, channels: int = 3) -> None:
        self.data_yaml = Path(data_yaml).expanduser()
        self.split = split
        self.channels = channels
        config = _read_config(self.data_yaml)
        if split not in SPLITS:
            raise DataError(f"{self.data_yaml}: split {split!r}; use one of {SPLITS}")
        if not config.get(split):
            raise DataError(f"{self.data_yaml}: no {split!r} entry")
        self.root = (self.data_yaml.parent / str(config.get("path") or ".")).resolve()
        names = config.get("names")
        if isinstance(names, dict):
            names = [names[key] for key in sorted(names)]
        if not isinstance(names, list) or not names:
            raise DataError(f"{self.data_yaml}: 'names' must list the class names (or map index to name)")
        self.class_names = [BACKGROUND, *(str(name) for name in names)]
        entries = config[split] if isinstance(config[split], list) else [config[split]]
        self.images = sorted({image for entry in entries for image in self._images_of(str(entry))})
        if not self.images:
            raise DataError(f"{self.data_yaml}: the {split} split lists no image files")

    def _images_of(self, entry: str) -> list[Path]:
        place = self._inside(entry, entry)
        if place.is_dir():
            return [p for p in place.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if place.suffix == ".txt" and place.is_file():  # a list of image paths, relative to the root
            return [self._inside(line.strip(), f"{place}: {line.strip()}") for line in place.read_text().splitlines()
                    if line.strip()]  # fmt: skip
        raise DataError(f"{self.data_yaml}: {entry!r} is neither a folder of images nor a .txt list of them")

    def _inside(self, relative: str, what: str) -> Path:
        place = (self.root / relative).resolve()
        if not place.is_relative_to(self.root):
            raise DataError(f"{self.data_yaml}: {what!r} leaves the dataset's folder {self.root}")
        return place

    def __len__(self) -> int:
        return len(self.images)

    def label_path(self, image: Path) -> Path:
        """Ultralytics' rule: the last `images` folder of the image's path becomes `labels`, the suffix `.txt`."""
        parts = list(image.parts)
        last = max((i for i, part in enumerate(parts) if part == "images"), default=None)
        if last is None:
            raise DataError(f"{image}: a YOLO image lies in an images/ folder (its labels in the labels/ beside it)")
        parts[last] = "labels"
        return Path(*parts).with_suffix(".txt")

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.images[index]
        image = read_image(path, self.channels)
        height, width = image.shape[:2]
        labels, boxes, polygons = [], [], []
        label_file = self.label_path(path)
        lines = label_file.read_text().splitlines() if label_file.is_file() else []
        for number, line in enumerate(lines, start=1):
            values = line.split()
            if not values:
                continue
            try:
                cls, numbers = int(values[0]), np.asarray([float(v) for v in values[1:]])
            except ValueError as error:
                raise DataError(f"{label_file}, line {number}: not numbers ({error})") from error
            if not 0 <= cls < len(self.class_names) - 1:
                raise DataError(f"{label_file}, line {number}: class {cls} outside 0..{len(self.class_names) - 2}")
            if len(numbers) == 4:
                cx, cy, w, h = numbers * [width, height, width, height]
                box, polygon = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], None
            elif len(numbers) >= 6 and len(numbers) % 2 == 0:
                polygon = (numbers.reshape(-1, 2) * [width, height]).reshape(-1)
                box = [polygon[0::2].min(), polygon[1::2].min(), polygon[0::2].max(), polygon[1::2].max()]
            else:
                raise DataError(
                    f"{label_file}, line {number}: {len(numbers)} numbers after the class; a box has 4 (cx cy w h), "
                    "a polygon an even number from 6"
                )
            labels.append(cls + 1)
            boxes.append(np.clip(box, 0, [width, height, width, height]))
            polygons.append(polygon)
        sample: dict[str, Any] = {
            "image": image,
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "image_id": index,
        }
        if all(polygon is not None for polygon in polygons):
            masks = np.stack([polygon_mask(p, height, width) for p in polygons]) if polygons else np.zeros(
                (0, height, width), dtype=np.uint8)  # fmt: skip
            semantic = paint_objects(np.zeros((height, width), dtype=np.int64), masks, labels)
            sample |= {"masks": masks, "mask": semantic}
        return sample


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """A polygon (x1, y1, x2, y2, ...) in pixels as an (H, W) uint8 mask, rasterised as pycocotools does COCO's."""
    rle = mask_utils.frPyObjects([list(map(float, polygon))], height, width)
    return decode_rle(mask_utils.merge(rle))


def yolo_at(path: Path, channels: int, split: str = "train") -> YOLODataset | None:
    """The YOLO data described by `path` (a .yaml file); else None."""
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return YOLODataset(path, split, channels=channels)
    return None


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: YOLO data.yaml not found")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(config, dict):
        raise DataError(f"{path}: a YOLO data.yaml maps path, train, val, test and names")
    return config
