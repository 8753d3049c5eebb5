"""A COCO subset (pycocotools): chosen categories and images, as sample dicts with boxes, labels and masks."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset, Subset

from visionheads.data.boxes import CLIP_TOLERANCE
from visionheads.data.coco_checks import check_coco, check_segmentation, rle_string_counts
from visionheads.data.images import read_image
from visionheads.data.samples import IGNORE_INDEX, paint_objects
from visionheads.errors import DataError, whole_number

BACKGROUND = "background"
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # one exported file cut into parts by image, seeded


class COCOSubset(Dataset):
    """Images of a COCO annotation file with their objects, restricted to `categories` and `max_images`.

    A sample: `image` HxWxC uint8; `boxes` (N, 4) float32 xyxy in pixels; `labels` (N,) int64 in 1..K (the
    position of the category in `categories`, 0 being background); `masks` (N, H, W) uint8 instance masks;
    `mask` (H, W) int64 semantic mask (0 background, k where an object of label k lies, IGNORE_INDEX (255) on crowd
    regions that no object covers); `image_id`.

    With `split` ("train", "val" or "test"), a seeded shuffle of the images cut by `fractions` (default 0.8 / 0.1 /
    0.1) gives that part: the parts of one file never share an image.
    With `negatives`, images without any chosen object are kept too (no boxes). A bbox without size takes its box
    from its mask (else DataError); one slightly outside the image is clipped with a warning.

    Crowd regions (`iscrowd=1`) are not targets, as in torchvision's reference scripts, unless `include_crowd`:
    a crowd of people is neither one person nor background, so the semantic mask marks it "don't care".

    Annotations pycocotools would crash on or misread (unknown image or category ids, polygons of fewer than 3 points
    or an odd number of coordinates, RLE that does not cover the image) are a DataError naming the annotation.
    `left_out` says what the subset leaves out and why (reason -> count): crowd regions, other categories' objects,
    images without chosen objects, images beyond `max_images`.
    """

    def __init__(
        self,
        annotations: str | Path,
        images_root: str | Path | None = None,
        *,
        categories: Sequence[str | int] | None = None,
        max_images: int | None = None,
        channels: int = 3,
        include_crowd: bool = False,
        negatives: bool = False,
        split: str | None = None,
        fractions: Mapping[str, float] | None = None,
        split_seed: int = 0,
    ) -> None:
        self.annotations = Path(annotations).expanduser()
        self.images_root = Path(images_root).expanduser() if images_root is not None else self.annotations.parent
        self.channels = channels
        self.include_crowd = include_crowd
        self.negatives = negatives
        self.split = split
        self.fractions = dict(fractions or SPLIT_FRACTIONS)
        self.split_seed = split_seed
        if max_images is not None:
            whole_number("max_images", max_images)
        self.coco = _read_coco(self.annotations)
        self.category_ids = self._choose_categories(categories)
        self.category_names = [self.coco.cats[c]["name"] for c in self.category_ids]
        self.class_names = [BACKGROUND, *self.category_names]  # index = label = value in `mask`
        self._label_of = {category: label for label, category in enumerate(self.category_ids, start=1)}
        self.left_out: dict[str, int] = {}  # reason -> how many; what the subset does not hand on, said once by fit
        self.image_ids = self._choose_images(max_images)
        if not self.image_ids:
            raise DataError(f"{self.annotations}: no image holds an object of categories {self.category_names}")

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        info = self.coco.imgs[self.image_ids[index]]
        path = self._image_path(info)
        image = read_image(path, self.channels)
        height, width = int(info["height"]), int(info["width"])
        if image.shape[:2] != (height, width):
            raise DataError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} but {self.annotations.name} says "
                f"{width}x{height}; fix the file or its width/height in the annotations"
            )
        boxes, labels, masks, crowds = [], [], [], []
        for annotation in self._annotations_of(info["id"], crowd=True):
            mask = self._mask(annotation, height, width)
            if annotation.get("iscrowd") and not self.include_crowd:
                crowds.append(mask if mask is not None else _box_mask(height, width, self._box(annotation, None)))
                continue
            box = self._box(annotation, mask)
            boxes.append(box)
            labels.append(self._label_of[annotation["category_id"]])
            masks.append(mask if mask is not None else _box_mask(height, width, box))  # boxes only: the box
        semantic = np.zeros((height, width), dtype=np.int64)
        for crowd in crowds:  # painted first: an object lying on a crowd region keeps its label
            semantic[crowd > 0] = IGNORE_INDEX
        paint_objects(semantic, masks, labels)
        return {
            "image": image,
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "masks": np.asarray(masks, dtype=np.uint8).reshape(-1, height, width),
            "mask": semantic,
            "image_id": int(info["id"]),
        }

    def _where(self, annotation: dict[str, Any]) -> str:
        return f"{self.annotations}: annotation {annotation['id']} (image {annotation['image_id']})"

    def _mask(self, annotation: dict[str, Any], height: int, width: int) -> np.ndarray | None:
        """The annotation's HxW uint8 mask as pycocotools draws it, None without a segmentation; malformed polygons
        and RLE are a DataError (pycocotools would crash on them, or read them as something else)."""
        segmentation = annotation.get("segmentation")
        if segmentation is None or segmentation == [] or segmentation == {}:
            return None
        check_segmentation(segmentation, height, width, self._where(annotation))
        return decode_rle(self.coco.annToRLE(annotation))

    def _box(self, annotation: dict[str, Any], mask: np.ndarray | None) -> tuple:
        """The annotation's box as xyxy inside the image: from its mask where the bbox has no size (in float32, as
        samples hold it); a DataError where it has neither, or lies outside the image; clipped with a warning where
        it is only slightly out."""
        info = self.coco.imgs[annotation["image_id"]]
        height, width = int(info["height"]), int(info["width"])
        where = self._where(annotation)
        x, y, w, h = (float(v) for v in annotation["bbox"])
        if np.isfinite([x, y, w, h]).all() and w > 0 and h > 0:
            x1, y1 = x + w, y + h
            slack_x, slack_y = CLIP_TOLERANCE * width, CLIP_TOLERANCE * height
            if x < -slack_x or y < -slack_y or x1 > width + slack_x or y1 > height + slack_y:
                raise DataError(f"{where}: bbox {annotation['bbox']} lies outside the {width}x{height} image")
            clipped = (max(0.0, x), max(0.0, y), min(float(width), x1), min(float(height), y1))
            corners = np.float32(clipped)
            if corners[2] > corners[0] and corners[3] > corners[1]:  # not flattened by float32 or by the clipping
                if clipped != (x, y, x1, y1):
                    message = f"{self.annotations}: boxes reaching slightly outside their image were clipped"
                    warnings.warn(message, stacklevel=3)
                return clipped
        if mask is None or not mask.any():
            reason = "no pixels in its mask" if mask is not None else "no mask"
            raise DataError(
                f"{where}: bbox {annotation['bbox']} has no size and {reason} to take one from (in the "
                f"{width}x{height} image); fix or remove it"
            )
        rows, columns = np.nonzero(mask)  # the box pycocotools' own toBbox gives the mask
        return float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1)

    def _choose_categories(self, categories: Sequence[str | int] | None) -> list[int]:
        by_name = {category["name"]: category_id for category_id, category in self.coco.cats.items()}
        if categories is None:
            return sorted(self.coco.cats)
        chosen = []
        for category in categories:
            category_id = by_name.get(category) if isinstance(category, str) else int(category)
            if category_id not in self.coco.cats:
                raise DataError(
                    f"{self.annotations}: no category {category!r}; it has {sorted(by_name)} "
                    f"(ids {sorted(self.coco.cats)})"
                )
            chosen.append(category_id)
        return chosen

    def _choose_images(self, max_images: int | None) -> list[int]:
        """Images holding any chosen category (getImgIds(catIds=...) would demand all of them), in id order; every
        image with `negatives`. Counts what is left out on the way in `left_out`."""
        image_ids = sorted(self.coco.imgs)
        if self.split is not None:  # cut over every image of the file: parts stay apart whatever categories are chosen
            part = set(self._split_part(image_ids))
            image_ids = [i for i in image_ids if i in part]
        if not self.negatives:  # with negatives, images without a chosen object teach "nothing here"
            chosen = [i for i in image_ids if self._annotations_of(i)]
            crowd_only = sum(1 for i in image_ids if self._annotations_of(i, crowd=True)) - len(chosen)
            self._count("images with only crowd regions of the chosen categories left out", crowd_only)
            self._count(
                "images without an object of the chosen categories left out (negatives=True keeps them)",
                len(image_ids) - len(chosen) - crowd_only,
            )
            image_ids = chosen
        if max_images is not None:
            self._count(f"images beyond max_images={max_images} left out", len(image_ids) - max_images)
            image_ids = image_ids[:max_images]
        others = crowds = 0
        for image_id in image_ids:
            for annotation in self.coco.imgToAnns.get(image_id, []):
                if annotation["category_id"] not in self._label_of:
                    others += 1
                elif annotation.get("iscrowd") and not self.include_crowd:
                    crowds += 1
        self._count("annotations of categories not chosen left out (their objects are background here)", others)
        self._count("crowd annotations left out (iscrowd=1: ignore regions, not objects; include_crowd=True)", crowds)
        return image_ids

    def _count(self, reason: str, count: int) -> None:
        if count > 0:
            self.left_out[reason] = count

    def _split_part(self, image_ids: list[int]) -> list[int]:
        """The `split` part of a seeded shuffle of the images cut by `fractions` (in order train, val, test)."""
        fractions = self.fractions
        if self.split not in fractions:
            raise DataError(f"{self.annotations}: split {self.split!r} is not one of the parts {sorted(fractions)}")
        if any(not 0 <= f <= 1 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
            raise DataError(f"{self.annotations}: split fractions {fractions} must be in [0, 1] and add up to 1")
        order = np.random.default_rng(self.split_seed).permutation(len(image_ids))
        shuffled = [image_ids[i] for i in order]
        bounds = np.round(np.cumsum([0.0, *fractions.values()]) * len(image_ids)).astype(int)
        position = list(fractions).index(self.split)
        return sorted(shuffled[bounds[position] : bounds[position + 1]])

    def _annotations_of(self, image_id: int, *, crowd: bool = False) -> list[dict[str, Any]]:
        """The image's annotations of the chosen categories; crowd regions too where `crowd` or `include_crowd`."""
        return [
            annotation
            for annotation in self.coco.imgToAnns.get(image_id, [])
            if annotation["category_id"] in self._label_of
            and (crowd or self.include_crowd or not annotation.get("iscrowd"))
        ]

    def _image_path(self, info: dict[str, Any]) -> Path:
        root = self.images_root.resolve()
        path = (root / str(info.get("file_name", ""))).resolve()
        if not path.is_relative_to(root) or path == root:
            raise DataError(
                f"{self.annotations}: image {info.get('id')} has file_name {info.get('file_name')!r}, "
                f"which leaves the images folder {root}; file names must be relative paths inside it"
            )
        if not path.is_file():
            raise DataError(
                f"{path}: image file not found (image {info['id']} of {self.annotations.name}); "
                "pass images_root= the folder that holds the file names of the annotations"
            )
        return path


@dataclass(frozen=True)
class COCOView:
    """Where the samples of a dataset come from in a COCO file: its index, the images and categories chosen."""

    coco: COCO
    image_ids: list[int]  # in the dataset's order
    category_ids: list[int]  # label k is category_ids[k - 1]
    annotations: Path


def coco_view(dataset: Any) -> COCOView | None:
    """The COCO file behind `dataset` (a COCOSubset, or a Subset or view of one), or None for other data."""
    positions: list[int] | None = None  # positions in the inner dataset, outermost selection applied last
    while dataset is not None and not isinstance(dataset, COCOSubset):
        if isinstance(dataset, Subset):
            inner = [int(i) for i in dataset.indices]
            positions = inner if positions is None else [inner[i] for i in positions]
        dataset = getattr(dataset, "dataset", None)
    if dataset is None:
        return None
    image_ids = dataset.image_ids if positions is None else [dataset.image_ids[i] for i in positions]
    return COCOView(dataset.coco, image_ids, list(dataset.category_ids), dataset.annotations)


def coco_at(path: Path, channels: int) -> COCOSubset | None:
    """The COCO data at `path`: an annotation file (`.json`) or a folder with `annotations.json`; else None."""
    if path.is_file() and path.suffix == ".json":
        return COCOSubset(path, channels=channels)
    if (path / "annotations.json").is_file():
        return COCOSubset(path / "annotations.json", path, channels=channels)
    return None


def _read_coco(path: Path) -> COCO:
    """pycocotools' index of `path`, with a DataError for a missing file or anything not COCO-shaped."""
    if not path.is_file():
        raise DataError(f"{path}: COCO annotation file not found")
    try:
        payload = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a JSON file ({error})") from error
    check_coco(payload, path)
    _fill_evaluation_fields(payload, path)
    coco = COCO()
    coco.dataset = payload
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def _fill_evaluation_fields(payload: dict[str, Any], path: Path) -> None:
    # COCOeval reads every annotation's `area` and `iscrowd` (a KeyError deep inside it when a file omits them);
    # a file without them gets the values COCO defines: the segment's area (else the box's) and 0.
    sizes = {image["id"]: (int(image["height"]), int(image["width"])) for image in payload["images"]}
    for annotation in payload["annotations"]:
        annotation.setdefault("iscrowd", 0)
        if "area" in annotation:
            continue
        segmentation = annotation.get("segmentation")
        if segmentation:
            height, width = sizes[annotation["image_id"]]
            check_segmentation(segmentation, height, width, f"{path}: annotation {annotation['id']}")
            if isinstance(segmentation, list):  # polygons, as pycocotools' annToRLE reads them
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation["counts"], list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(segmentation, height, width)
            else:
                rle = {"size": segmentation["size"], "counts": str(segmentation["counts"]).encode()}
            annotation["area"] = float(mask_utils.area(rle))
        else:
            annotation["area"] = float(annotation["bbox"][2] * annotation["bbox"][3])


def _box_mask(height: int, width: int, box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)  # a box thinner than a pixel still marks the pixel it lies on
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The (H, W) uint8 mask of a compressed RLE (`{"size": [H, W], "counts": str | bytes}`, as pycocotools' encode,
    frPyObjects, merge and annToRLE give it), equal to `pycocotools.mask.decode(rle)`.

    Decoded here because pycocotools' decoder (2.0.11) hands NumPy an array-like whose `__array__` takes no `copy`
    keyword: NumPy 2 warns (DeprecationWarning) on every mask, and will refuse once it drops that fallback.
    """
    height, width = (int(side) for side in rle["size"])
    runs = rle_string_counts(rle["counts"])
    values = (np.arange(len(runs)) % 2).astype(np.uint8)  # runs of 0s and 1s in turn, a run of 0s first
    return np.repeat(values, runs).reshape(width, height).T  # column after column (Fortran order)
