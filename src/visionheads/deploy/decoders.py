"""The named outputs of an exported graph, decoded per task into what `Task.predict` gives: plain Python and NumPy
at each image's own size. One function per task; each reads what it needs from the file's metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from visionheads.deploy.metadata import ExportMetadata
from visionheads.deploy.resize import resize_bilinear

BACKGROUND = "background"  # the name of detection's class 0 when the task has no class names
MASK_THRESHOLD = 0.5  # as the detection task: a pixel is the instance's where its probability reaches this

Decoder = Callable[[dict[str, np.ndarray], list[tuple[int, int]], ExportMetadata], list[Any]]


def classification(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], meta: ExportMetadata) -> list[Any]:
    """probs (B, K) -> {"label", "index", "score", "probs"} per image."""
    names = meta.class_names or [str(i) for i in range(outputs["probs"].shape[1])]
    return [
        {"label": names[int(p.argmax())], "index": int(p.argmax()), "score": float(p.max()), "probs": p}
        for p in outputs["probs"]
    ]


def regression(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], meta: ExportMetadata) -> list[Any]:
    """values (B, D) (degrees for angles) -> a float per image, or a (D,) array."""
    return [float(v[0]) if len(v) == 1 else v for v in outputs["values"]]


def segmentation(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], meta: ExportMetadata) -> list[Any]:
    """scores (B, K, h, w) -> per image its (H, W) int64 class mask, the scores resized to its size first."""
    return [resize_bilinear(scores, size).argmax(axis=0).astype(np.int64) for scores, size in zip(
        outputs["scores"], sizes, strict=True)]  # fmt: skip


def autoencoder(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], meta: ExportMetadata) -> list[Any]:
    """pixels (B, C, h, w) in [0, 1] -> HxWxC uint8 reconstructions at each image's size; codes (B, L) -> codes."""
    if "codes" in outputs:
        return list(outputs["codes"])
    images = []
    for pixels, size in zip(outputs["pixels"], sizes, strict=True):
        resized = np.clip(resize_bilinear(pixels, size), 0, 1)
        images.append(np.round(resized * 255).astype(np.uint8).transpose(1, 2, 0))
    return images


def siamese(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], meta: ExportMetadata) -> list[Any]:
    """embeddings (B, D) -> one unit embedding (D,) per image."""
    return list(outputs["embeddings"])


def detection(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], meta: ExportMetadata) -> list[Any]:
    """One image's boxes (N, 4) xyxy in its pixels, labels (N,), scores (N,)[, masks (N, 1, H, W) probabilities]."""
    names = meta.class_names or [BACKGROUND, *(str(i) for i in range(1, meta.config["num_classes"]))]
    categories = np.zeros(len(names), dtype=np.int64)
    categories[1:] = meta.config.get("category_ids") or range(1, len(names))
    labels = outputs["labels"].astype(np.int64)
    result = {"boxes": outputs["boxes"].astype(np.float32), "labels": [names[i] for i in labels],
              "label_ids": labels, "scores": outputs["scores"].astype(np.float32),
              "category_ids": categories[labels]}  # fmt: skip
    if "masks" in outputs:
        result["masks"] = outputs["masks"][:, 0] >= MASK_THRESHOLD
    return [result]


DECODERS: dict[str, Decoder] = {
    "classification": classification,
    "regression": regression,
    "segmentation": segmentation,
    "autoencoder": autoencoder,
    "siamese": siamese,
    "detection": detection,
}
