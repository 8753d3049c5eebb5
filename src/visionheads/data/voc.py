"""Pascal VOC detection folders: `root/Annotations/*.xml` with the images in `root/JPEGImages/`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visionheads.data.coco import BACKGROUND
from visionheads.data.images import read_image
from visionheads.errors import DataError


class VOCFolder(Dataset):
    """Samples `{"image", "boxes", "labels", "image_id"}` of a VOC folder, as Detectron2 reads them.

    Classes come from `root/classes.txt` (one per line) when it exists, else from the object names in the XML
    files, sorted; label 0 is the background. VOC's 1-based xmin/ymin become 0-based pixel edges.
    """

    def __init__(self, root: str | Path, *, channels: int = 3) -> None:
        self.root = Path(root)
        self.channels = channels
        annotations, self.images_root = self.root / "Annotations", self.root / "JPEGImages"
        if not annotations.is_dir():
            raise DataError(
                f"{self.root}: neither COCO (a .json file, or a folder with annotations.json) nor Pascal VOC "
                "(Annotations/*.xml with JPEGImages/)"
            )
        self.records = [_read_record(path) for path in sorted(annotations.glob("*.xml"))]
        if not self.records:
            raise DataError(f"{annotations}: no .xml annotation files")
        listed = self.root / "classes.txt"
        if listed.is_file():
            names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
        else:
            names = sorted({name for record in self.records for name, _ in record["objects"]})
        self.class_names = [BACKGROUND, *(name for name in names if name != BACKGROUND)]
        self._label_of = {name: label for label, name in enumerate(self.class_names)}
        for record in self.records:
            unknown = sorted({name for name, _ in record["objects"]} - set(self._label_of))
            if unknown:
                raise DataError(f"{record['path']}: object class(es) {unknown} are not in {listed}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        root = self.images_root.resolve()
        path = (root / record["file_name"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise DataError(f"{record['path']}: image {record['file_name']!r} not found inside {root}")
        boxes = np.asarray([box for _, box in record["objects"]], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray([self._label_of[name] for name, _ in record["objects"]], dtype=np.int64)
        return {"image": read_image(path, self.channels), "boxes": boxes, "labels": labels, "image_id": index}


def _read_record(path: Path) -> dict[str, Any]:
    try:
        root = ET.parse(path).getroot()
        objects = []
        for node in root.iter("object"):
            box = node.find("bndbox")
            x0, y0, x1, y1 = (float(box.find(key).text) for key in ("xmin", "ymin", "xmax", "ymax"))
            objects.append((node.find("name").text.strip(), (x0 - 1, y0 - 1, x1, y1)))
        file_name = root.find("filename").text.strip()
    except (ET.ParseError, AttributeError, TypeError, ValueError) as error:
        raise DataError(
            f"{path}: not a Pascal VOC annotation ({error}); it needs filename and object/bndbox"
        ) from error
    return {"path": path, "file_name": file_name, "objects": objects}
