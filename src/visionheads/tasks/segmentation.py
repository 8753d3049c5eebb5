"""Semantic segmentation: U-Net, SegNet, SegNet-lite, FPN, DeepLabV3+ heads; COCO or mask folders; CE + Dice; mIoU."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from visionheads.backbones import Backbone
from visionheads.data.balance import mask_class_counts
from visionheads.data.catalog import Source
from visionheads.data.coco import coco_at
from visionheads.data.instances import InstanceMasks
from visionheads.data.masks import MaskFolders
from visionheads.data.samples import IGNORE_INDEX
from visionheads.data.transforms import MaskAsItIs, Size, checked_size, eval_pipeline, train_pipeline
from visionheads.data.yolo import yolo_at
from visionheads.errors import ConfigError, DataError, checked_colors
from visionheads.heads import DeepLabV3PlusHead, FPNHead, SegNetHead, SegNetLiteHead, UnetHead
from visionheads.metrics import confusion_metrics
from visionheads.runtime.explain import Target
from visionheads.runtime.export import ExportGraph
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import register_task
from visionheads.tasks.base import Task
from visionheads.tasks.config import TaskConfig
from visionheads.tasks.model import HeadOnBody, PoolIndexedModel
from visionheads.tasks.weighting import ClassWeights, checked_class_weights, class_weight_tensor, fit_class_weights

_DICE = DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE_INDEX)  # stateless: one serves all tasks


@dataclass(frozen=True)
class SegmentationConfig(TaskConfig):
    """Segmentation arguments: those of every task, plus these."""

    dice_weight: float = 1.0  # loss = cross-entropy + dice_weight * Dice
    hflip: bool | None = None  # mirror training images; None: where the data allows it
    # cross-entropy weight per class, or "median_frequency" (SegNet's balancing) of the training masks
    class_weights: ClassWeights = None
    # train on random crops of this size (a side or (height, width)) of the resized images; None: whole images
    crop_size: Size | None = None
    scale_range: tuple[float, float] = (0.9, 1.1)  # the random zoom of training images (before the crop)
    # zoom (scale_range), shift, rotation and colour jitter of training images; False: crops and flips only
    augment: bool = True
    # an (R, G, B) colour per class, 0..255, for the figures (e.g. a dataset's own palette); None: chosen ones
    class_colors: tuple[tuple[int, int, int], ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "class_weights", checked_class_weights(self.class_weights))
        if self.crop_size is not None:
            object.__setattr__(self, "crop_size", checked_size("crop_size", self.crop_size))
        if self.class_colors is not None:
            object.__setattr__(self, "class_colors", checked_colors(self.class_colors, self.num_classes))
        low, high = _checked_range("scale_range", self.scale_range)
        object.__setattr__(self, "scale_range", (low, high))


@register_task
class SegmentationTask(Task):
    """`Task("segmentation", backbone=..., head="unet"|"segnet"|"segnet_lite"|"fpn"|"deeplabv3plus")`: per pixel."""

    name = "segmentation"
    config_type = SegmentationConfig
    monitor = ("val_miou", "max")
    data_key = "mask"
    # 1. heads
    heads = {
        "unet": UnetHead,
        "segnet": SegNetHead,  # unpools with the VGG encoder's pooling indices (vgg11_bn, vgg16_bn)
        "segnet_lite": SegNetLiteHead,  # the same shape without indices: any body
        "fpn": FPNHead,
        "deeplabv3plus": DeepLabV3PlusHead,
    }
    default_head = "unet"

    @property
    def tta_views(self) -> tuple[tuple[bool, float], ...]:  # type: ignore[override]
        """(mirrored, scale) views of tta=True: the image and its mirror, and at 0.75 and 1.25 times the size where
        training zoomed (augment=True). A model trained at one scale loses by other scales: on CamVid val, flips
        alone 0.647 -> 0.652 mIoU, with the two scales 0.632."""
        scales = (0.75, 1.0, 1.25) if self.config.augment else (1.0,)
        return tuple((mirrored, scale) for scale in scales for mirrored in (False, True))

    def head_outputs(self) -> int | None:
        return self.num_classes

    def build_model(self, body: Backbone, *, weights: str | Path | None = None) -> HeadOnBody:
        """The head on the body; SegNet's unpools with the body's pooling indices, which the body hands over."""
        model = super().build_model(body)
        if isinstance(model.head, SegNetHead):
            return PoolIndexedModel(body, model.head, maps_read=model.head.maps_read, without_indices="segnet_lite")
        return model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float normalised, (B, in_chans, H, W). Returns: class scores (B, K, H, W).

        A size that the body's deepest stride does not divide (180 px at stride 32) is padded up to one it divides,
        with mirrored pixels, and the scores cropped back: the decoder then meets every skip map at exactly twice
        its own size, as in training. Upsampling 12 cells to 23 instead misplaces whole cells, which cost a U-Net on
        CamVid at 180x240 0.09 val mIoU (0.558 against 0.647, the same weights)."""
        height, width = images.shape[-2:]
        stride = self.backbone.strides[-1]
        pad_h, pad_w = -height % stride, -width % stride
        padded = images
        if pad_h or pad_w:  # training crops and exported sizes usually divide: no copy there
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"  # reflect needs pads below the size
            padded = F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
        scores = self.model(padded)
        if scores.shape[-2:] != padded.shape[-2:]:  # bodies whose maps don't divide the input evenly
            scores = F.interpolate(scores, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return scores[..., :height, :width]

    # 2. data
    def sample_keys(self) -> tuple[str, ...]:
        return ("image", "mask")

    def source_from_path(self, path: Path, channels: int) -> Source:
        """COCO (a .json, or a folder with annotations.json), YOLO polygons (a data.yaml: its train split), an
        instance-mask folder (images/ and instances/: each object's class), or a mask folder (images/ and masks/)."""
        dataset: Any = coco_at(path, channels) or yolo_at(path, channels)
        if dataset is None:
            dataset = InstanceMasks(path, channels=channels) if (path / "instances").is_dir() else MaskFolders(
                path, channels=channels)  # fmt: skip
        return Source(dataset, str(path), class_names=dataset.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        names = source.class_names
        self.check_class_names(source, fitting=fitting)
        if self.num_classes is None:
            if not fitting or names is None:
                raise ConfigError(
                    f"{source.description}: pass num_classes (background included); it cannot be read from this data"
                )
            self.set_config(num_classes=len(names))
        elif names is not None and len(names) != self.num_classes:
            raise ConfigError(
                f"num_classes={self.num_classes} but {source.description} has {len(names)} classes "
                f"({', '.join(names)}); drop num_classes or set it to {len(names)}"
            )
        if self.class_names is None:
            self.set_config(class_names=tuple(names) if names else tuple(str(i) for i in range(self.num_classes)))
        if fitting:  # reads every training mask once when the weights are "median_frequency"
            counts = partial(mask_class_counts, source.dataset, self.num_classes)
            weights = fit_class_weights(self.config.class_weights, self.num_classes, counts, source.description)
            self.set_config(class_weights=weights)

    def train_transform(self, source: Source) -> Any:
        hflip = self.config.hflip
        flips = source.flips_ok if hflip is None else bool(hflip)
        # Pixels that a shift or rotation brings in from outside the image carry no label: ignore them.
        config = self.config
        return train_pipeline(config.image_size, flips=flips, fill_mask=IGNORE_INDEX, crop_size=config.crop_size,
                              scale=config.scale_range, jitter=config.augment)  # fmt: skip

    def eval_transform(self) -> Any:
        """The image resized to image_size; the mask as it is, so that metrics compare with the labels themselves."""
        return MaskAsItIs(eval_pipeline(self.config.image_size))

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        mask = np.asarray(sample["mask"])
        if mask.shape != sample["image"].shape[:2]:
            raise DataError(f"{where}['mask']: shape {mask.shape} but the image is {sample['image'].shape[:2]}")
        if not np.issubdtype(mask.dtype, np.integer):
            raise DataError(f"{where}['mask']: dtype {mask.dtype}; a mask holds integer class indices")
        bad = mask[(mask < 0) | ((mask >= self.num_classes) & (mask != IGNORE_INDEX))]
        if bad.size:
            raise DataError(
                f"{where}['mask']: class index {int(bad[0])} outside 0..{self.num_classes - 1} "
                f"(use {IGNORE_INDEX} for pixels to ignore, or raise num_classes)"
            )
        out = pipeline(image=sample["image"], mask=mask.astype(np.uint8 if self.num_classes < 255 else np.int32))
        return {"image": out["image"], "mask": out["mask"].long()}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Images stacked (B, C, H, W); masks stacked (B, H, W), or a list of (H, W) when evaluation keeps images of
        several sizes at their own."""
        masks = [sample["mask"] for sample in samples] if "mask" in samples[0] else None
        batch = super().collate([{k: v for k, v in sample.items() if k != "mask"} for sample in samples])
        if masks is not None:
            same = all(mask.shape == masks[0].shape for mask in masks)
            batch["mask"] = torch.stack(masks) if same else masks
        return batch

    # 3. losses: cross-entropy for every pixel plus Dice for small classes that CE alone underweights
    def losses(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """outputs: scores (B, K, h, w); batch["mask"]: (B, H, W) class indices, 255 ignored (or a list of (H, W)).
        Scores at another size than the labels are resized to theirs first."""
        pairs = _at_label_sizes(outputs, batch["mask"])
        if len(pairs) == 1:
            return self._losses(*pairs[0])
        per_image = [self._losses(scores, target) for scores, target in pairs]
        return {key: torch.stack([terms[key] for terms in per_image]).mean() for key in per_image[0]}

    def _losses(self, scores: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        weight = class_weight_tensor(self.config.class_weights, scores)
        losses = {"cross_entropy": F.cross_entropy(scores, target, weight=weight, ignore_index=IGNORE_INDEX)}
        if self.config.dice_weight:
            losses["dice"] = self.config.dice_weight * _DICE(scores, target)
        return losses

    # 4. metrics: one pixel confusion matrix (summed across processes); IoU, Dice, accuracy read off it
    def new_metrics(self, source: Source | None) -> MetricCollection:
        matrix = MulticlassConfusionMatrix(self.num_classes, ignore_index=IGNORE_INDEX, validate_args=False)
        return MetricCollection({"confusion": matrix})

    def update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        for scores, target in _at_label_sizes(outputs.detach(), batch["mask"]):
            metrics.update(scores.argmax(dim=1), target)

    def metric_values(self, computed: dict[str, torch.Tensor]) -> dict[str, float]:
        return confusion_metrics(computed["confusion"].cpu().numpy(), self._names())

    def _names(self) -> list[str]:
        return self.class_names or [str(i) for i in range(self.num_classes)]

    # 5. predictions: scores resized to each image's own size, then the best class per pixel
    def undo_view(self, outputs: torch.Tensor, *, mirrored: bool, size: tuple[int, int]) -> torch.Tensor:
        """outputs: scores (B, K, h, w) of a view, mirrored back and resized to the input's `size`."""
        return _scores_at(outputs.flip(-1) if mirrored else outputs, size)

    def decode(self, outputs: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        masks = []
        for scores, size in zip(outputs.float(), sizes, strict=True):
            masks.append(_scores_at(scores[None], size)[0].argmax(dim=0).cpu().numpy().astype(np.int64))
        return masks

    def export_graph(self, part: str) -> ExportGraph:
        """As every task's; SegNet's unpooling checks its indices as tensors, which TorchScript tracing cannot hold,
        and its exported sizes are the task's image size."""
        graph = super().export_graph(part)
        if isinstance(self.model, PoolIndexedModel):
            graph.traceable = False
            graph.dynamic_axes = (0,)  # the unpooled sizes follow the task's image size: a batch of any size only
        return graph

    def export_outputs(self, batch: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
        """scores (B, K, H, W) at the input's size; the runtime resizes them to each image's and takes the argmax."""
        return {"scores": self.prediction_outputs(batch).float()}

    # 6. figures
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        from visionheads.viz.confusion import plot_confusion
        from visionheads.viz.segmentation import plot_mask_grid

        dataset = evaluation.source.dataset
        # spread over the data: consecutive video frames (CamVid) would show one scene eight times
        samples = [dataset[int(i)] for i in np.unique(np.linspace(0, len(dataset) - 1, min(8, len(dataset))).round())]
        images = [s["image"] for s in samples]
        masks = [s["mask"] for s in samples]
        matrix = evaluation.computed["confusion"].cpu().numpy()
        colors = self.config.class_colors
        return [
            plot_mask_grid(images, masks, self.predict(images), self._names(), out_dir / "masks.png", colors=colors),
            plot_confusion(matrix, self._names(), out_dir / "confusion_matrix.png", unit="pixels", per_true_class=True),
        ]

    # 7. explanations: one class at a time, over the pixels predicted as that class
    def explanation_targets(self, outputs: torch.Tensor, target: int | str | None) -> list[Target]:
        """outputs: scores (B, K, H, W). Returns: per image, the sum of class `target`'s scores over its pixels
        predicted as `target` (all pixels where none are)."""
        if target is None:
            raise ConfigError(f"segmentation explains one class at a time: pass target= one of {self._names()}")
        index = self.class_index(target)
        return [partial(_class_score, index=index)] * len(outputs)


def _checked_range(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        low, high = float(value[0]), float(value[1])
        if 0 < low <= high:
            return low, high
    raise ConfigError(f"{name}={value!r}; give [low, high] with 0 < low <= high, e.g. [0.75, 1.5]")


def _class_score(scores: torch.Tensor, *, index: int) -> torch.Tensor:
    chosen = scores.argmax(dim=0) == index  # (H, W)
    return scores[index][chosen].sum() if chosen.any() else scores[index].sum()


def _at_label_sizes(outputs: torch.Tensor, masks: torch.Tensor | list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """(scores, mask) pairs with the scores (float, B x K x H x W) at their masks' size: one pair for a stacked
    batch of masks (B, H, W), one per image for a list of (H, W) masks of several sizes."""
    if torch.is_tensor(masks):
        return [(_scores_at(outputs, masks.shape[-2:]), masks)]
    return [(_scores_at(scores[None], mask.shape), mask[None]) for scores, mask in zip(outputs, masks, strict=True)]


def _scores_at(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Scores (B, K, h, w) resized bilinearly to `size` (H, W) where they differ, as float."""
    scores = scores.float()
    if tuple(scores.shape[-2:]) != tuple(size):
        scores = F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
    return scores
