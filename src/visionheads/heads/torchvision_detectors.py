"""torchvision's whole COCO-trained detectors by their own names, split into the body and head the detection task
runs: the trunk (ResNet-50 or MobileNetV3 stages) as a Backbone, and its FPN, RPN and RoI heads as the head.

Weights: the tag "coco" goes through torchvision's own weights API (its download, its hash check, its cache); a
file is a state dict in torchvision's layout (what `model.state_dict()` of the torchvision model saves). Where the
task's classes are not COCO's, the box (and mask) predictors are replaced by fresh ones for them and every other
tensor loads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.ops.misc import FrozenBatchNorm2d

from visionheads.backbones import Backbone
from visionheads.backbones.weights import (
    WeightsInfo,
    ensure_download_possible,
    load_state_dict_file,
    weights_cached,
    weights_host,
)
from visionheads.errors import ConfigError
from visionheads.heads.detection import SizedTransform

COCO_CLASSES = 91  # torchvision's COCO heads: the background and the 90 category ids (some unused, "N/A")


@dataclass(frozen=True)
class Detector:
    """One torchvision detector: its builder, its COCO weights, whether it has a mask branch, and whether its
    published weights keep the trunk's BatchNorm frozen (then the architecture built here does too)."""

    build: Callable[..., nn.Module]
    weights: Any  # a torchvision WeightsEnum member
    masks: bool
    frozen_batch_norm: bool


DETECTORS = {
    "fasterrcnn_resnet50_fpn": Detector(detection.fasterrcnn_resnet50_fpn,
                                        detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1, False, True),
    "fasterrcnn_resnet50_fpn_v2": Detector(detection.fasterrcnn_resnet50_fpn_v2,
                                           detection.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1, False, False),
    "fasterrcnn_mobilenet_v3_large_fpn": Detector(detection.fasterrcnn_mobilenet_v3_large_fpn,
                                                  detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1, False,
                                                  True),
    "maskrcnn_resnet50_fpn": Detector(detection.maskrcnn_resnet50_fpn,
                                      detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1, True, True),
    "maskrcnn_resnet50_fpn_v2": Detector(detection.maskrcnn_resnet50_fpn_v2,
                                         detection.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1, True, False),
}  # fmt: skip


def detector(name: str) -> Detector:
    """The detector called `name`, or a ConfigError listing them."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector model {name!r}; torchvision's COCO detectors: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def coco_class_names(name: str) -> list[str]:
    """The 91 class names of a detector's COCO head, index = COCO category id (0: "background"; some "N/A")."""
    names = list(detector(name).weights.meta["categories"])
    return ["background", *names[1:]]


def build_detector(
    name: str, *, num_classes: int, weights: str | Path | None, options: dict[str, Any]
) -> tuple[nn.Module, list[str]]:
    """The torchvision detector `name` with `weights` (None: random), its predictors for `num_classes` classes
    (the background counts); also the names of the tensors that did not come from the weights (the predictors')."""
    spec = detector(name)
    model = spec.build(weights=None, weights_backbone=None, num_classes=COCO_CLASSES, **_torchvision_options(options))
    if spec.frozen_batch_norm:  # as the published weights were trained: the trunk's BatchNorm statistics stay
        _freeze_batch_norm(model.backbone.body)
    if weights is not None:
        state = _state_dict(name, spec, weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ConfigError(f"{weights}: not a {name} state dict ({str(error)[:300]})") from error
    replaced: list[str] = []
    if num_classes != COCO_CLASSES:
        box = model.roi_heads.box_predictor
        model.roi_heads.box_predictor = FastRCNNPredictor(box.cls_score.in_features, num_classes)
        replaced += [f"roi_heads.box_predictor.{key}" for key in model.roi_heads.box_predictor.state_dict()]
        if spec.masks:  # the class-wise logits only: the upsampling before them keeps its trained weights
            predictor = model.roi_heads.mask_predictor
            fresh = MaskRCNNPredictor(predictor.conv5_mask.in_channels, predictor.conv5_mask.out_channels, num_classes)
            predictor.mask_fcn_logits = fresh.mask_fcn_logits  # initialised as torchvision initialises it
            replaced += [f"roi_heads.mask_predictor.mask_fcn_logits.{key}" for key in ("weight", "bias")]
    return model, replaced


_PROBE = 64  # the side of the blank image that measures the trunk's channels and strides (a multiple of 32)


def trunk_backbone(name: str, model: nn.Module, *, weights: str | Path | None) -> Backbone:
    """The detector's trunk as a Backbone: its stage maps as a list, input pixels in [0, 1] (the detector's own
    transform normalises them as its weights expect)."""
    trunk = _Trunk(model.backbone.body)
    with torch.no_grad():
        trunk.eval()
        maps = trunk(torch.zeros(1, 3, _PROBE, _PROBE))  # small: a ResNet-50 at 256 px took seconds per task
    info = WeightsInfo(
        tag="coco" if weights == "coco" else "file", source=str(weights) if weights is not None else "",
        license="as torchvision's weights say (BSD-3-Clause code; COCO-trained)", mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0), input_size=int(model.transform.min_size[-1]),
    )  # fmt: skip
    return Backbone(trunk, name=name, channels=[int(m.shape[1]) for m in maps],
                    strides=[_PROBE // int(m.shape[-1]) for m in maps], in_chans=3, min_input_size=64,
                    weights=info)  # fmt: skip


class TorchvisionDetectorHead(nn.Module):
    """The detector's FPN, RPN and RoI heads, and its transform (resizing to an explicit size, see SizedTransform):
    the head of the task's model, as FasterRCNNHead is for registry bodies."""

    def __init__(self, model: nn.Module, *, masks: bool) -> None:
        super().__init__()
        old = model.transform
        self.transform = SizedTransform(old.min_size, old.max_size, image_mean=old.image_mean, image_std=old.image_std,
                                        size_divisible=old.size_divisible)  # fmt: skip
        self.fpn = model.backbone.fpn
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads
        self.with_masks = masks

    def forward(
        self, features: list[torch.Tensor], images: ImageList, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """As FasterRCNNHead.forward: the trunk's maps of `images.tensors`, fine to coarse."""
        maps = self.fpn(OrderedDict((str(level), feature) for level, feature in enumerate(features)))
        proposals, rpn_losses = self.rpn(images, maps, targets)
        detections, roi_losses = self.roi_heads(maps, proposals, images.image_sizes, targets)
        return detections, rpn_losses | roi_losses


class _Trunk(nn.Module):
    """torchvision's IntermediateLayerGetter, its maps as a list (fine to coarse) instead of a dict."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(images).values())


def _torchvision_options(options: dict[str, Any]) -> dict[str, Any]:
    # The task's detection options under torchvision's names (those left at None keep torchvision's values).
    names = {"min_size": "min_size", "max_size": "max_size", "score_threshold": "box_score_thresh",
             "nms_threshold": "box_nms_thresh", "detections_per_image": "box_detections_per_img",
             "proposals_test": "rpn_post_nms_top_n_test"}  # fmt: skip
    return {names[key]: value for key, value in options.items() if key in names and value is not None}


def _freeze_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features, eps=child.eps))
        else:
            _freeze_batch_norm(child)


def _state_dict(name: str, spec: Detector, weights: str | Path) -> dict[str, torch.Tensor]:
    if weights != "coco":
        if not Path(weights).expanduser().is_file():
            raise ConfigError(f"weights={str(weights)!r}: no such file; give 'coco' or a {name} state dict file")
        return load_state_dict_file(Path(weights).expanduser())
    info = WeightsInfo(tag="coco", source=spec.weights.url, license="")
    file = Path(spec.weights.url).name
    ensure_download_possible(
        weights_host(info), f"the COCO weights of {name}", weights_cached(info),
        f"vh.Task('detection', model={name!r}, weights='path/to/{file}') (the file is at {spec.weights.url}).",
    )  # fmt: skip
    return spec.weights.get_state_dict(progress=True, check_hash=True)
