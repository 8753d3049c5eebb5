"""How long the command line takes to answer: `visionheads --help`, `list tasks` and `list backbones` as fresh
processes, against `python -c "import torch, lightning"` as the cost they must not pay. Target: < 2 s each.

Each command runs `--repeats` times (after one untimed warm-up run, so the file cache is warm); the median counts.
This checkout's src/ goes first on PYTHONPATH, so the numbers are of this code, whatever the venv has installed.

    python bench/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 2.0
SRC = Path(__file__).resolve().parents[1] / "src"


def visionheads_command() -> list[str]:
    """The installed console script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "visionheads"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "visionheads.cli"]


def wall_times(command: list[str], repeats: int, env: dict[str, str]) -> list[float]:
    """Seconds of each of `repeats` runs of `command` (which must succeed)."""
    subprocess.run(command, env=env, check=True, capture_output=True)  # warm-up: file cache, bytecode
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    cli = visionheads_command()
    rows = [
        ("visionheads --help", [*cli, "--help"], True),
        ("visionheads list tasks", [*cli, "list", "tasks"], True),
        ("visionheads list backbones", [*cli, "list", "backbones"], True),
        ('python -c "import torch, lightning"', [sys.executable, "-c", "import torch, lightning"], False),
    ]
    print(f"median wall time of {args.repeats} runs each, target < {TARGET_SECONDS:.0f} s, {os.cpu_count()} cores")
    print(f"{'command':<38}{'median s':>9}  {'runs':<40}verdict")
    for label, command, judged in rows:
        times = wall_times(command, args.repeats, env)
        median = statistics.median(times)
        verdict = ("PASS" if median < TARGET_SECONDS else "FAIL") if judged else "reference"
        runs = "  ".join(f"{t:.2f}" for t in times)
        print(f"{label:<38}{median:>9.2f}  {runs:<40}{verdict}")


if __name__ == "__main__":
    main()
