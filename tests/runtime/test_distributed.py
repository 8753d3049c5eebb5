"""Several processes for real (Lightning DDP over gloo, on the CPU): metrics of two processes are dataset-wide and
count each sample once, and a two-process fit writes its run folder once, resumes, and learns as one process does.

Both run in one script, ddp_fit.py, started once for the module: each start of a process costs ~10 s of imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import visionheads as vh

pytestmark = pytest.mark.distributed
SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "ddp_fit.py"
KEYS = {"classification": "macro_f1", "segmentation": "miou", "regression": "rmse"}


def _script_module(name: str) -> Any:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, dict[str, Any], str]:
    """The folder the script ran in, what its first process recorded, and the script's stderr."""
    folder = tmp_path_factory.mktemp("ddp")
    out = folder / "record.json"
    command = [sys.executable, str(SCRIPT), str(folder / "runs"), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, json.loads(out.read_text()), result.stderr


def test_metrics_of_two_processes_equal_the_single_process_values(two_processes):
    distributed = two_processes[1]["metrics"]
    for name, task, data in _script_module("ddp_metrics").cases():
        assert len(data) % 2 == 1  # shares of unequal length: a repeated or lost sample would show below
        single = task.evaluate(data, batch_size=8)
        assert distributed[name].keys() == single.keys()
        for key, value in single.items():
            if key.startswith("loss"):
                continue  # losses are means of batch losses, and Dice depends on which samples share a batch
            assert distributed[name][key] == pytest.approx(value, abs=1e-6, nan_ok=True), (name, key)
        # The check can fail: each process alone sees one kind of sample, and their average is not the whole.
        halves = [task.evaluate(data[start::2], batch_size=8)[KEYS[name]] for start in (0, 1)]
        assert abs(sum(halves) / 2 - single[KEYS[name]]) > 1e-3, (name, halves, single[KEYS[name]])


def test_a_two_process_fit_writes_one_run_folder_resumes_and_learns_as_one_process(two_processes):
    folder, record, stderr = two_processes
    assert record["world_size"] == 2 and record["cut_epochs"] == [1, 2]
    assert [row["epoch"] for row in record["rows"]] == [1, 2, 3, 4]  # resumed at epoch 3, in two processes
    # One folder, written once: no second folder from the other process, one metrics.csv line per epoch.
    run = folder / record["run_dir"]
    assert [p.name for p in (folder / "runs" / "classification").iterdir()] == ["ddp"]
    assert {"config.yaml", "last.ckpt", "last.pt", "best.pt", "curves.png"} <= {p.name for p in run.iterdir()}
    lines = (run / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4"]
    assert stderr.count("results saved to") == 2  # one per fit, from the first process only

    ddp_fit = _script_module("ddp_fit")
    two = vh.Task.load(run / "best.pt").evaluate("digits:test")["accuracy"]
    one = vh.Task("classification", **ddp_fit.TASK)
    one.fit(**ddp_fit.FIT, batch_size=32, project=folder / "single", plots=False)
    single = one.evaluate("digits:test")["accuracy"]
    assert single > 0.3 and two >= single - 0.05, (two, single)  # 10 classes: chance is 0.1
