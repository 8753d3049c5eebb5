"""R-CNN heads from torchvision's parts: an FPN over the body's stage maps, an RPN, and RoI heads (+ masks).

The head gets the stage maps and the batch as torchvision's transform made it (resized, padded); it returns
torchvision's detections (in eval mode) and its losses (in training mode). The task keeps that split inside.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

ASPECT_RATIOS = (0.5, 1.0, 2.0)  # torchvision's
ANCHOR_SIZE_PER_STRIDE = 8  # torchvision's anchors: 32 px at stride 4 ... 512 px at stride 64
MIN_PYRAMID_STRIDE = 4  # stride-2 maps are too large to carry a pyramid level on (torchvision starts at 4 too)


def pyramid_stages(strides: Sequence[int]) -> list[int]:
    """The body stages the FPN reads: those of stride 4 and more (the deepest one where none is)."""
    return [i for i, s in enumerate(strides) if s >= MIN_PYRAMID_STRIDE] or [len(strides) - 1]


class SizedTransform(GeneralizedRCNNTransform):
    """torchvision's transform, resizing evaluation images to an explicit size.

    torchvision resizes by a scale factor whose output size it then recomputes; a traced export (ONNX, TorchScript)
    keeps the factor as a float32 tensor and samples at slightly other places, so an exported detector found other
    boxes than the eager one on images whose long side limits the scale. Here the size is worked out as torchvision
    works it out (floor of side x scale, in double precision) and handed to the interpolation, the same in eager
    mode (where the results equal torchvision's) and in a traced graph.
    """

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None) -> tuple:
        if self.training or target is not None:
            return super().resize(image, target)
        sides = torch.stack([torch.as_tensor(side) for side in image.shape[-2:]]).to(torch.float64)  # (2,)
        # One-dimensional double tensors: the ONNX exporter turns Python floats and 0-dim tensors into float32
        limits = torch.tensor([float(self.min_size[-1]), float(self.max_size)], dtype=torch.float64)
        scale = (limits / torch.stack([sides.min(), sides.max()])).min(dim=0, keepdim=True).values  # (1,)
        size = torch.floor(sides * scale).to(torch.int64)
        if not torch.jit.is_tracing():
            size = size.tolist()  # plain ints in eager mode; traced values stay in the graph
        resized = nn.functional.interpolate(image[None], size=(size[0], size[1]), mode="bilinear", align_corners=False)
        return resized[0], None


class FasterRCNNHead(nn.Module):
    """torchvision's Faster R-CNN around any body: FPN -> RPN -> RoI heads; `num_classes` counts the background.

    `mask_channels` is the width of the mask branch (Mask R-CNN only; torchvision's 256 costs most of a CPU step).
    Its transform resizes (short side `min_size`, long side at most `max_size`) and pads a batch; normalising is
    left to the task's pipelines. Anchor sizes default to 8x each pyramid level's stride, torchvision's rule.
    """

    with_masks = False  # Mask R-CNN adds a mask branch to the RoI heads

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        *,
        min_size: int = 800,
        max_size: int = 1333,
        anchor_sizes: Sequence[int] | None = None,
        fpn_channels: int = 256,
        representation_size: int = 1024,
        proposals_train: int = 2000,
        proposals_test: int = 1000,
        rois_per_image: int = 512,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        detections_per_image: int = 100,
        mask_channels: int = 256,
    ) -> None:
        super().__init__()
        self.stages = pyramid_stages(strides)
        levels = [strides[i] for i in self.stages]
        levels.append(levels[-1] * 2)  # FPN's extra level: the last one max-pooled
        self.strides = levels
        sizes = tuple(anchor_sizes) if anchor_sizes is not None else tuple(ANCHOR_SIZE_PER_STRIDE * s for s in levels)
        if len(sizes) != len(levels):
            raise ValueError(f"anchor_sizes {list(sizes)} must give one size per pyramid level (strides {levels})")
        self.transform = SizedTransform(
            min_size, max_size, image_mean=[0.0], image_std=[1.0], size_divisible=max(32, levels[-1])
        )
        self.fpn = FeaturePyramidNetwork(
            [in_channels[i] for i in self.stages], fpn_channels, extra_blocks=LastLevelMaxPool()
        )
        names = [str(level) for level in range(len(self.stages))]  # the pooled level ("pool") takes no RoIs
        anchors = AnchorGenerator(tuple((size,) for size in sizes), (ASPECT_RATIOS,) * len(sizes))
        self.rpn = RegionProposalNetwork(
            anchors,
            RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n={"training": proposals_train, "testing": proposals_test},
            post_nms_top_n={"training": proposals_train, "testing": proposals_test},
            nms_thresh=0.7,
        )  # fmt: skip
        box_pool = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)
        self.roi_heads = RoIHeads(
            box_pool,
            TwoMLPHead(fpn_channels * 7 * 7, representation_size),
            FastRCNNPredictor(representation_size, num_classes),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=rois_per_image, positive_fraction=0.25,
            bbox_reg_weights=None, score_thresh=score_threshold, nms_thresh=nms_threshold,
            detections_per_img=detections_per_image,
        )  # fmt: skip
        if self.with_masks:
            self.roi_heads.mask_roi_pool = MultiScaleRoIAlign(names, output_size=14, sampling_ratio=2)
            self.roi_heads.mask_head = MaskRCNNHeads(fpn_channels, (mask_channels,) * 4, 1)
            self.roi_heads.mask_predictor = MaskRCNNPredictor(mask_channels, mask_channels, num_classes)

    def forward(
        self,
        features: list[torch.Tensor],
        images: ImageList,
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """features: the body's stage maps of `images.tensors` (B, C, H, W), fine to coarse; targets (training):
        per image `boxes` (N, 4) xyxy in `images`' pixels, `labels` (N,) in 1..K, `masks` (N, H, W) for masks.

        Returns: detections per image (eval mode: boxes, labels, scores[, masks (N, 1, H, W) probabilities]) at the
        transformed size, and the named losses (training mode).
        """
        maps = self.fpn(OrderedDict((str(level), features[i]) for level, i in enumerate(self.stages)))
        proposals, rpn_losses = self.rpn(images, maps, targets)
        detections, roi_losses = self.roi_heads(maps, proposals, images.image_sizes, targets)
        return detections, rpn_losses | roi_losses


class MaskRCNNHead(FasterRCNNHead):
    """torchvision's Mask R-CNN around any body: Faster R-CNN plus a mask branch (instance masks)."""

    with_masks = True
