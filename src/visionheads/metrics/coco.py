"""COCO detection metrics: pycocotools' COCOeval inside a torchmetrics `Metric` (detections synced across processes).

Detections are kept as flat tensors (boxes, scores, ids; instance masks as RLE bytes), so torchmetrics can gather
them from every process; `compute` turns them into a COCO results list and runs COCOeval against the ground truth
it was given: the dataset's own annotation file, restricted to the evaluated images and the chosen categories.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from visionheads.errors import ConfigError

BACKENDS = ("hotcoco", "faster-coco-eval", "pycocotools")  # fastest first; all compute pycocotools' statistics
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")


class COCOEvaluation(Metric):
    """COCO AP/AR of detections against `ground_truth` (a pycocotools COCO) for `category_ids`, as COCOeval does.

    `update(image_ids, detections, truths)`: per image its COCO id, and a dict with `boxes` (N, 4) xyxy in the
    image's original pixels, `scores` (N,), `category_ids` (N,) original COCO ids, for segm `masks` (N, H, W) bool.
    `names` are the categories' names, in `category_ids` order. Without a `ground_truth` file (`None`), the truth
    is what `truths` hold per image:
    `boxes` (M, 4) xyxy, `labels` (M,) = category ids, `size` (H, W), for segm `masks` (M, H, W).
    `compute()`: {"stats": (12,) per IoU type as `<type>_stats`, `<type>_per_category` (K,), `<type>_precision`
    (K, 101) at IoU 0.5, "results": the COCO results list}.
    """

    full_state_update = False

    def __init__(
        self,
        ground_truth: COCO | None,
        category_ids: Sequence[int],
        *,
        iou_types: Sequence[str] = ("bbox",),
        names: Sequence[str] = (),
        backend: str = "auto",
    ) -> None:
        super().__init__(sync_on_compute=True)
        self.backend = coco_backend(backend)
        self.ground_truth = ground_truth
        self.category_ids = [int(c) for c in category_ids]
        self.iou_types = tuple(iou_types)
        self.names = list(names)
        states = ("image_ids", "rows", "rle_bytes", "rle_shapes", "sizes", "truth_rows", "truth_bytes", "truth_shapes")
        for name in states:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        image_ids: Sequence[int],
        detections: Sequence[dict[str, Any]],
        truths: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Detections (and, without a ground-truth file, the truth) of a batch of images; see the class docstring."""
        if self.ground_truth is None and truths is None:
            raise ValueError("COCOEvaluation without a ground-truth file needs the truths of each image")
        for position, (image_id, found) in enumerate(zip(image_ids, detections, strict=True)):
            self.image_ids.append(torch.tensor([int(image_id)], dtype=torch.int64, device=self.device))
            segm = "segm" in self.iou_types
            _append(self.rows, self.rle_bytes, self.rle_shapes, image_id, found, "category_ids", segm, self.device)
            if truths is not None:
                truth = truths[position]
                size = [int(image_id), *(int(v) for v in truth["size"])]
                self.sizes.append(torch.tensor([size], dtype=torch.int64, device=self.device))
                _append(
                    self.truth_rows, self.truth_bytes, self.truth_shapes, image_id, truth, "labels", segm, self.device
                )

    def compute(self) -> dict[str, Any]:
        """Run COCOeval for each IoU type over the detections of every process."""
        image_ids = sorted({int(i) for i in _cat(self.image_ids, torch.int64).tolist()})
        results = self.results()
        ground_truth = self.ground_truth if self.ground_truth is not None else self._ground_truth_of_updates()
        computed: dict[str, Any] = {"results": results, "category_names": self.names}
        for iou_type in self.iou_types:
            evaluation = evaluate_results(
                ground_truth, results, iou_type, image_ids, self.category_ids, backend=self.backend
            )
            computed[f"{iou_type}_stats"] = torch.tensor(_stats(evaluation), dtype=torch.float64)
            computed[f"{iou_type}_per_category"] = torch.tensor(per_category_ap(evaluation), dtype=torch.float64)
            computed[f"{iou_type}_precision"] = torch.tensor(precision_at_iou(evaluation, 0.5), dtype=torch.float64)
        return computed

    def results(self) -> list[dict[str, Any]]:
        """The detections as a COCO results list (bbox xywh, score, category_id; segmentation as RLE for segm)."""
        return _as_annotations(self.rows, self.rle_bytes, self.rle_shapes)

    def _ground_truth_of_updates(self) -> COCO:
        sizes = _cat(self.sizes, torch.int64).reshape(-1, 3).tolist()
        images = {image_id: {"id": image_id, "height": h, "width": w} for image_id, h, w in sizes}
        annotations = _as_annotations(self.truth_rows, self.truth_bytes, self.truth_shapes)
        for number, annotation in enumerate(annotations, start=1):
            x, y, w, h = annotation["bbox"]
            area = float(mask_utils.area(annotation["segmentation"])) if "segmentation" in annotation else w * h
            annotation |= {"id": number, "area": area, "iscrowd": 0}
            annotation.pop("score")
        categories = [{"id": c, "name": str(n)} for c, n in zip(self.category_ids, self.names, strict=False)]
        coco = COCO()
        coco.dataset = {"images": list(images.values()), "annotations": annotations, "categories": categories}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco


def results_list(image_ids: Sequence[int], detections: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Detections of images (as `COCOEvaluation.update` takes them; `masks` where present) as a COCO results list."""
    masks = bool(detections) and all("masks" in found for found in detections)
    rows: list[torch.Tensor] = []
    rle_bytes: list[torch.Tensor] = []
    rle_shapes: list[torch.Tensor] = []
    for image_id, found in zip(image_ids, detections, strict=True):
        _append(rows, rle_bytes, rle_shapes, image_id, found, "category_ids", masks, torch.device("cpu"))
    return _as_annotations(rows, rle_bytes, rle_shapes)


def _append(
    rows: list, rle_bytes: list, rle_shapes: list, image_id: int, found: dict, ids: str, masks: bool, device: Any
) -> None:
    """One image's boxes as (N, 7) rows (image, x, y, w, h, score, category), and its masks as RLE bytes.

    `found` holds `boxes` xyxy, `ids` (the category ids' key), `scores` (truths have none: 1) and `masks`."""
    boxes = torch.from_numpy(_numpy(found["boxes"], np.float64)).reshape(-1, 4)
    count = len(boxes)
    scores = _numpy(found["scores"], np.float64) if "scores" in found else np.ones(count)
    row = [
        torch.full((count, 1), float(image_id), dtype=torch.float64),
        torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1),  # xywh
        torch.from_numpy(scores).reshape(-1, 1),
        torch.from_numpy(_numpy(found[ids], np.float64)).reshape(-1, 1),
    ]
    rows.append(torch.cat(row, dim=1).to(device))
    if masks:
        pixels = _numpy(found["masks"], bool)
        encoded, shapes = _encode_masks(pixels.reshape(count, *pixels.shape[-2:]))
        rle_bytes.append(encoded.to(device))
        rle_shapes.append(shapes.to(device))


def _as_annotations(rows: Any, rle_bytes: Any, rle_shapes: Any) -> list[dict[str, Any]]:
    """Rows (image, x, y, w, h, score, category) and RLE bytes as COCO annotation dicts (results format)."""
    rows = _cat(rows, torch.float64).reshape(-1, 7).cpu().numpy()
    masks = _decode_rles(_cat(rle_bytes, torch.uint8), _cat(rle_shapes, torch.int64).reshape(-1, 3))
    results = []
    for index, (image_id, x, y, w, h, score, category_id) in enumerate(rows):
        result = {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "bbox": [round(float(v), 3) for v in (x, y, w, h)],
            "score": round(float(score), 5),
        }
        if masks:
            result["segmentation"] = masks[index]
        results.append(result)
    return results


def coco_backend(name: str = "auto") -> str:
    """The COCOeval implementation to use: `name`, or for "auto" the fastest installed of BACKENDS."""
    if name == "auto":
        return next(backend for backend in BACKENDS if _installed(backend))
    if name not in BACKENDS:
        raise ConfigError(f"coco_backend={name!r}; use 'auto' or one of {BACKENDS}")
    if not _installed(name):
        raise ConfigError(f"coco_backend={name!r} is not installed: pip install {name}")
    return name


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend.replace("-", "_")) is not None


def evaluate_results(
    ground_truth: COCO,
    results: list[dict[str, Any]],
    iou_type: str,
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    *,
    backend: str = "pycocotools",
) -> Any:
    """COCOeval of `results` on `image_ids` and `category_ids` by `backend` (None when there are no results).

    For segm the results' boxes are dropped first (as Detectron2 does), so areas and IoUs come from the masks.
    faster-coco-eval and hotcoco are pycocotools-compatible reimplementations (C++ and Rust) with the same stats.
    """
    if not results:
        return None
    if iou_type == "segm":
        results = [{key: value for key, value in r.items() if key != "bbox"} for r in results]
    if backend == "pycocotools":
        truth, evaluator = ground_truth, COCOeval
    elif backend == "faster-coco-eval":
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster

        truth, evaluator = FasterCOCO(ground_truth.dataset), COCOeval_faster
    else:
        import hotcoco

        truth, evaluator = hotcoco.COCO(ground_truth.dataset), hotcoco.COCOeval
    with contextlib.redirect_stdout(io.StringIO()):  # they print every step
        detections = truth.loadRes([dict(r) for r in results])  # loadRes adds fields: hand it copies
        evaluation = evaluator(truth, detections, iou_type)
        evaluation.params.imgIds = list(image_ids)
        evaluation.params.catIds = list(category_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def _stats(evaluation: Any) -> list[float]:
    return [0.0] * len(STAT_NAMES) if evaluation is None else [float(v) for v in evaluation.stats]


def per_category_ap(evaluation: Any) -> list[float]:
    """AP (IoU 0.50:0.95, all areas, 100 detections) of each category in `params.catIds` order; -1 without truth."""
    if evaluation is None:
        return []
    precision = np.asarray(evaluation.eval["precision"])[:, :, :, 0, -1]  # (IoU, recall, category)
    values = []
    for k in range(precision.shape[2]):
        valid = precision[:, :, k][precision[:, :, k] > -1]
        values.append(float(valid.mean()) if valid.size else -1.0)
    return values


def precision_at_iou(evaluation: Any, iou: float) -> np.ndarray:
    """Interpolated precision at COCO's 101 recall points, per category (K, 101), at one IoU threshold."""
    if evaluation is None:
        return np.zeros((0, 101))
    t = int(np.argmin(np.abs(np.asarray(evaluation.params.iouThrs) - iou)))
    return np.asarray(evaluation.eval["precision"])[t, :, :, 0, -1].T


def _numpy(values: Any, dtype: Any) -> np.ndarray:
    """A tensor (on any device) or array-like as a NumPy array of `dtype`."""
    if torch.is_tensor(values):
        values = values.detach().cpu().numpy()
    return np.asarray(values).astype(dtype, copy=False)


def _encode_masks(masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) bool to RLE counts as one byte tensor and (N, 3) rows of (byte count, H, W)."""
    chunks, shapes = [], []
    for mask in masks:
        counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
        chunks.append(np.frombuffer(counts, dtype=np.uint8))
        shapes.append((len(counts), *mask.shape))
    data = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)
    return torch.from_numpy(data.copy()), torch.tensor(shapes, dtype=torch.int64).reshape(-1, 3)


def _decode_rles(data: torch.Tensor, shapes: torch.Tensor) -> list[dict[str, Any]]:
    raw, rles, start = data.cpu().numpy().tobytes(), [], 0
    for length, height, width in shapes.tolist():
        rles.append({"size": [height, width], "counts": raw[start : start + length].decode("ascii")})
        start += length
    return rles


def _cat(values: list[torch.Tensor] | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # torchmetrics' dim_zero_cat, which refuses a state that no update filled (no masks, no truths): empty here.
    if isinstance(values, list) and not values:
        return torch.zeros(0, dtype=dtype)
    return dim_zero_cat(values)
