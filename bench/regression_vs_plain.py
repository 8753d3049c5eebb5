"""The `regression` task's MNIST recipe against a hand-written CNN, side by side on real handwriting.

The plain side is ../shared/baselines/rotated_mnist_plain_cnn.py, run as it stands (its own `main`, in this
process): a 6-conv CNN at 28 px with a 3x3 grid before an MLP head, 15 epochs. It runs twice: as written, and with
its `rotate` swapped for visionheads' rotation, for training and test alike. Our side is tasks/regression_mnist.yaml
with its training data pointed at the same MNIST split. Every model is scored on the same test digits and angles
(the plain script's seeded ones), rotated two ways: by visionheads' rotation (4x bicubic, area-averaged back) and
by the plain script's (4x bilinear, average-pooled back). A model that reads the shape scores the same on both; the
plain script's own rotation leaves the source pixel grid visible, rotated by exactly the angle, and a model trained
on it scores far better on it than on the other (docs/regression.md). The error is the circular difference in
degrees, as the plain script computes it; the wall time counts training and scoring.

    python bench/regression_vs_plain.py MNIST_ROOT [--train 'train[:5000]'] [--test 'test[:5000]'] [key=value ...]

(MNIST_ROOT holds the idx files: datasets/mnist/README.md says how to get them. key=value overrides go to the
recipe, e.g. epochs=30, to compare settings on the same footing.) Prints one row per model with its wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import torch
from torch import nn

import visionheads as vh
from visionheads.data.rotation import rotate_image
from visionheads.metrics import angle_difference
from visionheads.recipes import load_recipe, parse_overrides

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO.parent / "shared" / "baselines" / "rotated_mnist_plain_cnn.py"


def load_baseline(path: Path) -> ModuleType:
    """The plain script as a module, so that its own functions make the shared test set."""
    if not path.is_file():
        sys.exit(f"baseline script not found: {path}; pass --baseline PATH")
    spec = importlib.util.spec_from_file_location("rotated_mnist_plain_cnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Row:
    """One trained model: its RMSE/MAE/±10° on the test digits under each rotation, and its wall time."""

    name: str
    scores: dict[str, dict[str, float]]  # rotation name -> errors
    seconds: float


def run_plain(baseline: ModuleType, argv: list[str], rotate: Callable | None) -> tuple[nn.Module, float]:
    """The plain script's main() as it stands, its `rotate` swapped for `rotate` if given; the trained net and the
    wall time. The net is the last `nn.Sequential` main() builds (its blocks come first), caught to score it again."""
    built: list[nn.Module] = []

    class Recorded(nn.Sequential):
        def __init__(self, *layers: nn.Module) -> None:
            super().__init__(*layers)
            built.append(self)

    saved = baseline.nn, baseline.rotate, sys.argv
    baseline.nn = SimpleNamespace(**{name: getattr(nn, name) for name in dir(nn) if not name.startswith("_")})
    baseline.nn.Sequential = Recorded
    baseline.rotate = rotate or baseline.rotate
    sys.argv = ["rotated_mnist_plain_cnn.py", *argv]
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            baseline.main()
    finally:
        baseline.nn, baseline.rotate, sys.argv = saved
    return built[-1].eval(), time.perf_counter() - start


def visionheads_rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """visionheads' rotation with the plain script's signature: (N, 1, H, W) in [0, 1], through uint8 as our data is."""
    rotated = [rotate_image(image, float(angle)) for image, angle in zip(as_uint8(images), degrees, strict=True)]
    return torch.from_numpy(np.stack(rotated)).permute(0, 3, 1, 2).float() / 255


def shared_test_set(baseline: ModuleType, root: Path, test: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain script's test digits (N, 1, 28, 28) in [0, 1] and its angles, made exactly as its main() makes them."""
    digits = baseline.read_split(root, test)
    generator = torch.Generator().manual_seed(seed + 1)
    angles = torch.rand(len(digits), generator=generator) * 90 - 45
    return digits, angles


def errors(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and the share strictly within 10° (the plain script's test), on circular differences in degrees."""
    error = angle_difference(torch.as_tensor(np.asarray(predicted), dtype=torch.float64), torch.as_tensor(true))
    return {"rmse": error.square().mean().sqrt().item(), "mae": error.abs().mean().item(),
            "within_10": (error.abs() < 10).double().mean().item()}  # fmt: skip


def plain_angles(net: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The plain net's angles in degrees, computed as its script computes them."""
    with torch.no_grad():
        out = torch.cat([net(chunk) for chunk in images.split(500)])
    return torch.rad2deg(torch.atan2(out[:, 1], out[:, 0])).numpy()


def as_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 1, H, W) floats in [0, 1] to HxWx1 uint8 images, as MNIST files hold them."""
    return list((images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder with the MNIST idx files")
    parser.add_argument("--train", default="train[:5000]")
    parser.add_argument("--test", default="test[:5000]")
    parser.add_argument("--plain-epochs", type=int, default=15, help="the plain script's own default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", type=Path, default=REPO / "tasks" / "regression_mnist.yaml")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--skip-plain", action="store_true", help="only our side (to compare settings quickly)")
    args, extra = parser.parse_known_args()
    root = args.root.expanduser()
    baseline = load_baseline(args.baseline)
    digits, angles = shared_test_set(baseline, root, args.test, args.seed)
    tests = {"plain": baseline.rotate(digits, angles), "ours": visionheads_rotate(digits, angles)}
    true = angles.numpy()
    rows = []

    if not args.skip_plain:
        argv = [str(root), "--train", args.train, "--test", args.test, "--epochs", str(args.plain_epochs),
                "--seed", str(args.seed)]  # fmt: skip
        for name, rotate in ((f"plain CNN as written, {args.plain_epochs} epochs", None),
                             (f"plain CNN, our rotation, {args.plain_epochs} epochs", visionheads_rotate)):  # fmt: skip
            net, seconds = run_plain(baseline, argv, rotate)
            scores = {key: errors(plain_angles(net, images), true) for key, images in tests.items()}
            rows.append(Row(name, scores, seconds))

    overrides = {"train": f"mnist:{root}:{args.train}", "val": False, "test": None, "seed": args.seed,
                 **parse_overrides(extra)}  # fmt: skip
    recipe = load_recipe(args.recipe, overrides)
    task_args, settings = dict(recipe["task"]), dict(recipe["fit"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        task = vh.Task(task_args.pop("name"), **task_args)
        task.fit(recipe["data"]["train"], val=False, **{**settings, "project": folder, "plots": False})
        scores = {key: errors(np.asarray(task.predict(as_uint8(images), batch_size=500)), true)
                  for key, images in tests.items()}  # fmt: skip
    rows.append(Row(f"{args.recipe.name}, {settings['epochs']} epochs", scores, time.perf_counter() - start))

    print(f"\nMNIST {args.train} -> {args.test}, ±45°, the plain script's test digits and angles (seed {args.seed})")
    print(f"{'':42} {'RMSE':>7} {'MAE':>7} {'±10°':>6} | {'RMSE':>7} {'MAE':>7} {'±10°':>6} | {'wall':>6}")
    print(f"{'test rotated by:':42} {'visionheads (4x bicubic)':^22} | {'plain script (4x bilinear)':^22} |")
    for row in rows:
        cells = " | ".join(f"{s['rmse']:6.2f}° {s['mae']:6.2f}° {s['within_10']:6.1%}"
                           for s in (row.scores["ours"], row.scores["plain"]))  # fmt: skip
        print(f"{row.name:42} {cells} | {row.seconds:5.0f}s")
    if len(rows) == 3:
        ours, same = rows[2], rows[1]
        ratio = ours.scores["ours"]["rmse"] / same.scores["ours"]["rmse"]
        print(f"ours / plain CNN on the same rotation: RMSE {ratio:.2f}x, wall time {ours.seconds / same.seconds:.2f}x")


if __name__ == "__main__":
    main()
