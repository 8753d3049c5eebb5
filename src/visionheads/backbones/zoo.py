"""The architecture zoo: one row of facts per registered backbone (size, cost, stages, where its weights come from)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from visionheads.backbones.create import backbone_entry, create_backbone
from visionheads.backbones.registry import Backbone, list_backbones
from visionheads.backbones.weights import weights_cached
from visionheads.errors import ConfigError

COLUMNS = ("name", "params", "input", "GFLOPs", "channels", "strides", "ImageNet weights", "license", "offline")


@dataclass(frozen=True)
class ZooRow:
    """Facts of one backbone: its body's size and forward cost, its stages, and its published ImageNet weights."""

    name: str
    params: int  # every parameter of the body (features only: no classifier)
    image_size: int  # side of the square 3-channel image the FLOPs were counted at
    gflops: float  # FlopCounterMode's count for one image (a multiply-add is 2 FLOPs), in 1e9
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    weights_source: str  # hub id or URL of the ImageNet weights, "none" for nets trained from scratch here
    weights_license: str
    weights_offline: bool | None  # the weights are in this machine's cache; None when there are none


def describe_backbone(name: str, *, image_size: int | None = None, backbone: Backbone | None = None) -> ZooRow:
    """The zoo row of backbone `name`, built with 3 channels unless `backbone` is it already.

    FLOPs are counted for one image of side `image_size`, by default the side its ImageNet weights were trained at
    (its `input_size` when built with weights="imagenet"), else the backbone's own `input_size`.
    """
    entry = backbone_entry(name)
    body = backbone if backbone is not None else create_backbone(name)
    if body.in_chans != 3:
        raise ConfigError(f"the zoo describes 3-channel backbones; {name!r} was built with in_chans={body.in_chans}")
    info = entry.pretrained
    size = image_size if image_size is not None else (info.input_size if info else body.input_size)
    if size < body.min_input_size:
        raise ConfigError(f"image_size={size} is below what backbone {name!r} accepts ({body.min_input_size})")
    return ZooRow(
        name=name,
        params=sum(p.numel() for p in body.parameters()),
        image_size=size,
        gflops=count_flops(body, size) / 1e9,
        channels=tuple(body.channels),
        strides=tuple(body.strides),
        weights_source=info.source if info else "none",
        weights_license=info.license if info else "none",
        weights_offline=weights_cached(info) if info else None,
    )


def describe_backbones(
    names: Iterable[str] | None = None,
    *,
    image_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ZooRow]:
    """Zoo rows of `names` (every registered backbone by default), in order; `progress` hears each name first."""
    names = list_backbones() if names is None else list(names)
    rows = []
    for number, name in enumerate(names, start=1):
        if progress is not None:
            progress(f"[{number}/{len(names)}] {name}")
        rows.append(describe_backbone(name, image_size=image_size))
    return rows


def count_flops(backbone: Backbone, image_size: int) -> int:
    """FLOPs of one eval-mode forward pass of a (1, in_chans, image_size, image_size) image, as FlopCounterMode counts.

    FlopCounterMode counts convolutions and matrix products, a multiply-add as 2; normalisation, activations and
    pooling are not counted.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            backbone(torch.zeros(1, backbone.in_chans, image_size, image_size))
    finally:
        backbone.train(was_training)
    return counter.get_total_flops()


def format_zoo(rows: Iterable[ZooRow]) -> str:
    """The rows as a Markdown table with aligned columns, under a header that states how they were measured."""
    cells = [COLUMNS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    right = {"params", "input", "GFLOPs"}

    def line(values: tuple[str, ...]) -> str:
        padded = (v.rjust(w) if c in right else v.ljust(w) for c, v, w in zip(COLUMNS, values, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    dashes = ("-" * (w + 1) + ":" if c in right else "-" * (w + 2) for c, w in zip(COLUMNS, widths, strict=True))
    rule = "|" + "|".join(dashes) + "|"
    header = [
        "params: parameters of the body (features only, no classifier).",
        "GFLOPs: one forward pass of one 3-channel image of side `input` (px), as torch's FlopCounterMode counts",
        "them: a multiply-add is 2 FLOPs; only convolutions and matrix products are counted.",
        "offline: the ImageNet weights are in this machine's cache, usable without a network ('-': none published).",
    ]
    return "\n".join([*header, "", line(cells[0]), rule, *(line(c) for c in cells[1:])])


def _cells(row: ZooRow) -> tuple[str, ...]:
    offline = "-" if row.weights_offline is None else ("yes" if row.weights_offline else "no")
    return (
        row.name,
        f"{row.params:,}",
        str(row.image_size),
        f"{row.gflops:.2f}" if row.gflops >= 0.1 else f"{row.gflops:.4f}",
        "/".join(map(str, row.channels)),
        "/".join(map(str, row.strides)),
        row.weights_source,
        row.weights_license,
        offline,
    )
