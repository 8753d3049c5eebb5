"""Evaluate three tasks in the processes torchrun started (DDP over gloo) and write rank 0's metrics as JSON.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_metrics.py OUT.json

`cases()` is shared with tests/test_distributed.py, which computes the single-process values of the same cases.
Each case's data alternates two kinds of sample, so the two processes (which take every other sample) see
different halves: an average of per-process metrics would differ from the dataset-wide value.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import visionheads as vh
from visionheads.data.catalog import resolve_builtin


def _alternating(first: Any, second: Any) -> list[dict[str, Any]]:
    """Samples of `first` at even positions and of `second` at odd ones."""
    return [dict(pair[i % 2][i // 2]) for pair in [(first, second)] for i in range(2 * min(len(first), len(second)))]


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


def main(out: str) -> None:
    results = {}
    for name, task, data in cases():
        results[name] = task.evaluate(data, accelerator="cpu", devices=2, distributed="ddp", batch_size=8)
    if task.global_rank == 0:
        with open(out, "w") as file:
            json.dump(results, file)


if __name__ == "__main__":
    main(sys.argv[1])
