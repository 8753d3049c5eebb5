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


def test_adversarial_runs_and_prints_accuracy_per_eps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    argv = ["adversarial.py", "--recipes", "digits", "--test-limit", "16", "--eps", "0,0.1"]
    monkeypatch.setattr(sys, "argv", [*argv, "epochs=1", "image_size=16", "train=digits[:128]", "val=false"])
    runpy.run_path(str(BENCH / "adversarial.py"), run_name="__main__")
    printed = capsys.readouterr().out
    rows = re.findall(r"^\s+(0|0\.1)\s+([0-9.]+)\s+([0-9.]+)$", printed, flags=re.MULTILINE)
    assert [row[0] for row in rows] == ["0", "0.1"], printed
    assert rows[0][1] == rows[0][2]  # ε = 0: both attacks leave the clean accuracy


def test_devices_trains_every_recipe_a_few_steps_and_prints_its_row(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["devices.py", "--tiny", "--steps", "3"])
    runpy.run_path(str(BENCH / "devices.py"), run_name="__main__")
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "recipe" not in line]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == [
        "classification_digits", "regression_rotated_digits", "segmentation_shapes", "detection_shapes",
        "autoencoder_digits", "siamese_digits"]  # fmt: skip
    for row in rows:
        parity = row.rstrip(" |").split(" | ")[-1]
        values = [float(value) for value in re.findall(r" ([0-9.]+e[+-]\d+)", " " + parity)]
        assert values and max(values) <= 1e-3, row  # the exported model equals eager on this device


def test_folder_check_times_the_check_and_a_full_read(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.setattr(sys, "argv", ["folder_check.py", "--files", "12", "--size", "64", "48"])
    runpy.run_path(str(BENCH / "folder_check.py"), run_name="__main__")
    printed = capsys.readouterr().out
    rows = re.findall(r"^\| (the check|baseline)[^|]*(?:\| [0-9.]+ ){3}\|$", printed, flags=re.MULTILINE)
    assert rows == ["the check", "baseline"], printed
    assert re.search(r"the check costs [0-9.]+x one full read", printed)
