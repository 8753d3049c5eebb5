"""The benchmarks are not tests, but they must keep running as the code under them changes."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_fit_throughput_runs_and_prints_a_ratio(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    argv = ["fit_throughput.py", "--repeats", "1", "--epochs", "1", "--image-size", "16"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(BENCH / "fit_throughput.py"), run_name="__main__")
    printed = capsys.readouterr().out
    ratio = re.search(r"ratio Task\.fit / plain loop: ([0-9.]+)", printed)
    assert ratio is not None, printed
    assert float(ratio.group(1)) > 0
