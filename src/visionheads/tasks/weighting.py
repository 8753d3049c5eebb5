"""`class_weights=` of the classification and segmentation tasks: None, a weight per class, or "median_frequency"
(computed once from the training labels when a fit starts, then kept as numbers in the config and checkpoint)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from visionheads.data.balance import median_frequency_weights
from visionheads.errors import ConfigError

MEDIAN_FREQUENCY = "median_frequency"
ClassWeights = str | tuple[float, ...] | None


def checked_class_weights(value: Any) -> ClassWeights:
    """The `class_weights` argument as the config keeps it, or a ConfigError saying what it takes."""
    if value is None or value == MEDIAN_FREQUENCY:
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        try:
            weights = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            weights = ()
        if weights and all(np.isfinite(w) and w >= 0 for w in weights) and any(weights):
            return weights
    raise ConfigError(
        f"class_weights={value!r}; use None, {MEDIAN_FREQUENCY!r} (from the training labels) or one weight >= 0 per "
        "class, e.g. [1, 4, 2]"
    )


def fit_class_weights(
    weights: ClassWeights, num_classes: int, counts: Callable[[], tuple[np.ndarray, np.ndarray]], where: str
) -> tuple[float, ...] | None:
    """Weights (K,) for a fit on the data `where` names: "median_frequency" resolved from `counts()` (per class
    occurrences and exposure), a given list checked against the K classes."""
    if weights == MEDIAN_FREQUENCY:
        resolved = tuple(round(float(w), 6) for w in median_frequency_weights(*counts()))
        print(f"class_weights (median frequency of {where}): {list(resolved)}", file=sys.stderr)
        return resolved
    if weights is not None and len(weights) != num_classes:
        raise ConfigError(f"{len(weights)} class_weights for {num_classes} classes; give one weight per class")
    return weights  # type: ignore[return-value]


def class_weight_tensor(weights: ClassWeights, like: torch.Tensor) -> torch.Tensor | None:
    """The loss's `weight=` (K,) on `like`'s device; None before a fit has resolved "median_frequency"."""
    if weights is None or isinstance(weights, str):
        return None
    return torch.tensor(weights, dtype=like.dtype, device=like.device)
