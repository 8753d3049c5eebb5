"""Penn-Fudan pedestrians, side by side: the plain baseline (../shared/baselines/pennfudan_plain_torchvision.py:
torchvision's Faster R-CNN + FPN over the ImageNet EfficientNet-Lite0 body, the fine-tuning tutorial's SGD loop)
and the recipe tasks/detection_pennfudan.yaml, on the same split (train.json -> test.json), epochs and image size,
one after the other; each whole command timed, scored by pycocotools on test.json.

    python bench/pennfudan_vs_plain.py [--data ../shared/data/pennfudan] [--epochs 3] [--min-size 256]
                                       [--max-size 416] [--weights LITE0.safetensors] [key=value ...]

Extra key=value pairs go to the recipe (e.g. head=mask_rcnn).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE = ROOT.parent / "shared" / "baselines" / "pennfudan_plain_torchvision.py"
LITE0 = Path("~/.cache/visionheads/weights/tf_efficientnet_lite0.safetensors").expanduser()


def timed(command: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "pennfudan")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-size", type=int, default=256)
    parser.add_argument("--max-size", type=int, default=416)
    parser.add_argument("--weights", type=Path, default=LITE0)
    parser.add_argument("overrides", nargs="*", help="key=value for the recipe")
    args = parser.parse_args()
    data = args.data.resolve()
    rows = []
    output, seconds = timed([sys.executable, str(BASELINE), str(data), "--weights", str(args.weights),
                             "--epochs", str(args.epochs), "--min-size", str(args.min_size),
                             "--max-size", str(args.max_size)])  # fmt: skip
    scores = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    rows.append(("plain torchvision loop (tutorial SGD)", scores["AP"], scores["AP50"], scores["AP75"], seconds))
    print(f"baseline done in {seconds:.0f} s", file=sys.stderr, flush=True)
    recipe = [f"train={{coco: {data}/train.json, images: {data}/images}}",
              f"test={{coco: {data}/test.json, images: {data}/images}}", f"weights={args.weights}",
              f"epochs={args.epochs}", f"min_size={args.min_size}", f"max_size={args.max_size}",
              "progress=false", "plots=false", "project=runs/bench", *args.overrides]  # fmt: skip
    output, seconds = timed([sys.executable, "-m", "visionheads.cli", "fit", "tasks/detection_pennfudan.yaml",
                             *recipe])  # fmt: skip
    found = dict(re.findall(r"^(AP|AP50|AP75|segm_AP)\s+([0-9.]+)$", output, flags=re.MULTILINE))
    name = "visionheads recipe" + (f" ({' '.join(args.overrides)})" if args.overrides else "")
    rows.append((name, float(found["AP"]), float(found["AP50"]), float(found["AP75"]), seconds))
    print(f"\nPenn-Fudan test.json (50 images), {args.epochs} epochs, short side {args.min_size} (long <= "
          f"{args.max_size}), the same Lite0 ImageNet body\n")  # fmt: skip
    print("| | box AP | AP50 | AP75 | wall time |")
    print("|---|---:|---:|---:|---:|")
    for what, ap, ap50, ap75, wall in rows:
        print(f"| {what} | {ap:.3f} | {ap50:.3f} | {ap75:.3f} | {wall:.0f} s |")
    if "segm_AP" in found:
        print(f"\nsegm AP of the recipe: {float(found['segm_AP']):.3f}")


if __name__ == "__main__":
    main()
