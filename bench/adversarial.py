"""How much FGSM and PGD cost a trained classifier: test accuracy against ε, on digits and on flowers12.

Each recipe trains as `visionheads fit` would (tasks/classification_digits.yaml: simple_cnn from scratch at 24 px;
tasks/classification_flowers12.yaml: EfficientNet-Lite0 ImageNet weights, frozen body, head on cached features),
then one evaluation of its test data scores the clean images and their adversarial versions at each ε (an L∞ bound
on pixels in [0, 1], before normalisation) under FGSM and PGD (10 steps of 2.5 ε / 10 from a seeded random start),
through the whole model: body and head.

    python bench/adversarial.py [--recipes digits,flowers12] [--eps 0,0.01,0.02,0.05,0.1] [--flowers ROOT]
                                [--test-limit N] [--batch-size 16] [--progress] [--figures DIR] [key=value ...]

ROOT holds flowers12's train/ and test/ folders (default: the recipe's ../shared/data/flowers12_224, read from the
current folder); the weights file the recipe names must exist (datasets/flowers12/README.md). key=value overrides
go to every recipe (e.g. epochs=3). --figures writes each recipe's robustness.png and adversarial_examples.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning
import numpy as np
import torch

import visionheads as vh
from visionheads.recipes import load_recipe, parse_overrides
from visionheads.runtime.attacks import DEFAULT_EPS, attack_key

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"digits": "classification_digits.yaml", "flowers12": "classification_flowers12.yaml"}
ATTACKS = ("fgsm", "pgd")


def run(name: str, args: argparse.Namespace, overrides: dict, project: Path) -> str:
    """Train one recipe, evaluate it under both attacks; its table as text."""
    path = REPO / "tasks" / RECIPES[name]
    recipe = load_recipe(path, overrides)
    if name == "flowers12" and args.flowers is not None:
        recipe["data"] |= {"train": str(args.flowers / "train"), "test": str(args.flowers / "test")}
    task_args = dict(recipe["task"])
    task = vh.Task(task_args.pop("name"), **task_args)
    start = time.perf_counter()
    task.fit(recipe["data"]["train"], recipe["data"].get("val"), **recipe["fit"], project=project, plots=False,
             progress=False)  # fmt: skip
    fitted = time.perf_counter() - start
    test = recipe["data"]["test"]
    if args.test_limit:  # spread over the whole test set: folders list their images class by class
        test = task.source(test).dataset
        chosen = np.unique(np.linspace(0, len(test) - 1, min(args.test_limit, len(test))).round().astype(int))
        test = torch.utils.data.Subset(test, chosen.tolist())
    start = time.perf_counter()
    evaluation = task.evaluation(test, attack=ATTACKS, eps=args.eps, batch_size=args.batch_size, progress=args.progress)
    attacked = time.perf_counter() - start
    if args.figures is not None:
        task.plot(args.figures / name, data=evaluation)
    metrics = evaluation.metrics
    config = task.config
    lines = [
        f"{name}: {path.relative_to(REPO)} ({config.backbone}, {config.image_size} px), "
        f"{len(evaluation.source.dataset)} test images; fit {fitted:.0f} s, evaluation with attacks {attacked:.0f} s",
        f"{'ε':>6}  " + "  ".join(f"{attack:>6}" for attack in ATTACKS) + "   (test accuracy)",
    ]
    for eps in sorted(args.eps):
        lines.append(f"{eps:>6g}  " + "  ".join(f"{metrics[attack_key('accuracy', a, eps)]:>6.3f}" for a in ATTACKS))
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    names = text.split(",")
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown recipe(s) {unknown}; use {sorted(RECIPES)}")
    return names


def _numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", type=_names, default=list(RECIPES), help="comma-separated: digits,flowers12")
    parser.add_argument("--flowers", type=Path, default=None, help="flowers12 root with train/ and test/")
    parser.add_argument("--eps", type=_numbers, default=list(DEFAULT_EPS), help="comma-separated, e.g. 0,0.05,0.1")
    parser.add_argument("--test-limit", type=int, default=0, help="attack N test images, spread evenly (0: all)")
    parser.add_argument("--batch-size", type=int, default=16, help="of the attacked evaluation (memory: backward)")
    parser.add_argument("--progress", action="store_true", help="a progress bar for the evaluation")
    parser.add_argument("--figures", type=Path, default=None, help="write each recipe's figures under DIR/<recipe>")
    parser.add_argument("overrides", nargs="*", help="key=value for every recipe, e.g. epochs=3")
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    print(f"torch {torch.__version__}, lightning {lightning.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as project:
        for name in args.recipes:
            print(run(name, args, overrides, Path(project)), flush=True)


if __name__ == "__main__":
    main()
