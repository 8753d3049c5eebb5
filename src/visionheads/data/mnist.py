"""MNIST from local idx files (torchvision's layout), with torchvision's downloader when asked to download."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visionheads.errors import DataError

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"


class MNIST(Dataset):
    """`{"image": 28x28x1 uint8, "label": int}` from `root` holding the idx files (`.gz` or not),
    directly or under `MNIST/raw/`. Only the files of the chosen split are needed."""

    def __init__(self, root: str | Path, split: str = "train", *, download: bool = False) -> None:
        if split not in _FILES:
            raise DataError(f"MNIST: unknown split {split!r}; use 'train' or 'test'")
        self.root = Path(root).expanduser()
        self.split = split
        images_name, labels_name = _FILES[split]
        if download and _find(self.root, images_name) is None:
            _download(self.root, split)
        images_path, labels_path = _find(self.root, images_name), _find(self.root, labels_name)
        if images_path is None or labels_path is None:
            raise DataError(
                f"MNIST {split} files not found under {self.root}: put {images_name}[.gz] and {labels_name}[.gz] "
                f"in {self.root} or {self.root / 'MNIST' / 'raw'} (from {_MIRROR}), "
                "or pass download=True on a machine with internet access"
            )
        self.images = _read_idx(images_path, ndim=3)
        self.labels = _read_idx(labels_path, ndim=1).astype(np.int64)
        if len(self.images) != len(self.labels):
            raise DataError(f"{images_path}: {len(self.images)} images but {labels_path} has {len(self.labels)} labels")
        self.class_names = [str(d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index][:, :, None], "label": int(self.labels[index])}


def _find(root: Path, name: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Parse an idx file: 2 zero bytes, a type byte (0x08 = uint8), the number of dims, big-endian sizes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error}); download the file again") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise DataError(f"{path}: not an MNIST idx file of {ndim} dimension(s) (bad header)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but the file holds {len(data) - offset} bytes; it is truncated")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _download(root: Path, split: str) -> None:
    import torchvision

    try:
        torchvision.datasets.MNIST(str(root), train=split == "train", download=True)
    except Exception as error:  # urllib raises several types when offline
        raise DataError(
            f"MNIST download to {root} failed ({error}); copy the idx files there by hand (see the message "
            "without download=True for the names)"
        ) from error
