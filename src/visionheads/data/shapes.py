"""`shapes`: seeded synthetic scenes (circles, squares, triangles) written to disk as a real COCO dataset.

Each split is made once into the data cache and read back through `COCOSubset`, so the built-in data takes
the same path as a user's COCO files: JSON + PNG, polygon masks, boxes from the masks.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from visionheads.data.coco import decode_rle

CATEGORIES = ("circle", "square", "triangle")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
SPLIT_COUNTS = {"train": 400, "val": 100, "test": 100}
IMAGE_SIZE = 128
VERSION = 1  # bump when the scenes change, so old caches are not mistaken for new ones
_CORNERS = {"circle": 48, "square": 4, "triangle": 3}


def data_home() -> Path:
    """The data cache: `$VISIONHEADS_HOME`, default `~/.cache/visionheads`."""
    return Path(os.environ.get("VISIONHEADS_HOME", "~/.cache/visionheads")).expanduser()


def shapes_split(split: str) -> Path:
    """The folder of one split (annotations.json + images/), made on first use."""
    folder = data_home() / "shapes" / f"v{VERSION}-{IMAGE_SIZE}px" / split
    if not (folder / "annotations.json").is_file():
        write_shapes(folder, count=SPLIT_COUNTS[split], seed=SPLIT_SEEDS[split], size=IMAGE_SIZE)
    return folder


def write_shapes(folder: Path, *, count: int, seed: int, size: int) -> Path:
    """Write `count` seeded scenes as COCO to `folder`, atomically: a reader sees all of it or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        (staging / "images").mkdir()
        rng = np.random.default_rng(seed)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            pixels, objects = _scene(rng, size)
            file_name = f"images/{image_id:05d}.png"
            Image.fromarray(pixels).save(staging / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
            for category, polygon, rle in objects:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": CATEGORIES.index(category) + 1,
                        "segmentation": [[round(float(v), 2) for v in polygon.reshape(-1)]],
                        "area": float(mask_utils.area(rle)),
                        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": i, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES, 1)]
        info = {"description": "visionheads shapes", "version": VERSION, "seed": seed}
        payload = {"info": info, "images": images, "annotations": annotations, "categories": categories}
        (staging / "annotations.json").write_text(json.dumps(payload))
        try:
            staging.rename(folder)
        except OSError:  # another process made the split first: theirs is as good as ours
            if not (folder / "annotations.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[str, np.ndarray, dict]]]:
    """One image (size x size x 3 uint8) with 1-4 shapes that do not touch, and their (category, polygon, RLE)."""
    background = rng.integers(0, 256, size=3)
    pixels = np.clip(background + rng.normal(0, 8, size=(size, size, 3)), 0, 255)
    placed: list[tuple[float, float, float]] = []  # (x, y, radius) of the shapes so far
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(50):
            radius = float(rng.uniform(0.08, 0.2) * size)
            x, y = rng.uniform(radius + 1, size - radius - 1, size=2)
            if all(math.hypot(x - px, y - py) > radius + pr + 2 for px, py, pr in placed):
                break
        else:
            continue  # no free spot left in this scene
        placed.append((x, y, radius))
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        corners = _CORNERS[category]
        turn = rng.uniform(0, 2 * math.pi)
        angles = turn + np.arange(corners) * 2 * math.pi / corners
        polygon = np.stack([x + radius * np.cos(angles), y + radius * np.sin(angles)], axis=1)
        rle = mask_utils.merge(mask_utils.frPyObjects([polygon.reshape(-1).tolist()], size, size))
        # Paint exactly the pixels of the annotation's mask, so image and labels agree to the pixel.
        colour = _contrasting_colour(rng, background)
        pixels[decode_rle(rle) > 0] = colour + rng.normal(0, 8, size=3)
        objects.append((category, polygon, rle))
    return np.clip(pixels, 0, 255).astype(np.uint8), objects


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    for _ in range(100):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background).sum() > 150:
            return colour.astype(np.float64)
    return (255 - background).astype(np.float64)
