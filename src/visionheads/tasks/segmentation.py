"""Semantic segmentation: U-Net, SegNet-style, FPN, DeepLabV3+ heads; COCO or mask folders; CE + Dice; mIoU."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch.nn import functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from visionheads.data.coco import COCOSubset
from visionheads.data.masks import MaskFolders
from visionheads.data.sources import Source
from visionheads.data.transforms import eval_pipeline, train_pipeline
from visionheads.errors import ConfigError, DataError
from visionheads.heads import DeepLabV3PlusHead, FPNHead, SegNetHead, UnetHead
from visionheads.tasks.base import Task, register_task

IGNORE_INDEX = 255  # mask value for "don't care" pixels (borders, unlabelled), as in VOC and Cityscapes
_DICE = DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE_INDEX)  # stateless: one serves all tasks


@register_task
class SegmentationTask(Task):
    """`Task("segmentation", backbone=..., head="unet"|"segnet"|"fpn"|"deeplabv3plus")`: a class per pixel."""

    name = "segmentation"
    # 1. heads
    heads = {"unet": UnetHead, "segnet": SegNetHead, "fpn": FPNHead, "deeplabv3plus": DeepLabV3PlusHead}
    default_head = "unet"
    target_key = "mask"
    option_defaults = {
        "dice_weight": 1.0,
        "hflip": None,
        "pyramid_channels": 128,  # fpn
        "segmentation_channels": 64,  # fpn
        "dropout": 0.2,  # fpn
        "aspp_channels": 128,  # deeplabv3plus
    }
    monitor = ("val_miou", "max")

    def head_outputs(self) -> int | None:
        return self.num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float normalised, (B, in_chans, H, W). Returns: class scores (B, K, H, W)."""
        scores = super().forward(images)
        if scores.shape[-2:] != images.shape[-2:]:  # bodies whose maps don't divide the input evenly
            scores = F.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return scores

    # 2. data
    def source_from_path(self, path: Path, channels: int) -> Source:
        if path.is_file() and path.suffix == ".json":
            dataset: Any = COCOSubset(path, channels=channels)
        elif (path / "annotations.json").is_file():
            dataset = COCOSubset(path / "annotations.json", path, channels=channels)
        else:
            dataset = MaskFolders(path, channels=channels)
        return Source(dataset, str(path), class_names=dataset.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        names = source.class_names
        self.check_class_names(source, fitting=fitting)
        if self.num_classes is None:
            if not fitting or names is None:
                raise ConfigError(
                    f"{source.description}: pass num_classes (background included); it cannot be read from this data"
                )
            self.num_classes = len(names)
            self.build_head()
        elif names is not None and len(names) != self.num_classes:
            raise ConfigError(
                f"num_classes={self.num_classes} but {source.description} has {len(names)} classes "
                f"({', '.join(names)}); drop num_classes or set it to {len(names)}"
            )
        if self.class_names is None:
            self.class_names = list(names) if names else [str(i) for i in range(self.num_classes)]

    def train_transform(self, source: Source) -> Any:
        flips = source.flips_ok if self.options["hflip"] is None else bool(self.options["hflip"])
        # Pixels that a shift or rotation brings in from outside the image carry no label: ignore them.
        return train_pipeline(self.image_size, self.mean, self.std, flips=flips, seed=self.seed, fill_mask=IGNORE_INDEX)

    def eval_transform(self) -> Any:
        return eval_pipeline(self.image_size, self.mean, self.std)

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

    # 3. loss: cross-entropy for every pixel plus Dice for small classes that CE alone underweights
    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = batch["mask"]
        loss = F.cross_entropy(outputs.float(), target, ignore_index=IGNORE_INDEX)
        weight = self.options["dice_weight"]
        return loss + weight * _DICE(outputs.float(), target) if weight else loss

    # 4. metrics
    def new_metrics(self) -> SegmentationMetrics:
        return SegmentationMetrics(self.class_names or [str(i) for i in range(self.num_classes)])

    # 5. predictions
    def decode(self, outputs: torch.Tensor) -> list[np.ndarray]:
        return list(outputs.argmax(dim=1).cpu().numpy().astype(np.int64))

    def predict(self, images: Any, *, batch_size: int = 64) -> list[np.ndarray]:
        """One HxW class-index mask per image, at that image's own size."""
        arrays = self.image_arrays(images)
        masks = super().predict(arrays, batch_size=batch_size)
        return [_resize_mask(mask, array.shape[:2]) for mask, array in zip(masks, arrays, strict=True)]

    # 6. plots
    def task_plots(self, out_dir: Path) -> list[Path]:
        from visionheads.viz.segmentation import plot_mask_grid

        metrics, source = self.last_evaluation, self.last_evaluated
        if not isinstance(metrics, SegmentationMetrics) or source is None:
            return []
        samples = [source.dataset[i] for i in range(min(8, len(source.dataset)))]
        images = [s["image"] for s in samples]
        predicted = self.predict(images)
        grid = plot_mask_grid(images, [s["mask"] for s in samples], predicted, metrics.names, out_dir / "masks.png")
        return [grid]


class SegmentationMetrics:
    """One confusion matrix over all pixels (torchmetrics); IoU, Dice and pixel accuracy read off it at the end."""

    def __init__(self, class_names: list[str]) -> None:
        self.names = class_names
        self.confusion = MulticlassConfusionMatrix(
            len(class_names),
            ignore_index=IGNORE_INDEX,
            validate_args=False,  # checked in to_tensors already
        )

    def update(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self.confusion = self.confusion.to(outputs.device)
        self.confusion.update(outputs.detach().argmax(dim=1), batch["mask"])

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.confusion.compute().cpu().numpy(), self.names)


def confusion_metrics(confusion: np.ndarray, names: list[str]) -> dict[str, float]:
    """miou, dice (means over the classes that occur in truth or prediction), pixel_accuracy, iou_<class>.

    confusion: (K, K) pixel counts, rows true classes, columns predicted.
    """
    confusion = confusion.astype(np.float64)
    true_positive = np.diag(confusion)
    false_positive = confusion.sum(axis=0) - true_positive
    false_negative = confusion.sum(axis=1) - true_positive
    union = true_positive + false_positive + false_negative
    present = union > 0  # a class absent from both truth and prediction has no IoU (mmseg, torchmetrics agree)
    iou = np.divide(true_positive, union, out=np.full_like(union, np.nan), where=present)
    dice = np.divide(2 * true_positive, union + true_positive, out=np.full_like(union, np.nan), where=present)
    result = {
        "miou": float(np.nanmean(iou)) if present.any() else 0.0,
        "dice": float(np.nanmean(dice)) if present.any() else 0.0,
        "pixel_accuracy": float(true_positive.sum() / max(confusion.sum(), 1.0)),
    }
    for name, value in zip(names, iou, strict=True):
        result[f"iou_{_key(name)}"] = float(value) if np.isfinite(value) else float("nan")
    return result


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "class"


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape == size:
        return mask
    return cv2.resize(mask.astype(np.int32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(np.int64)
