"""The built-in datasets that need no download."""

from __future__ import annotations

from visionheads.data.digits import SPLITS, digits
from visionheads.data.samples import ArraySamples, change_channels
from visionheads.data.sources import Source, register_dataset
from visionheads.errors import DataError


def _split_arg(name: str, args: list[str]) -> str:
    if len(args) > 1 or (args and args[0] not in SPLITS):
        raise DataError(f"{name}:{':'.join(args)}: unknown split; use {name}, {name}:val or {name}:test")
    return args[0] if args else "train"


def _digits_source(args: list[str], channels: int) -> Source:
    split = _split_arg("digits", args)
    samples = digits(split)
    if channels != 1:
        images = [change_channels(image, channels) for image in samples.images]
        samples = ArraySamples(images, label=samples.targets["label"], class_names=samples.class_names)
    return Source(samples, f"digits:{split}", class_names=samples.class_names, flips_ok=False, val="digits:val")


register_dataset("digits", _digits_source)
