"""Class-folder trees (torchvision ImageFolder layout): `root/<class name>/<image>`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from visionheads.data.images import IMAGE_SUFFIXES, check_image_files, read_image
from visionheads.errors import DataError

_IGNORED = {"thumbs.db", "desktop.ini"}


class ClassFolders(Dataset):
    """Samples `{"image", "label"}` from `root/<class>/<file>`; class names are the sorted folder names."""

    def __init__(self, root: str | Path, *, channels: int = 3) -> None:
        self.root = Path(root)
        self.channels = channels
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a directory; give a folder with one sub-folder per class")
        class_dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise DataError(f"{self.root}: no class folders found; expected root/<class name>/<image files>")
        self.class_names = [p.name for p in class_dirs]
        self.files: list[Path] = []
        self.labels: list[int] = []
        for label, class_dir in enumerate(class_dirs):
            files = _image_files(class_dir)
            if not files:
                raise DataError(f"{class_dir}: class folder {class_dir.name!r} holds no images; add some or remove it")
            self.files += files
            self.labels += [label] * len(files)
        check_image_files(self.files, str(self.root))  # all of them before any training: one error names each bad one

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": read_image(self.files[index], self.channels), "label": self.labels[index]}


def _image_files(class_dir: Path) -> list[Path]:
    files = []
    for path in sorted(class_dir.rglob("*")):
        if path.is_dir() or path.name.startswith(".") or path.name.lower() in _IGNORED:
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(
                f"{path}: not an image file (suffix {path.suffix or 'none'!r}); class folders may hold only "
                f"images ({', '.join(IMAGE_SUFFIXES)}); move it out"
            )
        files.append(path)
    return files
