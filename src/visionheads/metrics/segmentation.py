"""Segmentation scores read off one pixel confusion matrix (torchmetrics' MulticlassConfusionMatrix syncs it)."""

from __future__ import annotations

import re

import numpy as np


def confusion_metrics(confusion: np.ndarray, names: list[str]) -> dict[str, float]:
    """miou, dice (means over the classes that occur in truth or prediction), pixel_accuracy, class_accuracy (mean
    recall over the classes that occur in truth), iou_<class>.

    confusion: (K, K) pixel counts, rows true classes, columns predicted.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    false_positive = confusion.sum(axis=0) - true_positive
    false_negative = confusion.sum(axis=1) - true_positive
    union = true_positive + false_positive + false_negative
    present = union > 0  # a class absent from both truth and prediction has no IoU (mmseg, torchmetrics agree)
    iou = np.divide(true_positive, union, out=np.full_like(union, np.nan), where=present)
    in_truth = confusion.sum(axis=1) > 0
    recall = np.divide(true_positive, confusion.sum(axis=1), out=np.zeros_like(union), where=in_truth)
    dice = np.divide(2 * true_positive, union + true_positive, out=np.full_like(union, np.nan), where=present)
    result = {
        "miou": float(np.nanmean(iou)) if present.any() else 0.0,
        "dice": float(np.nanmean(dice)) if present.any() else 0.0,
        "pixel_accuracy": float(true_positive.sum() / max(confusion.sum(), 1.0)),  # the SegNet paper's "global"
        "class_accuracy": float(np.mean(recall[in_truth])) if in_truth.any() else 0.0,  # mean per-class recall
    }
    for name, value in zip(names, iou, strict=True):
        result[f"iou_{metric_key(name)}"] = float(value) if np.isfinite(value) else float("nan")
    return result


def metric_key(name: str) -> str:
    """A class name as part of a metric key: `"traffic light"` -> `"traffic_light"`."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "class"
