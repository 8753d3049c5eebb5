"""Metrics are dataset-wide on several processes: evaluate in two processes (Lightning DDP over gloo, started by
torchrun) equals the single-process values on the same data, on data whose two halves differ on purpose."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed
SCRIPT = Path(__file__).with_name("ddp_metrics.py")
KEYS = {"classification": "macro_f1", "segmentation": "miou", "regression": "rmse"}


def _load_cases():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import ddp_metrics
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return ddp_metrics.cases()


def test_metrics_of_two_processes_equal_the_single_process_values(tmp_path):
    out = tmp_path / "ddp.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(SCRIPT),
               str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = json.loads(out.read_text())
    for name, task, data in _load_cases():
        single = task.evaluate(data, batch_size=8)
        assert distributed[name].keys() == single.keys()
        for key, value in single.items():
            if key.startswith("loss"):
                continue  # losses are means of batch losses, and Dice depends on which samples share a batch
            assert distributed[name][key] == pytest.approx(value, abs=1e-6, nan_ok=True), (name, key)
        # The check can fail: each process alone sees one kind of sample, and their average is not the whole.
        halves = [task.evaluate(data[start::2], batch_size=8)[KEYS[name]] for start in (0, 1)]
        assert abs(sum(halves) / 2 - single[KEYS[name]]) > 1e-3, (name, halves, single[KEYS[name]])
