"""Building a backbone by name: registered entries, any timm model as `timm/<name>`, and how weights are chosen."""

from __future__ import annotations

from pathlib import Path

from visionheads.backbones.registry import Backbone, BackboneEntry, registered_entry
from visionheads.backbones.timm_entries import timm_passthrough_entry
from visionheads.backbones.weights import load_state_dict_file
from visionheads.errors import ConfigError

WeightsArg = str | Path | None


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of `name`, or an on-the-fly one for `timm/<name>` (ConfigError with suggestions)."""
    if name.startswith("timm/"):
        return timm_passthrough_entry(name.removeprefix("timm/"))
    return registered_entry(name)


def create_backbone(name: str, *, weights: WeightsArg = None, in_chans: int = 3) -> Backbone:
    """Build backbone `name` with random weights (None), a pretrained tag like "imagenet", or a local file."""
    if in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    entry = backbone_entry(name)
    tag, state_dict = None, None
    if weights is None:
        pass
    elif isinstance(weights, Path) or _looks_like_path(str(weights)):
        state_dict = load_state_dict_file(weights)
    elif weights in entry.tags:
        tag = str(weights)
    else:
        known = ", ".join(entry.tags) or "none"
        raise ConfigError(
            f"backbone {name!r} has no weights tag {weights!r} (tags: {known}); pass None, a tag, "
            "or the path of a local .pt/.pth/.safetensors file"
        )
    return entry.build(in_chans=in_chans, tag=tag, state_dict=state_dict)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or Path(text).suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
