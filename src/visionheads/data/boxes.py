"""Box targets: checked before they reach a detector, and the albumentations pipelines that move them."""

from __future__ import annotations

import warnings
from typing import Any

import albumentations as A
import numpy as np

from visionheads.data.transforms import ToTensor
from visionheads.errors import DataError

# How far outside the image a box may reach and be clipped with a warning (annotation tools round off the edge);
# beyond it the box is wrong, not sloppy.
CLIP_TOLERANCE = 0.02  # share of the image side
BOX_FIELDS = ("labels", "indices")  # what travels with each box through albumentations


def checked_boxes(boxes: Any, labels: Any, size: tuple[int, int], where: str, num_classes: int) -> tuple:
    """Boxes (N, 4) xyxy float32 in pixels and labels (N,) int64 in 1..num_classes-1, checked against the image.

    A zero-size or negative box, a non-finite one, one far outside the image or a label out of range is a
    DataError naming the box; a box slightly outside the image is clipped to it with a warning.
    """
    height, width = size
    boxes = np.asarray(boxes, dtype=np.float64)
    labels = np.asarray(labels)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{where}['boxes']: shape {boxes.shape}; give (N, 4) boxes as x0, y0, x1, y1 in pixels")
    if labels.shape != (len(boxes),):
        raise DataError(f"{where}['labels']: shape {labels.shape} for {len(boxes)} boxes; give one label per box")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}['labels']: dtype {labels.dtype}; labels are integer class indices")
    for index, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        name = f"{where}['boxes'][{index}] {[round(float(v), 2) for v in box]}"
        if not np.isfinite(box).all():
            raise DataError(f"{name}: not finite")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise DataError(f"{name}: zero or negative size; boxes are x0, y0, x1, y1 with x1 > x0 and y1 > y0")
        if not 1 <= label < num_classes:
            raise DataError(f"{where}['labels'][{index}]: {int(label)} outside 1..{num_classes - 1} (0 is background)")
        slack_x, slack_y = CLIP_TOLERANCE * width, CLIP_TOLERANCE * height
        if box[0] < -slack_x or box[1] < -slack_y or box[2] > width + slack_x or box[3] > height + slack_y:
            raise DataError(f"{name}: outside the {width}x{height} image; boxes are x0, y0, x1, y1 in pixels")
    clipped = np.clip(boxes, 0, [width, height, width, height])
    if not np.array_equal(clipped, boxes):
        warnings.warn(f"{where}: boxes reaching slightly outside the {width}x{height} image were clipped", stacklevel=2)
        keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        if not keep.all():
            raise DataError(f"{where}['boxes']: a box lies outside the {width}x{height} image (nothing left inside)")
    return clipped.astype(np.float32), labels.astype(np.int64)


def box_pipeline(*, train: bool, flips: bool = True, seed: int | None = None) -> A.Compose:
    """To a CxHxW uint8 tensor; in training also flip, scale, crop and colour jitter, with the boxes moving.

    A crop drops a box of which less than 40 % stays in view, and keeps (clipped) the rest; `indices` tells which
    boxes (and so which instance masks) are kept. The detector resizes itself (min_size/max_size).
    """
    steps: list[Any] = []
    if train:
        if flips:
            steps.append(A.HorizontalFlip(p=0.5))
        steps += [
            A.Affine(scale=(0.75, 1.25), keep_ratio=True, balanced_scale=True, p=0.5),
            A.RandomCropFromBorders(crop_left=0.2, crop_right=0.2, crop_top=0.2, crop_bottom=0.2, p=0.3),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    steps.append(ToTensor())
    if not train:
        return A.Compose(steps)  # nothing moves: boxes and masks stay as they are
    params = A.BboxParams(format="pascal_voc", label_fields=list(BOX_FIELDS), min_visibility=0.4, clip=True)
    return A.Compose(steps, bbox_params=params, seed=seed)


def moves_boxes(pipeline: A.Compose) -> bool:
    """Whether `pipeline` transforms boxes (has a box processor), or leaves them as they are."""
    return "bboxes" in getattr(pipeline, "processors", {})
