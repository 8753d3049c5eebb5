"""The built-in datasets that need no download."""

from __future__ import annotations

from visionheads.data.catalog import Source, parse_coco_spec, register_dataset
from visionheads.data.coco import COCOSubset
from visionheads.data.digits import SPLITS, digits
from visionheads.data.mnist import MNIST
from visionheads.data.rotation import Rotated
from visionheads.data.samples import change_channels
from visionheads.data.shapes import shapes_split
from visionheads.data.sources import coco_source
from visionheads.data.yolo import YOLODataset
from visionheads.errors import DataError


def _split_arg(name: str, args: list[str]) -> str:
    if len(args) > 1 or (args and args[0] not in SPLITS):
        raise DataError(f"{name}:{':'.join(args)}: unknown split; use {name}, {name}:val or {name}:test")
    return args[0] if args else "train"


def _digits_source(args: list[str], channels: int) -> Source:
    # digits[:split[:classes]]: classes as a range or list of digits (0-6, 7,8,9), relabelled 0..k-1 in that order.
    split = _split_arg("digits", args[:1])
    if len(args) > 2:
        raise DataError(f"digits:{':'.join(args)}: write digits, digits:SPLIT or digits:SPLIT:CLASSES (e.g. 0-6)")
    samples = digits(split, classes=_digit_list(args[1]) if len(args) > 1 else None)
    dataset = samples if channels == 1 else _Channels(samples, channels)
    suffix = f":{args[1]}" if len(args) > 1 else ""
    return Source(dataset, f"digits:{split}{suffix}", class_names=samples.class_names, flips_ok=False,
                  val=f"digits:val{suffix}")  # fmt: skip


def _digit_list(text: str) -> list[int]:
    try:
        if "-" in text:
            low, high = (int(v) for v in text.split("-"))
            chosen = list(range(low, high + 1))
        else:
            chosen = [int(v) for v in text.split(",")]
    except ValueError:
        chosen = []
    if not chosen or any(not 0 <= d <= 9 for d in chosen) or len(set(chosen)) != len(chosen):
        raise DataError(f"digits classes {text!r}: give a range such as 0-6 or a list such as 7,8,9 of digits 0-9")
    return chosen


register_dataset("digits", _digits_source)


def _rotated_digits_source(args: list[str], channels: int) -> Source:
    # rotated-digits[:split[:degrees]]: training reads draw fresh seeded angles, val/test angles are fixed.
    degrees = float(args[1]) if len(args) > 1 else 45.0
    split = _split_arg("rotated-digits", args[:1])
    base = _digits_source([split], channels)
    rotated = Rotated(base.dataset, degrees, seed={"train": 0, "val": 1, "test": 2}[split], resample=split == "train")
    suffix = f":{args[1]}" if len(args) > 1 else ""
    return Source(
        rotated,
        f"rotated-digits:{split}{suffix}",
        class_names=base.class_names,
        flips_ok=False,
        val=f"rotated-digits:val{suffix}",
    )


def _mnist_source(args: list[str], channels: int) -> Source:
    if len(args) != 2:
        raise DataError(f"mnist:{':'.join(args)}: write mnist:ROOT:train or mnist:ROOT:test (optionally [:N])")
    root, split = args
    samples = MNIST(root, split)
    dataset = samples if channels == 1 else _Channels(samples, channels)
    return Source(dataset, f"mnist:{root}:{split}", class_names=samples.class_names, flips_ok=False)


class _Channels:
    """A view of a dataset with images converted to `channels` (grey to RGB for 3-channel bodies)."""

    def __init__(self, dataset, channels: int) -> None:
        self.dataset, self.channels = dataset, channels
        self.class_names = getattr(dataset, "class_names", None)
        self.labels = getattr(dataset, "labels", None)
        self.targets = getattr(dataset, "targets", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        sample["image"] = change_channels(sample["image"], self.channels)
        return sample


def _shapes_source(args: list[str], channels: int) -> Source:
    # shapes[:split]: synthetic COCO scenes, made once into the data cache and read like any COCO folder.
    split = _split_arg("shapes", args)
    folder = shapes_split(split)
    dataset = COCOSubset(folder / "annotations.json", folder, channels=channels)
    return Source(dataset, f"shapes:{split}", class_names=dataset.class_names, val="shapes:val")


def _coco_source(args: list[str], channels: int) -> Source:
    # coco:ANNOTATIONS.json[:category,category...]: images beside the file (the mapping form names another folder).
    return coco_source(parse_coco_spec(":".join(["coco", *args])), channels)


def _yolo_source(args: list[str], channels: int) -> Source:
    # yolo:DATA.yaml[:train|val|test]: an Ultralytics-layout dataset, its train split by default.
    if not args or len(args) > 2 or not args[0]:
        raise DataError(f"yolo:{':'.join(args)}: write yolo:DATA.yaml or yolo:DATA.yaml:val (optionally [:N])")
    split = args[1] if len(args) > 1 else "train"
    dataset = YOLODataset(args[0], split, channels=channels)
    return Source(dataset, f"yolo:{args[0]}:{split}", class_names=dataset.class_names)


register_dataset("rotated-digits", _rotated_digits_source)
register_dataset("shapes", _shapes_source)
register_dataset("mnist", _mnist_source)
register_dataset("coco", _coco_source)
register_dataset("yolo", _yolo_source)
