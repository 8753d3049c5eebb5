"""Backbones from timm (`features_only=True`), under their timm names, plus the `timm/<name>` passthrough."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import timm
import torch

from visionheads.backbones.registry import Backbone, BackboneEntry, register_backbone
from visionheads.backbones.weights import WeightsInfo, ensure_download_possible, weights_cached, weights_host
from visionheads.errors import ConfigError

# name -> smallest input side the architecture accepts (inception's valid convolutions need more than 64 px).
TIMM_BACKBONES: dict[str, int] = {
    "resnet18": 32,
    "resnet34": 32,
    "resnet50": 32,
    "vgg11_bn": 32,
    "vgg16_bn": 32,
    "mobilenetv3_small_100": 32,
    "mobilenetv3_large_100": 32,
    "efficientnet_b0": 32,
    "convnext_tiny": 32,
    "densenet121": 32,
    "inception_v3": 75,
    "xception41": 32,
}


def timm_weights_info(model_name: str) -> WeightsInfo | None:
    """The default pretrained weights timm knows for `model_name`, as our metadata."""
    cfg = timm.get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return None
    source = f"hf-hub:{cfg.hf_hub_id}" if cfg.hf_hub_id else str(cfg.url)
    return WeightsInfo(
        tag="imagenet",
        source=source,
        license=str(cfg.license or "see source"),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        input_size=int(cfg.input_size[-1]),
    )


def build_timm_backbone(
    model_name: str, *, in_chans: int, tag: str | None, min_size: int = 32, name: str | None = None
) -> Backbone:
    """A timm model as a Backbone, with timm's pretrained weights for a tag (local files: see create_backbone);
    `name`: what the backbone is called, the name that builds it again (default: the timm model's)."""
    info = timm_weights_info(model_name)
    kwargs: dict = {"features_only": True, "in_chans": in_chans}
    if tag is not None:
        if info is None:
            raise ConfigError(f"timm model {model_name!r} has no pretrained weights; use weights=None or a file")
        _check_hub(model_name, info)
        kwargs["pretrained"] = True
    model = timm.create_model(model_name, **kwargs)
    return Backbone(
        model,
        name=name or model_name,
        channels=model.feature_info.channels(),
        strides=model.feature_info.reduction(),
        in_chans=in_chans,
        min_input_size=min_size,
        weights=info if tag else None,
    )


def timm_network_keys(model_name: str) -> list[str]:
    """Tensor names of the whole timm network, classifier included, built on the meta device (no memory)."""
    with torch.device("meta"):
        return list(timm.create_model(model_name).state_dict())


def _check_hub(model_name: str, info: WeightsInfo) -> None:
    hub = info.source.startswith("hf-hub:")
    repo = info.source.removeprefix("hf-hub:")
    where = f"https://huggingface.co/{repo}" if hub else info.source
    ensure_download_possible(
        weights_host(info),
        f"pretrained weights for {model_name!r} ({repo})",
        weights_cached(info),
        f"create_backbone({model_name!r}, weights='path/to/{'model.safetensors' if hub else Path(where).name}') "
        f"(the file is at {where}).",
    )


def timm_passthrough_entry(model_name: str) -> BackboneEntry:
    """An on-the-fly entry for any timm model as 'timm/<name>'."""
    if not timm.is_model(model_name):
        from visionheads._registry import unknown_name_message

        candidates = timm.list_models(f"*{model_name[:4]}*")[:200]
        raise ConfigError(unknown_name_message("timm model", model_name, candidates, "timm.list_models() shows all"))

    def build(*, in_chans: int, tag: str | None) -> Backbone:
        # Named with its prefix: a config records this name, and only "timm/<name>" builds it again.
        return build_timm_backbone(model_name, in_chans=in_chans, tag=tag, name=f"timm/{model_name}")

    return BackboneEntry(
        build,
        tags=("imagenet",),
        description=f"timm model {model_name}",
        pretrained=timm_weights_info(model_name),
        network_keys=partial(timm_network_keys, model_name),
    )


def _register() -> None:
    for model_name, min_size in TIMM_BACKBONES.items():

        def build(*, in_chans: int, tag: str | None, _name=model_name, _min=min_size) -> Backbone:
            return build_timm_backbone(_name, in_chans=in_chans, tag=tag, min_size=_min)

        register_backbone(
            model_name,
            build,
            tags=("imagenet",),
            description=f"timm {model_name}, features_only",
            pretrained=timm_weights_info(model_name),
            network_keys=partial(timm_network_keys, model_name),
        )


_register()
