"""Checks of COCO annotations before pycocotools reads them: what it would crash on or silently misread is a DataError.

pycocotools trusts its input: an annotation of an unknown image or category is silently never seen, a 2-point polygon
is read as a bbox, an odd coordinate is dropped, RLE counts that do not cover the image decode to uninitialised memory,
and NaN or far-away polygon points exhaust memory. Valid files pass unchanged and are read by pycocotools as before.
"""

from __future__ import annotations

import numbers
from collections import Counter
from pathlib import Path
from typing import Any

from visionheads.errors import DataError

REQUIRED_FIELDS = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}
_SEGMENTATION_FORMS = "polygons [[x1, y1, x2, y2, x3, y3, ...], ...] or RLE {'size': [height, width], 'counts': ...}"


def check_coco(payload: Any, path: Path) -> None:
    """DataError naming the entry, field and fix of anything in a COCO JSON that pycocotools cannot index right."""
    if not isinstance(payload, dict):
        raise DataError(f"{path}: not COCO instances JSON; its top level is not an object")
    missing = [key for key in REQUIRED_FIELDS if key not in payload]
    if missing:
        raise DataError(f"{path}: not COCO instances JSON; missing {missing}")
    for key, fields in REQUIRED_FIELDS.items():
        if not isinstance(payload[key], list):
            raise DataError(f"{path}: '{key}' is a {type(payload[key]).__name__}; COCO holds a list of objects there")
        for position, entry in enumerate(payload[key]):
            if not isinstance(entry, dict):
                raise DataError(f"{path}: {key}[{position}] is a {type(entry).__name__}, not an object")
            absent = [field for field in fields if field not in entry]
            if absent:
                raise DataError(f"{path}: {key}[{position}] lacks {absent}")
    image_ids = _unique_ids(payload["images"], "images", path)
    category_ids = _unique_ids(payload["categories"], "categories", path)
    _unique_ids(payload["annotations"], "annotations", path)
    for position, image in enumerate(payload["images"]):
        for field in ("width", "height"):
            if not _whole(image[field]) or image[field] < 1:
                raise DataError(
                    f"{path}: images[{position}] (id {image['id']}) has {field} {image[field]!r}; "
                    "give the image's size in pixels (a whole number >= 1)"
                )
    names = [category["name"] for category in payload["categories"]]
    for position, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise DataError(f"{path}: categories[{position}] has name {name!r}; category names are non-empty strings")
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise DataError(f"{path}: category name(s) {repeated} appear more than once; give each category its own name")
    for annotation in payload["annotations"]:
        _check_annotation(annotation, image_ids, category_ids, path)


def check_segmentation(segmentation: Any, height: int, width: int, where: str) -> None:
    """DataError naming `where` unless `segmentation` is polygons or RLE that pycocotools reads as meant."""
    if isinstance(segmentation, list):
        for index, polygon in enumerate(segmentation):
            _check_polygon(polygon, height, width, f"{where}: segmentation[{index}]")
    elif isinstance(segmentation, dict):
        _check_rle(segmentation, height, width, f"{where}: segmentation (RLE)")
    else:
        raise DataError(f"{where}: segmentation is a {type(segmentation).__name__}; give {_SEGMENTATION_FORMS}")


def _check_annotation(annotation: dict[str, Any], image_ids: set[int], category_ids: set[int], path: Path) -> None:
    where = f"{path}: annotation {annotation['id']}"
    image_id, category_id = annotation["image_id"], annotation["category_id"]
    if not _whole(image_id) or image_id not in image_ids:
        raise DataError(f"{where} has image_id {image_id!r}, which no image of the file has; fix it or remove it")
    if not _whole(category_id) or category_id not in category_ids:
        raise DataError(
            f"{where} (image {image_id}) has category_id {category_id!r}, which is not among the categories "
            f"{sorted(category_ids)}; fix it, add the category or remove the annotation"
        )
    bbox = annotation["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_real(v) for v in bbox):
        raise DataError(f"{where} (image {image_id}): bbox {bbox!r} is not 4 numbers [x, y, width, height]")
    if annotation.get("iscrowd", 0) not in (0, 1):  # True and False compare equal to 1 and 0
        raise DataError(f"{where} (image {image_id}): iscrowd {annotation['iscrowd']!r}; give 0 or 1")


def _unique_ids(entries: list[dict[str, Any]], key: str, path: Path) -> set[int]:
    ids: set[int] = set()
    for position, entry in enumerate(entries):
        value = entry["id"]
        if not _whole(value):
            raise DataError(f"{path}: {key}[{position}] has id {value!r}; COCO ids are whole numbers")
        if value in ids:
            raise DataError(f"{path}: {key}[{position}] repeats id {value}; ids must be unique within '{key}'")
        ids.add(value)
    return ids


def _check_polygon(polygon: Any, height: int, width: int, where: str) -> None:
    if not isinstance(polygon, list) or not all(_real(v) for v in polygon):
        raise DataError(f"{where}: a polygon is a flat list of numbers [x1, y1, x2, y2, ...], got {_short(polygon)}")
    if len(polygon) % 2 or len(polygon) < 6:
        raise DataError(
            f"{where}: a polygon of {len(polygon)} coordinate(s); give at least 3 points as an even number of "
            f"coordinates [x1, y1, x2, y2, x3, y3, ...] (pycocotools would read {_short(polygon)} wrongly)"
        )
    # Far-away (or non-finite) points make pycocotools rasterise a huge outline; within one image side is generous.
    xs, ys = polygon[0::2], polygon[1::2]
    if not all(-width <= x <= 2 * width for x in xs) or not all(-height <= y <= 2 * height for y in ys):
        raise DataError(f"{where}: polygon {_short(polygon)} reaches far outside the {width}x{height} image")


def _check_rle(rle: dict[str, Any], height: int, width: int, where: str) -> None:
    size, counts = rle.get("size"), rle.get("counts")
    if not isinstance(size, list) or len(size) != 2 or not all(_whole(v) for v in size):
        raise DataError(f"{where}: size {size!r}; give {{'size': [height, width], 'counts': ...}}")
    if size != [height, width]:
        raise DataError(f"{where}: size {size} is not the image's [height, width] [{height}, {width}]")
    if isinstance(counts, list):
        runs = counts if all(_whole(v) for v in counts) else None
    elif isinstance(counts, str):
        runs = rle_string_counts(counts)
    else:
        raise DataError(f"{where}: counts is a {type(counts).__name__}; give a list of run lengths or an RLE string")
    if runs is None or any(run < 0 for run in runs):
        raise DataError(f"{where}: counts {_short(counts)} are not run lengths (whole numbers >= 0)")
    if sum(runs) != height * width:
        raise DataError(
            f"{where}: the runs cover {sum(runs)} pixels, but the {width}x{height} image has {height * width}"
        )


def rle_string_counts(text: str | bytes) -> list[int] | None:
    """The run lengths in pycocotools' compressed RLE string (its rleFrString, in Python), None where malformed."""
    codes = text if isinstance(text, bytes) else [ord(character) for character in text]
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                return None  # the string ends inside a number
            code = codes[position] - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if shift > 64:
                return None  # pycocotools keeps 64 bits
            if not more and code & 0x10:
                value |= -1 << shift  # a negative number
        if len(counts) > 2:
            value += counts[-2]  # runs after the first two are stored as differences
        counts.append(value)
    return counts


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
