"""Three evaluation cases, evaluated in two processes by ddp_fit.py and in one by tests/runtime/test_distributed.py.

Each case's data alternates two kinds of sample, so the two processes (which take every other sample) see
different halves: an average of per-process metrics would differ from the dataset-wide value.
"""

from __future__ import annotations

from typing import Any

import visionheads as vh
from visionheads.data.catalog import resolve_builtin


def _alternating(first: Any, second: Any) -> list[dict[str, Any]]:
    """Samples of `first` at even positions and of `second` at odd ones, an odd number of them: two processes get
    shares of different lengths, which Lightning's DistributedSampler would even out by repeating a sample."""
    pairs = [dict(pair[i % 2][i // 2]) for pair in [(first, second)] for i in range(2 * min(len(first), len(second)))]
    return pairs[:-1]


def cases() -> list[tuple[str, vh.Task, list[dict[str, Any]]]]:
    """(name, task, data): classification (macro-F1), segmentation (mIoU), regression (angle RMSE)."""
    digits = resolve_builtin("digits:test", channels=1).dataset
    low = [digits[i] for i in range(len(digits)) if digits[i]["label"] < 5][:60]
    high = [digits[i] for i in range(len(digits)) if digits[i]["label"] >= 5][:60]
    shapes = resolve_builtin("shapes:test[:16]", channels=3).dataset
    angles = resolve_builtin("rotated-digits:test[:64]", channels=1).dataset
    narrow = resolve_builtin("rotated-digits:val:10[:32]", channels=1).dataset
    return [
        ("classification", vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16, num_classes=10),
         _alternating(low, high)),
        ("segmentation", vh.Task("segmentation", backbone="lenet5", image_size=32, num_classes=4),
         _alternating([shapes[i] for i in range(8)], [shapes[i] for i in range(8, 16)])),
        ("regression", vh.Task("regression", backbone="lenet5", in_chans=1, image_size=16),
         _alternating([angles[i] for i in range(32)], [narrow[i] for i in range(32)])),
    ]  # fmt: skip
