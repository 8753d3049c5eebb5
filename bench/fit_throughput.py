"""Task.fit against a plain hand-written PyTorch loop: same model, data, batch size and optimiser.

Both sides read batches from the same DataLoader (our dataset + albumentations pipeline), so the ratio
measures what the training engine (Lightning, callbacks, logging, checkpoints) costs. Each repeat runs both
sides one after the other in one process (in turns that swap), and the reported ratio is the median of the
repeats' ratios: pairing cancels the slow drifts of a shared machine, which move a single run by 20 % or more.
Target: Task.fit >= 0.95x the plain loop.

    python bench/fit_throughput.py [--repeats 5] [--epochs 3] [--image-size 24] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.nn import functional as F

import visionheads as vh


def build_task(args: argparse.Namespace) -> vh.Task:
    return vh.Task(
        "classification", backbone=args.backbone, in_chans=1, image_size=args.image_size, num_classes=10, seed=0
    )


def plain_loop(args: argparse.Namespace) -> float:
    """images/s of a textbook loop: zero_grad, forward, loss, backward, step, schedule step."""
    model = build_task(args)
    loader = model.data_loader("digits", train=True, batch_size=args.batch_size, num_workers=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=args.epochs * len(loader))
    model.train()
    start, seen = time.perf_counter(), 0
    for _ in range(args.epochs):
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            images = (batch["image"].float() / 255 - 0.5) / 0.5  # the loader gives uint8; simple_cnn's mean and std
            loss = F.cross_entropy(model(images), batch["label"])
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(batch["label"])
    return seen / (time.perf_counter() - start)


def task_fit(args: argparse.Namespace) -> float:
    """images/s of Task.fit on the same data, no validation, no plots (checkpoints and CSV log included)."""
    task = build_task(args)
    with tempfile.TemporaryDirectory() as project:
        start = time.perf_counter()
        task.fit("digits", val=False, epochs=args.epochs, batch_size=args.batch_size, lr=3e-3, plots=False,
                 project=project, progress=False)  # fmt: skip
        elapsed = time.perf_counter() - start
    steps = args.epochs * (1077 // args.batch_size)  # drop_last: full batches only
    return steps * args.batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default="simple_cnn")
    args = parser.parse_args()
    plain_loop(args)  # warm-up: first-call costs (allocator, kernels) are paid by neither side
    results: dict[str, list[float]] = {"plain loop": [], "Task.fit": []}
    for repeat in range(args.repeats):
        # Each repeat runs both, in turns that swap: the machine's slow drifts hit both sides of a pair alike.
        order = [("plain loop", plain_loop), ("Task.fit", task_fit)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            results[name].append(run(args))
    ratios = [fit / plain for fit, plain in zip(results["Task.fit"], results["plain loop"], strict=True)]
    print(f"\n{args.backbone}, digits train (1,077 images) at {args.image_size}px, batch {args.batch_size}, "
          f"{args.epochs} epochs, {args.repeats} paired runs, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'':12}{'median img/s':>14}  runs")
    for name, values in results.items():
        print(f"{name:12}{statistics.median(values):>14.0f}  {'  '.join(f'{v:.0f}' for v in values)}")
    print(f"{'ratio':12}{statistics.median(ratios):>14.3f}  {'  '.join(f'{r:.3f}' for r in ratios)}")
    print(
        f"ratio Task.fit / plain loop: {statistics.median(ratios):.3f}  (median of the paired runs' ratios; "
        "target >= 0.95)"
    )


if __name__ == "__main__":
    main()
