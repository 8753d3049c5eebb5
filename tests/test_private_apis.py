"""What visionheads uses of other libraries' internal parts, pinned: the signatures we call with, the outputs and
attribute names we depend on, each checked on a tiny input. An upgrade that changes one fails here, with a message
that names the library, the symbol and what changed, rather than somewhere deep inside a fit.

Internal parts: torchvision's R-CNN pieces (RPN, RoI heads, transform, FPN, predictors) and its detectors' layout;
Lightning's loop progress, trainer state, signal handling, checkpoint IO plugins, sampler and logger names; smp's
decoder blocks (whose parameter names are our checkpoints' too); timm's FeatureListNet layout, adapt_input_conv and
pretrained configs; albumentations' ToTensorV2 hooks and Compose processors; pycocotools' index, RLE format and
COCOeval arrays; grad-cam's CAM internals; torch's FlopCounterMode.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import signal
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import lightning as L
import numpy as np
import pytest
import timm
import torch
from albumentations.pytorch import ToTensorV2
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.data import AttributeDict
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from segmentation_models_pytorch.decoders.deeplabv3.decoder import ASPP, SeparableConv2d
from segmentation_models_pytorch.decoders.fpn.decoder import Conv3x3GNReLU
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
from timm.models import adapt_input_conv
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from visionheads.backbones.pooling import forward_with_pool_indices, hands_pool_indices
from visionheads.data.boxes import box_pipeline, moves_boxes
from visionheads.data.coco import decode_rle
from visionheads.engine import _LIGHTNING_LOGGERS
from visionheads.heads.detection import MaskRCNNHead, SizedTransform
from visionheads.heads.torchvision_detectors import DETECTORS
from visionheads.metrics.coco import BACKENDS, evaluate_results, per_category_ap

SMP = "segmentation_models_pytorch"


def changed(library: str, symbol: str, what: str) -> str:
    """The failure message: which library changed which symbol, and how."""
    return f"{library} changed {symbol}: {what}; visionheads relies on it (tests/test_private_apis.py)"


# ---------------------------------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Call:
    """How we call `function` (a class: its constructor): the names of the arguments we pass by position, in order,
    and of those we pass by keyword."""

    library: str
    symbol: str
    function: Callable
    positional: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


def _detector_builders() -> list[Call]:
    return [Call("torchvision", f"models.detection.{name}", spec.build, (), ("weights", "weights_backbone",
                 "num_classes")) for name, spec in DETECTORS.items()]  # fmt: skip


R_CNN_OPTIONS = ("num_classes", "min_size", "max_size", "box_score_thresh", "box_nms_thresh", "box_detections_per_img",
                 "rpn_post_nms_top_n_test")  # fmt: skip
CALLS = [
    Call("torchvision", "AnchorGenerator", AnchorGenerator, ("sizes", "aspect_ratios")),
    Call("torchvision", "RPNHead", RPNHead, ("in_channels", "num_anchors")),
    Call("torchvision", "RegionProposalNetwork", RegionProposalNetwork, ("anchor_generator", "head"),
         ("fg_iou_thresh", "bg_iou_thresh", "batch_size_per_image", "positive_fraction", "pre_nms_top_n",
          "post_nms_top_n", "nms_thresh")),
    Call("torchvision", "RegionProposalNetwork.forward", RegionProposalNetwork.forward, ("images", "features",
         "targets")),
    Call("torchvision", "RoIHeads", RoIHeads, ("box_roi_pool", "box_head", "box_predictor"),
         ("fg_iou_thresh", "bg_iou_thresh", "batch_size_per_image", "positive_fraction", "bbox_reg_weights",
          "score_thresh", "nms_thresh", "detections_per_img")),
    Call("torchvision", "RoIHeads.forward", RoIHeads.forward, ("features", "proposals", "image_shapes", "targets")),
    Call("torchvision", "TwoMLPHead", TwoMLPHead, ("in_channels", "representation_size")),
    Call("torchvision", "FastRCNNPredictor", FastRCNNPredictor, ("in_channels", "num_classes")),
    Call("torchvision", "MaskRCNNHeads", MaskRCNNHeads, ("in_channels", "layers", "dilation")),
    Call("torchvision", "MaskRCNNPredictor", MaskRCNNPredictor, ("in_channels", "dim_reduced", "num_classes")),
    Call("torchvision", "GeneralizedRCNNTransform", GeneralizedRCNNTransform, ("min_size", "max_size", "image_mean",
         "image_std"), ("size_divisible",)),
    Call("torchvision", "GeneralizedRCNNTransform.resize", GeneralizedRCNNTransform.resize, ("image", "target")),
    Call("torchvision", "GeneralizedRCNNTransform.postprocess", GeneralizedRCNNTransform.postprocess,
         ("result", "image_shapes", "original_image_sizes")),
    Call("torchvision", "ImageList", ImageList, ("tensors", "image_sizes")),
    Call("torchvision", "FeaturePyramidNetwork", FeaturePyramidNetwork, ("in_channels_list", "out_channels"),
         ("extra_blocks",)),
    Call("torchvision", "MultiScaleRoIAlign", MultiScaleRoIAlign, ("featmap_names",), ("output_size",
         "sampling_ratio")),
    Call("torchvision", "FrozenBatchNorm2d", FrozenBatchNorm2d, ("num_features",), ("eps",)),
    Call("torchvision", "FasterRCNN (the detectors' **kwargs)", FasterRCNN, (), R_CNN_OPTIONS),
    Call("torchvision", "MaskRCNN (the detectors' **kwargs)", MaskRCNN, (), R_CNN_OPTIONS),
    *_detector_builders(),
    Call("torchvision", "create_feature_extractor", create_feature_extractor, ("model",), ("return_nodes",)),
    Call(SMP, "UnetDecoderBlock", UnetDecoderBlock, ("in_channels", "skip_channels", "out_channels"),
         ("interpolation_mode",)),
    Call(SMP, "UnetDecoderBlock.forward", UnetDecoderBlock.forward, ("feature_map", "target_height",
         "target_width"), ("skip_connection",)),
    Call(SMP, "Conv3x3GNReLU", Conv3x3GNReLU, ("in_channels", "out_channels")),
    Call(SMP, "ASPP", ASPP, ("in_channels", "out_channels", "atrous_rates"), ("separable", "dropout")),
    Call(SMP, "SeparableConv2d", SeparableConv2d, ("in_channels", "out_channels", "kernel_size"), ("padding",
         "bias")),
    Call("timm", "models.adapt_input_conv", adapt_input_conv, ("in_chans", "conv_weight")),
    Call("lightning", "fabric.plugins.io.torch_io.TorchCheckpointIO.save_checkpoint",
         TorchCheckpointIO.save_checkpoint, ("checkpoint", "path", "storage_options")),
    Call("lightning", "pytorch.plugins.io.AsyncCheckpointIO", AsyncCheckpointIO, ("checkpoint_io",)),
    Call("lightning", "Trainer.save_checkpoint", L.Trainer.save_checkpoint, ("filepath",), ("weights_only",)),
    Call("lightning", "Trainer.fit", L.Trainer.fit, ("model",), ("datamodule", "ckpt_path", "weights_only")),
    Call("torch", "hub.load_state_dict_from_url (torchvision's Weights.get_state_dict)",
         torch.hub.load_state_dict_from_url, (), ("progress", "check_hash")),
    Call("torch", "DistributedSampler (UnrepeatedDistributedSampler's arguments)",
         torch.utils.data.DistributedSampler, ("dataset",), ("num_replicas", "rank", "shuffle")),
]  # fmt: skip


@pytest.mark.parametrize("call", CALLS, ids=lambda call: f"{call.library}:{call.symbol}")
def test_the_signatures_we_call_with(call: Call) -> None:
    parameters = [name for name in inspect.signature(call.function).parameters if name != "self"]
    assert parameters[: len(call.positional)] == list(call.positional), changed(
        call.library, call.symbol, f"its leading parameters are now {parameters[: len(call.positional)]}, we pass "
        f"{list(call.positional)} by position"
    )  # fmt: skip
    missing = [name for name in call.keywords if name not in parameters]
    assert not missing, changed(call.library, call.symbol, f"no parameter {missing} any more (it takes {parameters})")


# --------------------------------------------------------------------------------------------------- torchvision


def _rcnn_batch() -> tuple[MaskRCNNHead, list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Our Mask R-CNN head (torchvision's parts, put together as we put them), two images, one object each."""
    torch.manual_seed(0)
    head = MaskRCNNHead([8, 16], [4, 8], 3, min_size=64, max_size=64, fpn_channels=16, representation_size=32,
                        proposals_train=32, proposals_test=32, rois_per_image=16, mask_channels=8)  # fmt: skip
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    targets = []
    for image in images:
        masks = torch.zeros(1, *image.shape[-2:], dtype=torch.uint8)
        masks[0, 6:40, 4:30] = 1
        targets.append({"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1]), "masks": masks})
    return head, images, targets


def _run_head(head: MaskRCNNHead, images: list[torch.Tensor], targets: list | None) -> tuple[list, dict]:
    batch, targets = head.transform(images, targets)
    features = [torch.rand(len(images), 8, *(s // 4 for s in batch.tensors.shape[-2:])),
                torch.rand(len(images), 16, *(s // 8 for s in batch.tensors.shape[-2:]))]  # fmt: skip
    return head(features, batch, targets)


def test_torchvision_rcnn_parts_return_the_losses_and_detections_we_name_and_decode():
    head, images, targets = _rcnn_batch()
    assert head.roi_heads.has_mask(), changed(
        "torchvision", "RoIHeads", "setting mask_roi_pool, mask_head and mask_predictor no longer adds a mask branch"
    )
    head.train()
    _, losses = _run_head(head, images, targets)
    # History, metrics.csv and the epoch lines name these terms (train_loss_objectness, ...)
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert set(losses) == expected, changed(
        "torchvision", "RegionProposalNetwork/RoIHeads losses", f"names {sorted(losses)}, were {sorted(expected)}"
    )
    assert all(value.ndim == 0 and torch.isfinite(value) for value in losses.values())
    head.eval()
    with torch.no_grad():
        detections, losses = _run_head(head, images, None)
    assert losses == {} and len(detections) == len(images), changed(
        "torchvision", "RoIHeads.forward (eval)", "no longer one detection dict per image and no losses"
    )
    for found in detections:
        assert set(found) == {"boxes", "labels", "scores", "masks"}, changed(
            "torchvision", "RoIHeads.forward (eval)", f"detection keys {sorted(found)}"
        )
        count = len(found["boxes"])
        assert found["boxes"].shape == (count, 4) and found["labels"].shape == found["scores"].shape == (count,)
        assert found["masks"].shape[:2] == (count, 1), changed(
            "torchvision", "RoIHeads.forward (eval)", f"masks of shape {tuple(found['masks'].shape)}, not (N, 1, H, W)"
        )


def test_torchvision_fpn_names_its_extra_level_pool():
    # The RoI poolers read the levels by name and leave out the max-pooled extra level, "pool"
    fpn = FeaturePyramidNetwork([4, 8], 8, extra_blocks=LastLevelMaxPool())
    maps = fpn(OrderedDict([("0", torch.rand(1, 4, 16, 16)), ("1", torch.rand(1, 8, 8, 8))]))
    assert list(maps) == ["0", "1", "pool"], changed("torchvision", "FeaturePyramidNetwork", f"levels {list(maps)}")
    assert [tuple(m.shape) for m in maps.values()] == [(1, 8, 16, 16), (1, 8, 8, 8), (1, 8, 4, 4)]


@pytest.mark.parametrize("shape", [(3, 50, 80), (3, 97, 31), (3, 64, 64)])
def test_torchvision_transform_calls_our_resize_and_sizes_as_we_recompute(shape: tuple[int, int, int]):
    # SizedTransform overrides resize() (exports resample at the size eager mode does): torchvision's forward must
    # call it, and our explicit size must be the one torchvision's own resize gives
    calls = []

    class Counted(SizedTransform):
        def resize(self, image: torch.Tensor, target: Any = None) -> tuple:
            calls.append(tuple(image.shape))
            return super().resize(image, target)

    image = torch.rand(*shape)
    ours = Counted(64, 100, image_mean=[0.0], image_std=[1.0], size_divisible=32).eval()
    theirs = GeneralizedRCNNTransform(64, 100, image_mean=[0.0], image_std=[1.0], size_divisible=32).eval()
    batch, _ = ours([image])
    expected, _ = theirs([image])
    assert calls == [shape], changed("torchvision", "GeneralizedRCNNTransform.forward", "it no longer calls resize()")
    assert batch.image_sizes == expected.image_sizes, changed(
        "torchvision", "GeneralizedRCNNTransform.resize", f"size {expected.image_sizes}, ours {batch.image_sizes}"
    )
    assert torch.allclose(batch.tensors, expected.tensors, atol=1e-5)


def test_torchvision_postprocess_scales_boxes_back_to_each_image():
    transform = GeneralizedRCNNTransform(64, 100, image_mean=[0.0], image_std=[1.0]).eval()
    found = [{"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "labels": torch.tensor([1]),
              "scores": torch.tensor([0.9])}]  # fmt: skip
    back = transform.postprocess(found, [(64, 128)], [(32, 32)])
    assert torch.allclose(back[0]["boxes"], torch.tensor([[2.5, 10.0, 7.5, 20.0]])), changed(
        "torchvision", "GeneralizedRCNNTransform.postprocess", f"boxes {back[0]['boxes'].tolist()}"
    )


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_torchvision_detectors_have_the_parts_we_take_apart(name: str):
    spec = DETECTORS[name]
    with torch.device("meta"):  # the layout only: no memory, no initialisation
        model = spec.build(weights=None, weights_backbone=None, num_classes=91, min_size=320, box_score_thresh=0.1)
        maps = model.backbone.body(torch.zeros(1, 3, 128, 128))
    symbol = f"models.detection.{name}"
    assert isinstance(maps, OrderedDict) and len(maps) >= 2, changed(
        "torchvision", f"{symbol}.backbone.body", "not a dict of maps"
    )
    for part in ("backbone.fpn", "rpn", "roi_heads", "transform"):
        assert model.get_submodule(part) is not None, changed("torchvision", symbol, f"no {part}")
    transform = model.transform
    assert transform.min_size == (320,) and isinstance(transform.max_size, int), changed(
        "torchvision", f"{symbol}.transform", f"min_size {transform.min_size!r}, max_size {transform.max_size!r}"
    )
    for attribute in ("image_mean", "image_std", "size_divisible"):
        assert hasattr(transform, attribute), changed("torchvision", f"{symbol}.transform", f"no {attribute}")
    assert model.roi_heads.score_thresh == 0.1
    assert model.roi_heads.box_predictor.cls_score.out_features == 91
    if spec.masks:
        predictor = model.roi_heads.mask_predictor
        assert predictor.conv5_mask.out_channels == predictor.mask_fcn_logits.in_channels, changed(
            "torchvision", "MaskRCNNPredictor", "conv5_mask/mask_fcn_logits"
        )
    weights = spec.weights
    assert len(weights.meta["categories"]) == 91 and weights.url.endswith(".pth"), changed(
        "torchvision", f"{type(weights).__name__}", "meta['categories'] or url"
    )


def test_torchvision_frozen_batch_norm_loads_batch_norm_state():
    # Detectors whose published weights froze the trunk's BatchNorm are built with FrozenBatchNorm2d in its place
    norm = nn.BatchNorm2d(4, eps=1e-3)
    norm.running_mean.uniform_()
    frozen = FrozenBatchNorm2d(4, eps=1e-3)
    frozen.load_state_dict(norm.state_dict())  # num_batches_tracked is dropped, the rest must match
    assert frozen.eps == 1e-3 and torch.equal(frozen.running_mean, norm.running_mean), changed(
        "torchvision", "FrozenBatchNorm2d", "it no longer loads a BatchNorm2d state dict"
    )


# ------------------------------------------------------------------------------------------------------------ smp


def _batch_norm(prefix: str) -> list[str]:
    return [f"{prefix}.{name}" for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def _aspp_keys() -> list[str]:
    keys = ["convs.0.0.weight", *_batch_norm("convs.0.1")]
    for branch in (1, 2, 3):  # separable atrous convolutions: depthwise, pointwise, norm
        keys += [f"convs.{branch}.0.0.weight", f"convs.{branch}.0.1.weight", *_batch_norm(f"convs.{branch}.1")]
    return [*keys, "convs.4.1.weight", *_batch_norm("convs.4.2"), "project.0.weight", *_batch_norm("project.1")]


# Saved segmentation tasks hold these names under model.head.*: a rename in smp means old checkpoints do not load
SMP_BLOCKS = {
    "UnetDecoderBlock": (lambda: UnetDecoderBlock(8, 4, 16, interpolation_mode="nearest"),
                         ["conv1.0.weight", *_batch_norm("conv1.1"), "conv2.0.weight", *_batch_norm("conv2.1")]),
    "Conv3x3GNReLU": (lambda: Conv3x3GNReLU(8, 32), ["block.0.weight", "block.1.weight", "block.1.bias"]),
    "ASPP": (lambda: ASPP(8, 16, (1, 2, 3), separable=True, dropout=0.1), _aspp_keys()),
    "SeparableConv2d": (lambda: SeparableConv2d(8, 16, 3, padding=1, bias=False), ["0.weight", "1.weight"]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMP_BLOCKS))
def test_smp_blocks_keep_their_parameter_names(name: str):
    build, expected = SMP_BLOCKS[name]
    keys = list(build().state_dict())
    assert sorted(keys) == sorted(expected), changed(
        "segmentation_models_pytorch", name, f"state-dict keys: new {sorted(set(keys) - set(expected))}, gone "
        f"{sorted(set(expected) - set(keys))} (saved segmentation checkpoints would not load)"
    )  # fmt: skip


def test_smp_blocks_output_shapes():
    x = torch.rand(2, 8, 6, 10)
    up = UnetDecoderBlock(8, 4, 16, interpolation_mode="nearest")(x, 12, 20, skip_connection=torch.rand(2, 4, 12, 20))
    assert up.shape == (2, 16, 12, 20), changed(SMP, "UnetDecoderBlock.forward", f"output {tuple(up.shape)}")
    alone = UnetDecoderBlock(8, 0, 16)(x, 13, 21)
    assert alone.shape == (2, 16, 13, 21), changed(SMP, "UnetDecoderBlock.forward (no skip)", f"{alone.shape}")
    smooth = Conv3x3GNReLU(8, 32)(x)
    assert smooth.shape == (2, 32, 6, 10), changed(SMP, "Conv3x3GNReLU", f"output {tuple(smooth.shape)}")
    context = ASPP(8, 16, (1, 2, 3), separable=True, dropout=0.1)(x)
    assert context.shape == (2, 16, 6, 10), changed(SMP, "ASPP", f"output {tuple(context.shape)}")
    fused = SeparableConv2d(8, 16, 3, padding=1, bias=False)(x)
    assert fused.shape == (2, 16, 6, 10), changed(SMP, "SeparableConv2d", f"output {tuple(fused.shape)}")


# ----------------------------------------------------------------------------------------------------------- timm


def test_timm_adapt_input_conv_sums_for_grey_and_repeats_for_more_bands():
    weight = torch.randn(4, 3, 3, 3)
    assert torch.allclose(adapt_input_conv(1, weight), weight.sum(dim=1, keepdim=True)), changed(
        "timm", "adapt_input_conv", "a 1-channel stem is no longer the sum of the RGB kernels"
    )
    four = adapt_input_conv(4, weight)
    assert torch.allclose(four, torch.cat([weight, weight[:, :1]], dim=1) * 3 / 4), changed(
        "timm", "adapt_input_conv", "4 channels are no longer RGB repeated and scaled by 3/4"
    )
    with pytest.raises(NotImplementedError):  # loading.py reports these as a shape mismatch
        adapt_input_conv(4, torch.randn(4, 2, 3, 3))


@pytest.mark.parametrize("model_name", ["resnet18", "tf_efficientnet_lite0", "vgg16_bn"])
def test_timm_pretrained_configs_have_the_fields_of_our_weights_info(model_name: str):
    cfg = timm.get_pretrained_cfg(model_name)
    assert cfg is not None and (cfg.hf_hub_id or cfg.url), changed("timm", "get_pretrained_cfg", f"{model_name}")
    assert len(cfg.mean) == len(cfg.std) == 3 and len(cfg.input_size) == 3 and hasattr(cfg, "license"), changed(
        "timm", "PretrainedCfg", "mean, std, input_size or license"
    )


def test_timm_feature_list_net_is_the_flat_layer_dict_segnet_walks():
    # backbones/pooling.py runs a features_only VGG layer by layer (to record each max pool's indices) and must
    # get the maps timm's own forward returns
    with torch.device("meta"):
        body = timm.create_model("vgg11_bn", features_only=True)
    body.to_empty(device="cpu")
    torch.manual_seed(0)
    for module in body.modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            module.reset_parameters()
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    body.eval()
    channels, strides = body.feature_info.channels(), body.feature_info.reduction()
    assert strides == [1, 2, 4, 8, 16, 32] and len(channels) == 6, changed(
        "timm", "FeatureInfo.channels/reduction", f"{channels}, {strides}"
    )
    assert isinstance(body, nn.ModuleDict) and hasattr(body, "return_layers"), changed(
        "timm", "FeatureListNet", "no longer a ModuleDict of layers with return_layers"
    )
    assert hands_pool_indices(body, channels), changed("timm", "FeatureListNet (vgg11_bn)", "layer layout")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ours, pools = forward_with_pool_indices(body, x)
        theirs = body(x)
    assert len(pools) == 5 and all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)), changed(
        "timm", "FeatureListNet.forward", "running its layers in order no longer gives its maps"
    )


# ------------------------------------------------------------------------------------------------------ lightning


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.seen: dict[str, Any] = {"states": set(), "trainer_before_fit": self._trainer}

    def training_step(self, batch: Any, index: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.seen["states"].add((self.trainer.state.fn == "fit", self.trainer.testing))
        return batch

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        processed = self.trainer.fit_loop.epoch_progress.current.processed
        self.seen.setdefault("saved", []).append((processed, "optimizer_states" in checkpoint))


class _Saves(Checkpoint):
    """As RunRecord saves: from a Checkpoint's on_train_epoch_end, both kinds of file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.folder / f"{trainer.current_epoch}.ckpt", weights_only=False)
        trainer.save_checkpoint(self.folder / f"{trainer.current_epoch}.pt", weights_only=True)


def _trainer(tmp_path: Path, **options: Any) -> L.Trainer:
    options.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, **options)  # fmt: skip


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.rand(8, 2)), batch_size=4)


def test_lightning_loop_progress_state_and_checkpoint_contents(tmp_path: Path):
    module = _Tiny()
    _trainer(tmp_path, max_epochs=2, callbacks=[_Saves(tmp_path)], enable_checkpointing=True).fit(module, _loader())
    assert module.seen["trainer_before_fit"] is None, changed("lightning", "LightningModule._trainer", "not None")
    assert module.seen["states"] == {(True, False)}, changed(
        "lightning", "trainer.state.fn / trainer.testing", f"in fit batches: {module.seen['states']}"
    )
    # runtime/module.py records fit_loop.epoch_progress.current.processed as the finished epochs, and the random
    # state only where the checkpoint holds optimizer_states (a training state, not weights only)
    assert module.seen["saved"] == [(1, True), (1, False), (2, True), (2, False)], changed(
        "lightning", "fit_loop.epoch_progress.current.processed / checkpoint optimizer_states",
        f"(processed, has optimizer_states) per save: {module.seen['saved']}",
    )  # fmt: skip


def test_lightning_sigterm_reaches_callbacks_as_sigterm_exception(tmp_path: Path):
    # engine.RunRecord.on_exception tells SIGTERM (exit 0 after saving) from Ctrl-C by this class
    seen = []

    class Terminated(Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
            trainer._signal_connector._sigterm_notifier_fn(signal.SIGTERM, None)  # what SIGTERM runs

        def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
            seen.append(type(exception))

    with pytest.raises(SIGTERMException):
        _trainer(tmp_path, max_epochs=1, callbacks=[Terminated()]).fit(_Tiny(), _loader())
    assert seen == [SIGTERMException], changed("lightning", "SIGTERM handling", f"on_exception saw {seen}")


def test_lightning_async_checkpoint_io_writes_copies_in_a_thread_and_reports_errors(tmp_path: Path):
    written, go = [], threading.Event()

    class Recording(TorchCheckpointIO):  # as engine.AtomicCheckpointIO overrides it
        def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            go.wait(10)  # the write starts after training has changed the weights
            if "fail" in str(path):
                raise OSError("disk full")
            written.append((checkpoint["w"].clone(), path))

    assert TorchCheckpointIO is L.pytorch.plugins.io.TorchCheckpointIO, changed(
        "lightning", "fabric.plugins.io.torch_io.TorchCheckpointIO", "no longer the class Lightning exports"
    )
    plugin = AsyncCheckpointIO(Recording())
    weights = torch.zeros(3)
    plugin.save_checkpoint({"w": weights}, tmp_path / "a.ckpt")
    weights += 1  # training goes on: the file must hold the tensors as they were when saved
    go.set()
    plugin.save_checkpoint({"w": weights}, tmp_path / "fail.ckpt")
    with pytest.raises(OSError, match="disk full"):
        plugin.teardown()  # waits for the writes, then raises what a write raised
    assert len(written) == 1 and torch.equal(written[0][0], torch.zeros(3)), changed(
        "lightning", "AsyncCheckpointIO", "it no longer hands the wrapped IO a copy taken when saving"
    )


def test_lightning_unrepeated_sampler_gives_each_sample_to_exactly_one_process():
    dataset = list(range(10))
    shares = [list(UnrepeatedDistributedSampler(dataset, num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    assert sorted(sum(shares, [])) == dataset and max(map(len, shares)) - min(map(len, shares)) <= 1, changed(
        "lightning", "overrides.distributed.UnrepeatedDistributedSampler", f"shares {shares}"
    )


def test_lightning_trainer_option_errors_are_what_engine_turns_into_config_errors(tmp_path: Path):
    for options in ({"accelerator": "nonsense"}, {"precision": "nonsense"}, {"devices": "nonsense"}, {"nonsense": 1}):
        with pytest.raises((TypeError, ValueError, MisconfigurationException)):
            _trainer(tmp_path, **options)


def test_lightning_start_up_chatter_goes_through_the_loggers_engine_quiets(tmp_path: Path):
    records: dict[int, logging.LogRecord] = {}

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records[id(record)] = record

    # Lightning stops its records at "lightning.pytorch" when the root logger has no handler: listen on each level
    listened = [logging.getLogger(name) for name in ("", "lightning", "lightning.pytorch", "lightning.fabric")]
    handler = Keep(logging.INFO)
    for logger in listened:
        logger.addHandler(handler)
    try:
        _trainer(tmp_path)  # "GPU available: ...", "TPU available: ...", tips
    finally:
        for logger in listened:
            logger.removeHandler(handler)
    names = {record.name for record in records.values()}
    assert names and names <= set(_LIGHTNING_LOGGERS), changed(
        "lightning", "rank_zero logger names", f"Trainer() logs through {sorted(names)}; engine quiets "
        f"{list(_LIGHTNING_LOGGERS)}"
    )  # fmt: skip


def test_lightning_attribute_dict_is_a_dict_with_attribute_access():
    hparams = AttributeDict(name="segmentation", lr=0.1)
    assert isinstance(hparams, dict) and hparams.lr == 0.1, changed("lightning", "AttributeDict", "dict or attributes")


# ------------------------------------------------------------------------------------------------ albumentations


def test_albumentations_to_tensor_hooks_are_the_ones_compose_calls():
    # data/transforms.ToTensor copies read-only arrays in these three hooks; renamed hooks would skip the copy
    called = []

    class Recording(ToTensorV2):
        def apply(self, img: np.ndarray, **params: Any) -> torch.Tensor:
            called.append("apply")
            return super().apply(img, **params)

        def apply_to_mask(self, mask: np.ndarray, **params: Any) -> torch.Tensor:
            called.append("apply_to_mask")
            return super().apply_to_mask(mask, **params)

        def apply_to_masks(self, masks: Any, **params: Any) -> Any:
            called.append("apply_to_masks")
            return super().apply_to_masks(masks, **params)

    image, mask = np.zeros((8, 8, 3), dtype=np.uint8), np.zeros((8, 8), dtype=np.uint8)
    A.Compose([Recording()])(image=image, mask=mask, masks=[mask, mask])
    assert sorted(called) == ["apply", "apply_to_mask", "apply_to_masks"], changed(
        "albumentations", "ToTensorV2", f"Compose called {called} for an image, a mask and masks"
    )


def test_albumentations_compose_lists_a_box_processor_only_with_bbox_params():
    # data/boxes.moves_boxes reads Compose.processors to know whether a pipeline moves boxes
    assert moves_boxes(box_pipeline(train=True)) and not moves_boxes(box_pipeline(train=False)), changed(
        "albumentations", "Compose.processors", "no 'bboxes' processor key with bbox_params"
    )


# ---------------------------------------------------------------------------------------------------- pycocotools


def _coco(payload: dict[str, Any]) -> COCO:
    coco = COCO()  # data/coco.py indexes a checked payload itself instead of handing COCO() a path
    coco.dataset = payload
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
        coco.createIndex()
    return coco


GROUND_TRUTH = {
    "images": [{"id": 1, "width": 40, "height": 30}, {"id": 2, "width": 40, "height": 30}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 12], "area": 120, "iscrowd": 0,
         "segmentation": [[2, 3, 12, 3, 12, 15, 2, 15]]},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [20, 5, 8, 8], "area": 64, "iscrowd": 0,
         "segmentation": [[20, 5, 28, 5, 28, 13, 20, 13]]},
    ],
}  # fmt: skip


def test_pycocotools_index_and_rle_format_as_data_coco_reads_them():
    coco = _coco(GROUND_TRUTH)
    assert set(coco.imgs) == {1, 2} and set(coco.cats) == {1, 2} and set(coco.anns) == {1, 2}, changed(
        "pycocotools", "COCO.createIndex", "imgs/cats/anns by id"
    )
    rle = coco.annToRLE(coco.anns[1])
    assert rle["size"] == [30, 40] and isinstance(rle["counts"], bytes), changed(
        "pycocotools", "COCO.annToRLE", f"no longer a compressed RLE: {rle!r}"
    )
    # data/coco.decode_rle reads the compressed counts itself (pycocotools' decoder warns under NumPy 2)
    rng = np.random.default_rng(0)
    masks = [(rng.random((30, 40)) < share).astype(np.uint8) for share in (0.0, 0.02, 0.5, 1.0)]
    for mask in masks:
        encoded = mask_utils.encode(np.asfortranarray(mask))
        assert np.array_equal(decode_rle(encoded), mask), changed("pycocotools", "RLE counts", "the compressed format")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its decoder's NumPy 2 warning
        assert np.array_equal(decode_rle(rle), mask_utils.decode(rle))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cocoeval_arrays_have_the_layout_we_index(backend: str):
    if backend == "hotcoco":
        pytest.importorskip("hotcoco")
    if backend == "faster-coco-eval":
        pytest.importorskip("faster_coco_eval")
    results = [{"image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 12], "score": 0.9},
               {"image_id": 2, "category_id": 2, "bbox": [0, 0, 4, 4], "score": 0.8}]  # fmt: skip
    evaluation = evaluate_results(_coco(GROUND_TRUTH), results, "bbox", [1, 2], [1, 2], backend=backend)
    precision = np.asarray(evaluation.eval["precision"])
    assert precision.shape == (10, 101, 2, 4, 3), changed(
        backend, "COCOeval.eval['precision']", f"shape {precision.shape}, not (IoU, recall, category, area, maxDets)"
    )
    assert len(evaluation.stats) == 12 and len(evaluation.params.iouThrs) == 10, changed(backend, "COCOeval", "stats")
    assert per_category_ap(evaluation) == pytest.approx([1.0, 0.0]), changed(
        backend, "COCOeval.eval['precision']", "the per-category AP read from it"
    )


# ------------------------------------------------------------------------------------------------ grad-cam, torch


def test_grad_cam_internals_that_explain_sets_and_calls():
    cams = pytest.importorskip("pytorch_grad_cam")
    from visionheads.runtime.explain import CAM_METHODS

    missing = [name for name in CAM_METHODS.values() if not hasattr(cams, name)]
    assert not missing, changed("grad-cam", "pytorch_grad_cam", f"no class {missing}")
    stage = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    model = nn.Sequential(stage, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    cam = cams.ScoreCAM(model=model, target_layers=[stage])
    cam.get_target_width_height = lambda tensor: None  # explain.py: maps at the stage's own resolution
    cam.batch_size = 4  # explain.py: masked images per forward pass
    try:
        maps = cam(input_tensor=torch.rand(1, 3, 16, 16), targets=None)
    finally:
        cam.activations_and_grads.release()
    assert maps.shape == (1, 8, 8), changed("grad-cam", "BaseCAM.get_target_width_height", f"maps {maps.shape}")
    assert len(calls) == 1 + math.ceil(8 / 4), changed("grad-cam", "ScoreCAM.batch_size", f"{len(calls)} passes")


def test_torch_flop_counter_counts_a_multiply_add_as_two():
    counter = FlopCounterMode(display=False)
    with counter:
        nn.Linear(4, 3, bias=False)(torch.rand(2, 4))
    assert counter.get_total_flops() == 2 * 2 * 4 * 3, changed("torch", "FlopCounterMode", "its count")
