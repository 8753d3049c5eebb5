"""CamVid street scenes, side by side: the plain baseline (../shared/baselines/camvid_plain_smp.py: smp's U-Net over
the ImageNet EfficientNet-Lite0 body, plain cross-entropy, 160x224 crops, a hand-written loop) and the recipe
tasks/segmentation_camvid.yaml, on the same split (train -> val at 180x240, void ignored) and epochs, one after the
other; each whole command timed (reading the data, training, scoring).

    python bench/camvid_vs_plain.py [--data ../shared/data/camvid_180] [--epochs N] [--weights LITE0.safetensors]
                                    [--tta] [--median-frequency] [key=value ...]

--epochs defaults to the recipe's. Extra key=value pairs go to the recipe. The recipe keeps its best validated epoch,
as fit does; the row also shows its last epoch's val mIoU, which involves no selection. --tta adds a row: the
recipe's kept model evaluated on val with test-time augmentation (`visionheads evaluate --tta`), timed against the
same evaluation without it. --median-frequency adds a row: the recipe again with class_weights=median_frequency
(the recipe has none), the same epochs (what median-frequency balancing does).
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE = ROOT.parent / "shared" / "baselines" / "camvid_plain_smp.py"
RECIPE = ROOT / "tasks" / "segmentation_camvid.yaml"
LITE0 = Path("~/.cache/visionheads/weights/tf_efficientnet_lite0.safetensors").expanduser()


def timed(command: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout, time.perf_counter() - start


def scores(output: str) -> tuple[float, float, float]:
    """mIoU, class-average accuracy and global accuracy from the metrics visionheads prints."""
    found = dict(re.findall(r"^(miou|class_accuracy|pixel_accuracy)\s+([0-9.]+)$", output, flags=re.MULTILINE))
    return float(found["miou"]), float(found["class_accuracy"]), float(found["pixel_accuracy"])


def recipe_row(name: str, data: Path, epochs: int, weights: Path, overrides: list[str]) -> tuple[tuple, Path]:
    """The recipe fitted on train, scored on val (its kept epoch): the table row and the run folder."""
    run_name = f"camvid-{time.strftime('%Y%m%d-%H%M%S')}"
    recipe = [f"train={data}/train", f"val={data}/val", f"test={data}/val", f"weights={weights}", f"epochs={epochs}",
              "progress=false", "plots=false", "project=runs/bench", f"name={run_name}", *overrides]  # fmt: skip
    output, seconds = timed([sys.executable, "-m", "visionheads.cli", "fit", str(RECIPE), *recipe])
    run_dir = ROOT / "runs" / "bench" / "segmentation" / run_name
    with (run_dir / "metrics.csv").open() as file:
        last = [row for row in csv.DictReader(file) if row.get("val_miou")][-1]
    print(f"{name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    return (name, *scores(output), float(last["val_miou"]), seconds), run_dir


def tta_rows(run_dir: Path, data: Path) -> list[tuple]:
    """The kept model evaluated on val without and with test-time augmentation, each command timed."""
    rows = []
    for flags, name in (([], "its kept model, evaluated"), (["--tta"], "its kept model, evaluated with TTA")):
        command = [sys.executable, "-m", "visionheads.cli", "evaluate", str(run_dir / "best.pt"), f"{data}/val", *flags]
        output, seconds = timed(command)
        rows.append((name, *scores(output), None, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "camvid_180")
    parser.add_argument("--epochs", type=int, default=yaml.safe_load(RECIPE.read_text())["fit"]["epochs"])
    parser.add_argument("--weights", type=Path, default=LITE0)
    parser.add_argument("--tta", action="store_true", help="also evaluate the recipe's model with TTA, timed")
    parser.add_argument("--median-frequency", action="store_true", help="also the recipe with median-frequency weights")
    parser.add_argument("overrides", nargs="*", help="key=value for the recipe")
    args = parser.parse_args()
    data = args.data.resolve()
    rows = []
    name = "visionheads recipe" + (f" ({' '.join(args.overrides)})" if args.overrides else "")
    row, run_dir = recipe_row(name, data, args.epochs, args.weights, args.overrides)
    rows.append(row)
    if args.tta:
        rows += tta_rows(run_dir, data)
    if args.median_frequency:
        rows.append(recipe_row(f"{name}, class_weights=median_frequency", data, args.epochs, args.weights,
                               [*args.overrides, "class_weights=median_frequency"])[0])  # fmt: skip
    output, seconds = timed([sys.executable, str(BASELINE), str(data), "--weights", str(args.weights),
                             "--epochs", str(args.epochs)])  # fmt: skip
    found = re.search(r"mIoU ([0-9.]+) class-avg acc ([0-9.]+) global acc ([0-9.]+)", output)
    if found is None:
        raise SystemExit(f"no scores in the baseline's output:\n{output[-2000:]}")
    rows.insert(0, ("plain smp loop (CE)", *map(float, found.groups()), None, seconds))
    print(f"\nCamVid val (101 images at 180x240, void ignored), {args.epochs} epochs, the same Lite0 ImageNet body\n")
    print("| | val mIoU | class-avg acc | global acc | last epoch's mIoU | wall time |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, miou, class_avg, global_acc, last_miou, wall in rows:
        last_text = "" if last_miou is None else f"{last_miou:.3f}"
        print(f"| {what} | {miou:.3f} | {class_avg:.3f} | {global_acc:.3f} | {last_text} | {wall:.0f} s |")


if __name__ == "__main__":
    main()
