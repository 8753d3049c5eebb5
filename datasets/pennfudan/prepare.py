"""Turn the original Penn-Fudan release (`PennFudanPed/` with `PNGImages/` and `PedMasks/`) into two instance-mask
folders that the detection and segmentation tasks read: OUT/train and OUT/test, each `images/`, `instances/` and
`classes.txt` ("person"), split as torchvision's fine-tuning tutorial splits it (images in file-name order,
`torch.manual_seed(1); torch.randperm(170)`, the last 50 positions are the test images).

    python datasets/pennfudan/prepare.py PennFudanPed/ ~/data/pennfudan [--all]

`--all` writes one folder OUT/all instead. The files are copied byte for byte (the masks' pixel value k is
pedestrian k); each mask is checked against its image's size.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from PIL import Image

TEST_IMAGES = 50


def pairs(source: Path) -> list[tuple[Path, Path]]:
    """(image, mask) of every image of the release, in file-name order; a clear error for a missing file."""
    images, masks = source / "PNGImages", source / "PedMasks"
    if not images.is_dir() or not masks.is_dir():
        raise SystemExit(f"{source}: expected the PennFudanPed folder, with PNGImages/ and PedMasks/")
    found = []
    for image in sorted(images.glob("*.png")):
        mask = masks / f"{image.stem}_mask.png"
        if not mask.is_file():
            raise SystemExit(f"{mask}: missing (every PNGImages/X.png has PedMasks/X_mask.png)")
        with Image.open(image) as picture, Image.open(mask) as labels:
            if picture.size != labels.size:
                raise SystemExit(f"{mask}: size {labels.size} but {image.name} is {picture.size}")
        found.append((image, mask))
    if not found:
        raise SystemExit(f"{images}: no .png images")
    return found


def write(folder: Path, chosen: list[tuple[Path, Path]]) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "instances").mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("person\n")
    for image, mask in chosen:
        shutil.copyfile(image, folder / "images" / image.name)
        shutil.copyfile(mask, folder / "instances" / f"{image.stem}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the PennFudanPed folder")
    parser.add_argument("out", type=Path)
    parser.add_argument("--all", action="store_true", help="one folder of all 170 images instead of train/test")
    parser.add_argument("--test", type=int, default=TEST_IMAGES, help="how many images the test split takes (50)")
    args = parser.parse_args()
    found = pairs(args.source.expanduser())
    out = args.out.expanduser()
    if args.all:
        write(out / "all", found)
        print(f"wrote {len(found)} images to {out / 'all'}")
        return
    torch.manual_seed(1)
    order = torch.randperm(len(found)).tolist()
    train = [found[i] for i in order[: -args.test]]
    test = [found[i] for i in order[-args.test :]]
    write(out / "train", train)
    write(out / "test", test)
    print(f"wrote {len(train)} training and {len(test)} test images to {out}/train and {out}/test")


if __name__ == "__main__":
    main()
