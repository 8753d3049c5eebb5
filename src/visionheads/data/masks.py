"""Mask folders: `root/images/<name>.<ext>` with `root/masks/<name>.png` holding a class index per pixel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visionheads.data.images import DECODE_ERRORS, IMAGE_SUFFIXES, open_image, read_image
from visionheads.errors import DataError


class MaskFolders(Dataset):
    """Samples `{"image", "mask"}`: each image with the same-named PNG mask (one class index per pixel).

    Class names come from `root/classes.txt` (one per line, index 0 first) when it exists.
    """

    def __init__(self, root: str | Path, *, channels: int = 3) -> None:
        self.root = Path(root)
        self.channels = channels
        images, masks = self.root / "images", self.root / "masks"
        if not images.is_dir() or not masks.is_dir():
            raise DataError(
                f"{self.root}: a mask folder holds images/ and masks/ (same file names, masks as PNG of class "
                "indices); one of them is missing"
            )
        self.images = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise DataError(f"{images}: no image files")
        self.masks = [masks / f"{p.stem}.png" for p in self.images]
        missing = [p.name for p in self.masks if not p.is_file()]
        if missing:
            raise DataError(f"{masks}: no mask for {len(missing)} image(s), e.g. {missing[:3]}; add <name>.png")
        names = self.root / "classes.txt"
        self.class_names = [n.strip() for n in names.read_text().splitlines() if n.strip()] if names.is_file() else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.masks[index]
        with open_image(path) as mask:
            if mask.mode not in ("L", "P", "I", "I;16", "1"):
                raise DataError(f"{path}: mask mode {mask.mode}; save masks as 1-channel PNG of class indices")
            try:
                array = np.asarray(mask, dtype=np.int64)
            except (*DECODE_ERRORS, MemoryError) as error:  # MemoryError: a corrupt chunk length (see read_image)
                raise DataError(f"{path}: cannot decode mask ({error or 'out of memory'})") from error
        return {"image": read_image(self.images[index], self.channels), "mask": array}
