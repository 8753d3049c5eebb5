"""Building a backbone by name: registered entries, any timm model as `timm/<name>`, and how weights are chosen."""

from __future__ import annotations

from pathlib import Path

from visionheads.backbones.loading import load_weights_file
from visionheads.backbones.registry import Backbone, BackboneEntry, registered_entry
from visionheads.backbones.timm_entries import timm_passthrough_entry
from visionheads.backbones.weights import NEUTRAL_MEAN, NEUTRAL_STD, WeightsInfo, load_state_dict_file
from visionheads.errors import ConfigError

WeightsArg = str | Path | None


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of `name`, or an on-the-fly one for `timm/<name>` (ConfigError with suggestions)."""
    if name.startswith("timm/"):
        return timm_passthrough_entry(name.removeprefix("timm/"))
    return registered_entry(name)


def create_backbone(name: str, *, weights: WeightsArg = None, in_chans: int = 3, strict: bool = True) -> Backbone:
    """Build backbone `name` with random weights (None), a pretrained tag like "imagenet", or a local file.

    A file must fit the body tensor for tensor (ConfigError listing what does not); `strict=False` loads the
    tensors that fit, keeps the rest random and says which.
    """
    if in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    entry = backbone_entry(name)
    if weights is None:
        return entry.build(in_chans=in_chans, tag=None)
    if isinstance(weights, Path) or _looks_like_path(str(weights)):
        return _from_file(name, entry, Path(weights).expanduser(), in_chans=in_chans, strict=strict)
    if weights in entry.tags:
        return entry.build(in_chans=in_chans, tag=str(weights))
    known = ", ".join(entry.tags) or "none"
    raise ConfigError(
        f"backbone {name!r} has no weights tag {weights!r} (tags: {known}); pass None, a tag, "
        "or the path of a local .pt/.pth/.safetensors file"
    )


def _from_file(name: str, entry: BackboneEntry, path: Path, *, in_chans: int, strict: bool) -> Backbone:
    state_dict = load_state_dict_file(path)
    backbone = entry.build(in_chans=in_chans, tag=None)
    network_keys = entry.network_keys() if entry.network_keys else ()
    load_weights_file(
        backbone.body, state_dict, source=path, what=f"backbone {name!r}", strict=strict, network_keys=network_keys
    )
    # A file is recorded as the file, never as "imagenet"; its inputs are assumed normalised as the architecture's
    # published weights were (else as from scratch).
    published = entry.pretrained
    backbone.record_weights(
        WeightsInfo(
            tag="file",
            source=str(path),
            license="as the file's source says",
            mean=published.mean if published else NEUTRAL_MEAN,
            std=published.std if published else NEUTRAL_STD,
            input_size=published.input_size if published else backbone.input_size,
        )
    )
    return backbone


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or Path(text).suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
