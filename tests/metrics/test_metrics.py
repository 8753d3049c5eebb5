"""The metrics layer on its own, on hand-made inputs whose scores are known: circular angle errors, segmentation
scores read off a confusion matrix, embedding verification and recall, and COCO AP against pycocotools itself."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionheads.metrics import RegressionErrors, angle_difference, confusion_metrics
from visionheads.metrics.coco import COCOEvaluation
from visionheads.metrics.similarity import EmbeddingMetrics


def test_circular_metric_is_right_at_the_wrap():
    assert float(angle_difference(torch.tensor(179.0), torch.tensor(-179.0))) == pytest.approx(-2.0)
    assert float(angle_difference(torch.tensor(-179.0), torch.tensor(179.0))) == pytest.approx(2.0)
    metrics = RegressionErrors(circular=True)
    metrics.update(torch.tensor([[179.0], [10.0]]), torch.tensor([[-179.0], [4.0]]))
    result = metrics.compute()
    assert float(result["mae"]) == pytest.approx(4.0)  # (2 + 6) / 2, not (358 + 6) / 2
    assert float(result["rmse"]) == pytest.approx(np.sqrt((4 + 36) / 2))
    assert float(result["within_5"]) == 0.5 and float(result["within_10"]) == 1.0


def test_metrics_read_off_the_confusion_matrix():
    # rows true, columns predicted: background 8 px right, 2 called "a"; "a" 3 right, 1 called background.
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    metrics = confusion_metrics(confusion, ["background", "a", "b c"])
    assert metrics["iou_background"] == pytest.approx(8 / 11)
    assert metrics["iou_a"] == pytest.approx(3 / 6)
    assert np.isnan(metrics["iou_b_c"])  # neither true nor predicted: no IoU, and not in the mean
    assert metrics["miou"] == pytest.approx((8 / 11 + 3 / 6) / 2)
    assert metrics["dice"] == pytest.approx((16 / 19 + 6 / 9) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(11 / 14)
    assert metrics["class_accuracy"] == pytest.approx((8 / 10 + 3 / 4) / 2)  # "b c" is in no row of the truth


def test_embeddings_of_separated_classes_score_perfectly_and_a_swap_shows():
    # Two classes on opposite poles of the unit circle, three images each.
    angles = np.array([0.0, 0.1, -0.25, np.pi, np.pi + 0.1, np.pi - 0.25])
    embeddings = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], axis=1), dtype=torch.float32)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    metrics = EmbeddingMetrics(threshold=0.0, shots=1)
    metrics.update(embeddings, labels)
    values = {key: float(value) for key, value in metrics.compute().items()}
    assert values["verification_auc"] == 1.0 and values["verification_accuracy"] == 1.0
    assert values["recall@1"] == 1.0 and values["prototype_accuracy"] == 1.0
    swapped = EmbeddingMetrics(shots=1)
    swapped.update(embeddings, torch.tensor([0, 0, 1, 1, 1, 0]))  # the outer image of each pole labelled as the other
    assert float(swapped.compute()["recall@1"]) == pytest.approx(4 / 6)


def test_coco_ap_of_boxes_equals_pycocotools_on_the_same_truth_and_detections():
    truth_boxes = [np.array([[10, 10, 50, 50], [60, 60, 90, 100]], float), np.array([[5, 5, 30, 40]], float)]
    found = [
        {"boxes": np.array([[12, 9, 52, 50], [0, 0, 20, 20]], float), "scores": np.array([0.9, 0.8]),
         "category_ids": np.array([1, 1])},
        {"boxes": np.array([[5, 6, 31, 40], [60, 60, 90, 100]], float), "scores": np.array([0.7, 0.95]),
         "category_ids": np.array([1, 2])},
    ]  # fmt: skip
    truths = [{"boxes": truth_boxes[0], "labels": np.array([1, 2]), "size": (120, 120)},
              {"boxes": truth_boxes[1], "labels": np.array([1]), "size": (120, 120)}]  # fmt: skip
    metric = COCOEvaluation(None, [1, 2], names=["a", "b"], backend="pycocotools")
    metric.update([1, 2], found, truths)
    computed = metric.compute()
    # The same scenes through pycocotools by hand
    rows = [(1, truth_boxes[0][0], 1), (1, truth_boxes[0][1], 2), (2, truth_boxes[1][0], 1)]
    annotations = [
        {"id": n, "image_id": image, "category_id": label, "iscrowd": 0, "bbox": [x0, y0, x1 - x0, y1 - y0],
         "area": (x1 - x0) * (y1 - y0)}
        for n, (image, (x0, y0, x1, y1), label) in enumerate(rows, start=1)
    ]  # fmt: skip
    coco = COCO()
    images = [{"id": 1, "height": 120, "width": 120}, {"id": 2, "height": 120, "width": 120}]
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        detections = coco.loadRes(computed["results"])
        evaluation = COCOeval(coco, detections, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    np.testing.assert_allclose(computed["bbox_stats"].numpy(), evaluation.stats, atol=1e-12)
    assert 0.3 < float(computed["bbox_stats"][0]) < 1.0  # neither trivially perfect nor empty
