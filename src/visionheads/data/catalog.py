"""The catalogue of built-in datasets: `Source` (a resolved dataset), registration, and `name:args[slice]` specs."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from torch.utils.data import Dataset, Subset

from visionheads._registry import Registry
from visionheads.errors import DataError


@dataclass
class Source:
    """A resolved dataset with what the tasks need to know about it."""

    dataset: Dataset
    description: str
    class_names: list[str] | None = None
    flips_ok: bool = True  # False for data whose meaning a mirror changes (digits)
    val: str | None = None  # the matching validation split of a built-in dataset
    left_out: dict[str, int] = field(default_factory=dict)  # what the adapter left out: reason -> count

    def __post_init__(self) -> None:
        if not self.left_out:  # adapters that leave data out say so on the dataset (COCOSubset.left_out)
            found = getattr(self.dataset, "left_out", None)
            self.left_out = dict(found) if isinstance(found, dict) else {}


def report_left_out(*sources: Source | None, file: TextIO | None = None) -> None:
    """Print what the adapters of `sources` left out, one line per reason (to stderr), e.g.
    `coco:a.json: 12 crowd annotations left out (...)`; None and sources that left nothing out print nothing."""
    for source in sources:
        if source is None:
            continue
        for reason, count in source.left_out.items():
            print(f"{source.description}: {count} {reason}", file=file or sys.stderr)


BuiltinBuilder = Callable[[list[str], int], Source]  # (arguments after the name, channels) -> Source
_BUILTINS: Registry[BuiltinBuilder] = Registry("dataset", "visionheads.data.list_datasets() shows all")
_SLICE = re.compile(r"^(?P<spec>.*?)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def register_dataset(name: str, build: BuiltinBuilder) -> None:
    """Register a built-in dataset: `build(args, channels)` gets the ':'-separated arguments after the name."""
    _BUILTINS.register(name, build)


def list_datasets() -> list[str]:
    """Names of the built-in datasets."""
    return _BUILTINS.names()


def resolve_builtin(spec: str, channels: int) -> Source:
    """`"digits:test"`, `"digits[:500]"` or `"mnist:ROOT:test[:5000]"` to a Source."""
    sliced = _SLICE.match(spec)
    text = sliced.group("spec") if sliced else spec
    name, *args = text.split(":")
    source = _BUILTINS.get(name)(args, channels)
    if sliced:
        start = int(sliced.group("start")) if sliced.group("start") else None
        stop = int(sliced.group("stop")) if sliced.group("stop") else None
        indices = range(len(source.dataset))[start:stop]
        if not indices:
            raise DataError(f"{spec}: the slice selects no samples out of {len(source.dataset)}")
        source.dataset = Subset(source.dataset, list(indices))
        source.description = spec
    return source


def parse_coco_spec(spec: str) -> dict[str, object]:
    """`coco:ANNOTATIONS.json[:cat,dog][@train|@val|@test][[:N]]` as the mapping form
    `{coco, categories, split, max_images}` (`@part`: a seeded 0.8/0.1/0.1 split of the file by image)."""
    sliced = _SLICE.match(spec)
    text, _, split = (sliced.group("spec") if sliced else spec).partition("@")
    name, *args = text.split(":")
    if name != "coco" or not args or not args[0] or len(args) > 2:
        raise DataError(f"{spec}: write coco:ANNOTATIONS.json, coco:ANNOTATIONS.json:cat,dog or add [:N]")
    if sliced and (sliced.group("start") or not sliced.group("stop")):
        raise DataError(f"{spec}: a COCO subset takes its first N images as [:N]")
    categories = [int(c) if c.isdigit() else c for c in args[1].split(",")] if len(args) > 1 and args[1] else None
    limit = int(sliced.group("stop")) if sliced else None
    return {"coco": args[0], "categories": categories, "split": split or None, "max_images": limit}


def is_builtin(spec: object) -> bool:
    """True when `spec` is a string naming a built-in dataset (not a path)."""
    if not isinstance(spec, str):
        return False
    sliced = _SLICE.match(spec)
    return (sliced.group("spec") if sliced else spec).split(":")[0] in _BUILTINS
