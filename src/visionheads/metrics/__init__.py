"""Metrics torchmetrics lacks, written as torchmetrics `Metric`s so their states sync across processes."""

from visionheads.metrics.regression import RegressionErrors, angle_difference
from visionheads.metrics.segmentation import confusion_metrics

__all__ = ["RegressionErrors", "angle_difference", "confusion_metrics"]
