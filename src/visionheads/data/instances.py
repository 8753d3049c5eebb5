"""Instance-mask folders: `root/images/<name>.<ext>` with `root/instances/<name>.png`, whose pixel value k is
object k (0: background, 255: void, as Pascal VOC's SegmentationObject), as Penn-Fudan, CVAT and many exports ship.

Object classes: `root/classes.txt` names them (one per line); `root/labels/<name>.txt`, when there, gives object
k's class on line k (a name or an index into classes.txt, from 0); without it every object is of the first class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visionheads.data.coco import BACKGROUND
from visionheads.data.images import read_image
from visionheads.data.masks import paired_pngs, read_index_png
from visionheads.data.samples import IGNORE_INDEX, paint_objects
from visionheads.errors import DataError

VOID = 255  # instance-mask pixels that belong to no object and are not background either (VOC's boundaries)
DEFAULT_CLASS = "object"


class InstanceMasks(Dataset):
    """Samples `{"image", "boxes", "labels", "masks", "mask", "image_id"}`: detection's instances (boxes xyxy in pixel
    edges, from each mask's extent; labels from 1; masks (N, H, W) uint8) and segmentation's class mask (HxW, the
    class of each object's pixels, 0 background, 255 void)."""

    def __init__(self, root: str | Path, *, channels: int = 3) -> None:
        self.root = Path(root)
        self.channels = channels
        self.images, self.masks = paired_pngs(
            self.root, "instances", "instance mask", "PNGs whose pixel value k is object k"
        )
        listed = self.root / "classes.txt"
        names = [n.strip() for n in listed.read_text().splitlines() if n.strip()] if listed.is_file() else []
        self.object_classes = [name for name in names if name != BACKGROUND] or [DEFAULT_CLASS]
        self.class_names = [BACKGROUND, *self.object_classes]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = read_image(self.images[index], self.channels)
        instances = read_index_png(self.masks[index], "instance mask", "object numbers")
        if instances.shape != image.shape[:2]:
            raise DataError(f"{self.masks[index]}: size {instances.shape} but its image is {image.shape[:2]}")
        ids = [int(k) for k in np.unique(instances) if k not in (0, VOID)]
        labels = self._labels(index, ids)
        masks = np.stack([instances == k for k in ids]).astype(np.uint8) if ids else np.zeros((0, *instances.shape),
                                                                                            dtype=np.uint8)  # fmt: skip
        semantic = paint_objects(np.zeros(instances.shape, dtype=np.int64), masks, labels)
        semantic[instances == VOID] = IGNORE_INDEX
        return {"image": image, "boxes": mask_boxes(masks), "labels": labels, "masks": masks, "mask": semantic,
                "image_id": index}  # fmt: skip

    def _labels(self, index: int, ids: list[int]) -> np.ndarray:
        path = self.root / "labels" / f"{self.images[index].stem}.txt"
        if not path.is_file():
            return np.ones(len(ids), dtype=np.int64)
        lines = [line.strip() for line in path.read_text().splitlines()]
        labels = []
        for k in ids:
            entry = lines[k - 1] if k - 1 < len(lines) else ""
            if entry in self.object_classes:
                labels.append(self.object_classes.index(entry) + 1)
            elif entry.isdigit() and int(entry) < len(self.object_classes):
                labels.append(int(entry) + 1)
            else:
                raise DataError(
                    f"{path}: line {k} ({entry!r}) should name object {k}'s class: one of {self.object_classes} "
                    f"(classes.txt) or its index 0..{len(self.object_classes) - 1}"
                )
        return np.asarray(labels, dtype=np.int64)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) xyxy in pixel edges around instance masks (N, H, W), as pycocotools' toBbox gives them."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows):
            boxes[i] = (columns[0], rows[0], columns[-1] + 1, rows[-1] + 1)
    return boxes
