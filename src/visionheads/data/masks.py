"""Mask folders: `root/images/<name>.<ext>` with `root/masks/<name>.png` (or `labels/`) holding a class index per
pixel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from visionheads.data.images import DECODE_ERRORS, IMAGE_SUFFIXES, open_image, read_image
from visionheads.errors import DataError


def paired_pngs(root: Path, folder: str, one: str, holding: str) -> tuple[list[Path], list[Path]]:
    """The image files of `root/images` and, for each, `root/<folder>/<stem>.png` (a `one` file, `holding` what);
    a DataError names what is missing."""
    images, pngs = root / "images", root / folder
    if not images.is_dir() or not pngs.is_dir():
        raise DataError(
            f"{root}: {one} folders hold images/ and {folder}/ (same file names, {holding}); one of them is missing"
        )
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{images}: no image files")
    paired = [pngs / f"{p.stem}.png" for p in files]
    missing = [p.name for p in paired if not p.is_file()]
    if missing:
        raise DataError(f"{pngs}: no {one} for {len(missing)} image(s), e.g. {missing[:3]}; add <name>.png")
    return files, paired


class MaskFolders(Dataset):
    """Samples `{"image", "mask"}`: each image with the same-named PNG mask (one class index per pixel).

    Class names come from `root/classes.txt` (one per line, index 0 first), else from the parent folder's (a split
    folder of a dataset: `camvid/train/` beside `camvid/classes.txt`), when one exists.
    """

    def __init__(self, root: str | Path, *, channels: int = 3) -> None:
        self.root = Path(root)
        self.channels = channels
        # masks/ here, labels/ as CamVid's SegNet-style copies and many exports name it
        folder = "labels" if (self.root / "labels").is_dir() and not (self.root / "masks").is_dir() else "masks"
        self.images, self.masks = paired_pngs(self.root, folder, "mask", "masks as PNG of class indices")
        # a split folder (train/, val/) shares the classes.txt of the dataset above it
        names = next((p for p in (self.root / "classes.txt", self.root.parent / "classes.txt") if p.is_file()), None)
        self.class_names = [n.strip() for n in names.read_text().splitlines() if n.strip()] if names else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        mask = read_index_png(self.masks[index], "mask", "class indices")
        return {"image": read_image(self.images[index], self.channels), "mask": mask}


def read_index_png(path: Path, kind: str, holding: str) -> np.ndarray:
    """A 1-channel PNG of indices (a `kind` holding `holding`) as an (H, W) int64 array; DataErrors name the file."""
    with open_image(path) as mask:
        if mask.mode not in ("L", "P", "I", "I;16", "1"):
            raise DataError(f"{path}: {kind} mode {mask.mode}; save {kind}s as 1-channel PNG of {holding}")
        try:
            return np.asarray(mask, dtype=np.int64)
        except (*DECODE_ERRORS, MemoryError) as error:  # MemoryError: a corrupt chunk length (see read_image)
            raise DataError(f"{path}: cannot decode {kind} ({error or 'out of memory'})") from error


IGNORE_COLOUR = (255, 255, 255)  # index 255, the usual "ignore" label, shows white


def mask_palette() -> list[int]:
    """256 RGB colours, flat, for palette PNGs: the PASCAL VOC colour map (0 black, then distinct colours), 255 white.

    VOC's map spreads the bits of each index over R, G and B, so neighbouring class indices get far-apart colours.
    """
    palette = []
    for index in range(256):
        red = green = blue = 0
        for shift in range(7, -1, -1):
            red |= ((index >> 0) & 1) << shift
            green |= ((index >> 1) & 1) << shift
            blue |= ((index >> 2) & 1) << shift
            index >>= 3
        palette += [red, green, blue]
    palette[-3:] = IGNORE_COLOUR
    return palette


def save_mask(mask: np.ndarray, path: str | Path) -> Path:
    """Write an HxW mask of class indices as a PNG whose pixel values are the indices.

    Indices up to 255 give a palette PNG (mode "P"), which viewers show in colour and `np.array(Image.open(path))`
    reads back as the indices; larger ones a 16-bit greyscale PNG.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.asarray(mask)
    if mask.size and (mask.min() < 0 or mask.max() > 65535):
        raise DataError(f"{path}: mask values {mask.min()}..{mask.max()} do not fit a PNG (0..65535)")
    if mask.size == 0 or mask.max() < 256:
        image = Image.fromarray(mask.astype(np.uint8))
        image.putpalette(mask_palette())  # makes the "L" image a "P" image with the same pixel values
    else:
        image = Image.fromarray(mask.astype(np.uint16))
    image.save(path)
    return path
