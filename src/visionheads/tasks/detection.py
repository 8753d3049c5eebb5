"""Object detection: torchvision's Faster / Mask R-CNN over any registry body; COCO subsets, Pascal VOC folders or
sample dicts; torchvision's R-CNN losses; COCO AP and AR from pycocotools against the data's own annotation file."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionheads._atomic import write_atomically
from visionheads.backbones import Backbone
from visionheads.data.boxes import box_pipeline, checked_boxes, moves_boxes
from visionheads.data.catalog import Source
from visionheads.data.coco import BACKGROUND, coco_at, coco_view
from visionheads.data.instances import InstanceMasks
from visionheads.data.voc import VOCFolder
from visionheads.data.yolo import yolo_at
from visionheads.errors import ConfigError, DataError
from visionheads.heads import FasterRCNNHead, MaskRCNNHead
from visionheads.heads.torchvision_detectors import (
    COCO_CLASSES,
    TorchvisionDetectorHead,
    build_detector,
    coco_class_names,
    detector,
    trunk_backbone,
)
from visionheads.metrics.coco import STAT_NAMES, COCOEvaluation, coco_backend
from visionheads.runtime.export import ExportGraph, images_graph
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import register_task
from visionheads.tasks.base import Task
from visionheads.tasks.config import TaskConfig
from visionheads.tasks.model import HeadOnBody

MASK_THRESHOLD = 0.5  # a pixel belongs to an instance where its mask probability reaches this (torchvision's)


@dataclass(frozen=True)
class DetectionConfig(TaskConfig):
    """Detection arguments: those of every task, plus these (sizes, anchors, thresholds sit with the heads:
    `min_size`, `max_size`, `anchor_sizes`, `score_threshold`, `detections_per_image`, ...)."""

    hflip: bool | None = None  # mirror training images; None: where the data allows it
    augment: bool = True  # flip, scale, crop and colour jitter in training
    category_ids: tuple[int, ...] | None = None  # the COCO category id of each class after the background
    coco_backend: str = "auto"  # COCOeval by pycocotools, faster-coco-eval or hotcoco; auto: the fastest installed
    # A whole COCO-trained torchvision detector (fasterrcnn_resnet50_fpn_v2, ...) instead of a body and a head;
    # without class names it keeps COCO's classes (labels = COCO category ids)
    model: str | None = None

    def __post_init__(self) -> None:
        if self.model is not None:
            detector(self.model)  # a ConfigError naming the detectors for an unknown one
            if self.class_names is None and self.num_classes is None:
                object.__setattr__(self, "class_names", tuple(coco_class_names(self.model)))
                object.__setattr__(self, "category_ids", tuple(range(1, COCO_CLASSES)))
        super().__post_init__()
        if self.category_ids is not None:
            object.__setattr__(self, "category_ids", tuple(int(c) for c in self.category_ids))
        coco_backend(self.coco_backend)  # a ConfigError now, not at the first evaluation


class RCNN(HeadOnBody):
    """A body and an R-CNN head: `losses(images, targets)` in training, `detect(images)` otherwise.

    torchvision's models answer losses or detections by mode; here each has its own method, one return type each.
    """

    head: FasterRCNNHead

    def losses(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """images: normalised (C, H, W) each; targets: `boxes` (N, 4) xyxy pixels, `labels` (N,) 1..K[, `masks`].
        Returns: torchvision's named losses (classifier, box_reg, objectness, rpn_box_reg[, mask])."""
        if not self.training:
            raise RuntimeError("RCNN.losses needs training mode (model.train())")
        _, losses = self._run(images, targets)
        return {name.removeprefix("loss_"): value for name, value in losses.items()}

    def detect(self, images: list[torch.Tensor] | torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """images: normalised (C, H, W) each, any sizes. Returns: per image `boxes` (N, 4) xyxy in its pixels,
        `labels` (N,), `scores` (N,)[, `masks` (N, 1, H, W) probabilities], best first."""
        was_training = self.training
        self.eval()
        try:
            detections, _ = self._run(list(images), None)
        finally:
            self.train(was_training)
        return detections

    forward = detect

    def _run(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None) -> tuple[list, dict]:
        sizes = [(image.shape[-2], image.shape[-1]) for image in images]  # not int(): a traced export keeps them
        batch, targets = self.head.transform(images, targets)  # resized to min_size/max_size, padded
        detections, losses = self.head(self.body(batch.tensors), batch, targets)
        if not self.training:
            detections = self.head.transform.postprocess(detections, batch.image_sizes, sizes)
        return detections, losses


@register_task
class DetectionTask(Task):
    """`Task("detection", backbone=..., head="faster_rcnn"|"mask_rcnn")`: boxes, labels (and masks) of objects."""

    name = "detection"
    config_type = DetectionConfig
    monitor = ("val_AP", "max")
    fixed_input_size = False  # R-CNN batches take the size of their largest image: no cuDNN benchmark mode
    data_key = "boxes"
    results_format = "COCO results JSON"
    # 1. heads: FPN over the body's stages from stride 4, RPN, RoI heads (+ mask branch)
    heads = {"faster_rcnn": FasterRCNNHead, "mask_rcnn": MaskRCNNHead}
    default_head = "faster_rcnn"

    def head_outputs(self) -> int | None:
        return self.num_classes  # the background counts, as in torchvision

    @classmethod
    def create_body(
        cls, backbone: str, *, weights: str | Path | None, in_chans: int, strict: bool, options: dict[str, Any]
    ) -> Backbone:
        """The registry body, or with `model=` the trunk of that torchvision detector (with `weights`: "coco" or a
        state dict file of the whole detector in torchvision's layout)."""
        name = options.get("model")
        if name is None:
            return super().create_body(backbone, weights=weights, in_chans=in_chans, strict=strict, options=options)
        if in_chans != 3:
            raise ConfigError(f"model={name!r} takes RGB images: in_chans=3, not {in_chans}")
        whole, _ = build_detector(name, num_classes=COCO_CLASSES, weights=weights, options=options)
        return trunk_backbone(name, whole, weights=weights)

    def build_model(self, body: Backbone, *, weights: str | Path | None = None) -> RCNN:
        """A head from the registry on the body; with `model=`, the torchvision detector's own FPN, RPN and RoI
        heads (from `weights` when given; the predictors replaced where the classes are not COCO's)."""
        name = self.config.model
        if name is not None:
            options = dict(self.config.head_options)
            whole, replaced = build_detector(name, num_classes=self.num_classes, weights=weights, options=options)
            if weights is not None and replaced:
                print(f"{name}: {len(replaced)} tensors of the predictors made for {self.num_classes} classes "
                      f"(the rest from {weights}): {', '.join(replaced)}", file=sys.stderr)  # fmt: skip
            return RCNN(body, TorchvisionDetectorHead(whole, masks=detector(name).masks))
        build = self.heads[self.config.head]
        try:
            head = build(body.channels, body.strides, self.head_outputs(), **self.head_arguments(body))
        except ValueError as error:
            raise ConfigError(f"head {self.config.head!r}: {error}") from error
        return RCNN(body, head)

    def forward(self, images: list[torch.Tensor] | torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """images: normalised (C, H, W) each. Returns: detections per image (see RCNN.detect)."""
        return self.model.detect(images)

    @property
    def with_masks(self) -> bool:
        """Whether the head predicts instance masks (mask_rcnn, or a torchvision Mask R-CNN)."""
        model = self.config.model
        return self.config.head == "mask_rcnn" or (model is not None and detector(model).masks)

    # 2. data: COCO subsets, VOC folders, sample dicts with boxes; the detector resizes, the pipelines don't
    def sample_keys(self) -> tuple[str, ...]:
        return ("image", "boxes", "labels", "masks") if self.with_masks else ("image", "boxes", "labels")

    def source_from_path(self, path: Path, channels: int) -> Source:
        """COCO (a .json, or a folder with annotations.json), YOLO (a data.yaml: its train split), an instance-mask
        folder (images/ and instances/), or Pascal VOC (Annotations/ and JPEGImages/)."""
        dataset: Any = coco_at(path, channels) or yolo_at(path, channels)
        if dataset is None:
            dataset = InstanceMasks(path, channels=channels) if (path / "instances").is_dir() else VOCFolder(
                path, channels=channels)  # fmt: skip
        return Source(dataset, str(path), class_names=dataset.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        names = source.class_names
        if names is not None and names[0] != BACKGROUND:
            names = [BACKGROUND, *names]
        source.class_names = names
        self.check_class_names(source, fitting=fitting)
        known = self.class_names
        if not fitting and names is not None and known is not None and names != known:
            # Evaluating on some of the task's categories works for COCO data: they are matched by name.
            if not set(names) <= set(known) or coco_view(source.dataset) is None:
                raise ConfigError(
                    f"{source.description}: classes {names} are not the task's {known}; evaluate on data with the "
                    "task's classes (COCO data may hold a subset of them, matched by name)"
                )
            return
        if self.num_classes is None:
            if not fitting or names is None:
                raise ConfigError(
                    f"{source.description}: pass num_classes (background included) or class_names; "
                    "they cannot be read from this data"
                )
            view = coco_view(source.dataset)
            self.set_config(class_names=tuple(names), category_ids=tuple(view.category_ids) if view else None)
        elif names is not None and len(names) != self.num_classes:
            raise ConfigError(
                f"num_classes={self.num_classes} but {source.description} has {len(names)} classes with the "
                f"background ({', '.join(names)}); drop num_classes or set it to {len(names)}"
            )
        if self.class_names is None:
            self.set_config(class_names=(BACKGROUND, *(str(i) for i in range(1, self.num_classes))))

    def train_transform(self, source: Source) -> Any:
        if not self.config.augment:
            return self.eval_transform()
        flips = source.flips_ok if self.config.hflip is None else bool(self.config.hflip)
        return box_pipeline(train=True, flips=flips)

    def eval_transform(self) -> Any:
        return box_pipeline(train=False)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, Any]:
        image = sample["image"]
        size = image.shape[:2]
        boxes, labels = checked_boxes(sample["boxes"], sample["labels"], size, where, self.num_classes)
        masks = np.asarray(sample["masks"]) if self.with_masks else None
        if masks is not None and masks.shape != (len(boxes), *size):
            raise DataError(f"{where}['masks']: shape {masks.shape}; give one HxW mask {size} per box")
        if not moves_boxes(pipeline):
            out = {"image": pipeline(image=image)["image"], "bboxes": boxes, "indices": np.arange(len(boxes))}
            out["masks"] = masks
        else:
            inputs = {"image": image, "bboxes": boxes, "labels": labels, "indices": np.arange(len(boxes))}
            if masks is not None and len(masks):
                inputs["masks"] = list(masks.astype(np.uint8))
            out = pipeline(**inputs)
        kept = np.asarray(out["indices"], dtype=np.int64)
        target = {
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(labels[kept]),
        }
        if self.with_masks:
            height, width = out["image"].shape[-2:]
            chosen = [np.asarray(out["masks"][i]) for i in kept] if len(kept) else []
            stacked = np.stack(chosen) if chosen else np.zeros((0, height, width), dtype=np.uint8)
            target["masks"] = torch.as_tensor(stacked, dtype=torch.uint8)
        image_id = int(sample.get("image_id", sample["index"]))
        return {"image": out["image"], "target": target, "image_id": image_id}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Images of different sizes stay a list, with one target dict per image (torchvision's convention)."""
        batch: dict[str, Any] = {"image": [s["image"] for s in samples]}
        if "target" in samples[0]:
            batch["targets"] = [s["target"] for s in samples]
            batch["image_id"] = [s["image_id"] for s in samples]
        return batch

    # 3. losses: torchvision's R-CNN terms (RPN objectness and box, RoI class and box, masks); none in eval mode
    def training_losses(self, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        return self.model.losses(batch["image"], batch["targets"])

    def evaluation_outputs(self, batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        return self.model.detect(batch["image"])

    def evaluation_losses(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {}

    # 4. metrics: COCOeval (bbox, and segm for masks) against the data's own COCO file, or the samples' boxes
    def new_metrics(self, source: Source | None) -> COCOEvaluation:
        """COCOeval against `source`'s own COCO file where it has one (its ids, crowd regions and areas), else
        against the boxes (and masks) the batches hold."""
        iou_types = ("bbox", "segm") if self.with_masks else ("bbox",)
        view = coco_view(source.dataset) if source is not None else None
        backend = self.config.coco_backend
        if view is None:
            names = self._names()[1:]
            return COCOEvaluation(None, range(1, self.num_classes), iou_types=iou_types, names=names, backend=backend)
        names = [view.coco.cats[c]["name"] for c in view.category_ids]
        return COCOEvaluation(view.coco, view.category_ids, iou_types=iou_types, names=names, backend=backend)

    def update_metrics(self, metrics: COCOEvaluation, outputs: list[dict], batch: dict[str, Any]) -> None:
        # The task's label k is the data's category of the same name (-1: a class the data does not evaluate).
        by_name = dict(zip(metrics.names, metrics.category_ids, strict=True))
        categories = np.asarray([0] + [by_name.get(name, -1) for name in self._names()[1:]], dtype=np.int64)
        detections = [self._plain(found, categories) for found in outputs]
        truths = None
        if metrics.ground_truth is None:  # no annotation file: the truth is what the batch holds
            truths = [
                {"boxes": t["boxes"], "labels": t["labels"], "masks": t.get("masks"), "size": image.shape[-2:]}
                for t, image in zip(batch["targets"], batch["image"], strict=True)
            ]
        metrics.update(batch["image_id"], detections, truths)

    def _plain(self, found: dict[str, torch.Tensor], categories: np.ndarray) -> dict[str, Any]:
        ids = categories[found["labels"].cpu().numpy()]
        kept = ids >= 0
        plain = {
            "boxes": found["boxes"].detach().float().cpu().numpy()[kept],
            "scores": found["scores"].detach().float().cpu().numpy()[kept],
            "category_ids": ids[kept],
        }
        if self.with_masks:
            plain["masks"] = found["masks"][:, 0].detach().cpu().numpy()[kept] >= MASK_THRESHOLD
        return plain

    def metric_values(self, computed: dict[str, Any]) -> dict[str, float]:
        values: dict[str, float] = {}
        names = computed.get("category_names") or self._names()[1:]
        for iou_type in ("bbox", "segm"):
            if f"{iou_type}_stats" not in computed:
                continue
            prefix = "" if iou_type == "bbox" else "segm_"
            stats = computed[f"{iou_type}_stats"].tolist()
            values |= {f"{prefix}{name}": float(v) for name, v in zip(STAT_NAMES, stats, strict=True)}
            per_category = computed[f"{iou_type}_per_category"].reshape(-1).tolist()  # torchmetrics squeezes one
            for name, value in zip(names, per_category, strict=False):
                if value >= 0:  # -1: no truth of this category in the data
                    values[f"{prefix}AP_{name}"] = float(value)
        return values

    def _names(self) -> list[str]:
        return self.class_names or [BACKGROUND, *(str(i) for i in range(1, self.num_classes))]

    def write_results(self, evaluation: Evaluation, path: Path) -> Path:
        """The evaluation's detections as a COCO results JSON (original image and category ids for COCO data: any
        COCO tool scores the file as `evaluate` did)."""
        return write_coco_results(evaluation.computed["results"], path)

    # 5. predictions: boxes in each image's own pixels, label names, scores (and masks), best first
    def export_graph(self, part: str) -> ExportGraph:
        """One uint8 image (C, H, W) of any size in (R-CNN resizes it itself), its detections out."""
        return images_graph(self, lambda batch: self.export_outputs(batch, part), batched=False)

    def export_outputs(self, batch: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
        """The one image's boxes (N, 4) xyxy in its pixels, labels (N,), scores (N,)[, masks (N, 1, H, W)]."""
        (found,) = self.prediction_outputs(batch)
        return {key: found[key] for key in ("boxes", "labels", "scores", "masks") if key in found}

    def decode(self, outputs: list[dict[str, torch.Tensor]], sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
        names = self._names()
        categories = _category_lookup(self.config.category_ids or range(1, self.num_classes), self.num_classes)
        results = []
        for found in outputs:
            plain = self._plain(found, categories)
            labels = found["labels"].cpu().numpy()
            result = {"boxes": plain["boxes"], "labels": [names[i] for i in labels], "label_ids": labels,
                      "scores": plain["scores"], "category_ids": plain["category_ids"]}  # fmt: skip
            if self.with_masks:
                result["masks"] = plain["masks"]
            results.append(result)
        return results

    # 6. figures: predicted and true boxes on test images; precision-recall per category; the results JSON
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        from visionheads.viz.detection import plot_detections, plot_precision_recall

        dataset = evaluation.source.dataset
        samples = [dataset[i] for i in range(min(8, len(dataset)))]
        predicted = self.predict([s["image"] for s in samples])
        names = self._names()
        paths = [plot_detections(samples, predicted, names, out_dir / "detections.png")]
        computed = evaluation.computed
        for iou_type in ("bbox", "segm"):
            if f"{iou_type}_precision" in computed and len(computed[f"{iou_type}_precision"]):
                path = out_dir / f"precision_recall{'' if iou_type == 'bbox' else '_segm'}.png"
                precision = computed[f"{iou_type}_precision"].reshape(-1, 101).numpy()  # (K, 101 recall points)
                paths.append(plot_precision_recall(precision, computed.get("category_names") or names[1:], path))
        paths.append(self.write_results(evaluation, out_dir / "detections.json"))
        return paths


def write_coco_results(results: list[dict[str, Any]], path: Path) -> Path:
    """Write a COCO results list as JSON (atomically)."""
    payload = json.dumps(results).encode()
    return write_atomically(path, lambda file: file.write(payload))


def _category_lookup(category_ids: Any, num_classes: int) -> np.ndarray:
    """label -> COCO category id (label 0, the background, maps to 0)."""
    lookup = np.zeros(num_classes, dtype=np.int64)
    lookup[1:] = list(category_ids)
    return lookup
