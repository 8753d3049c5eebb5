"""Every task's recipe, trained for a fixed number of steps on the best device with its default precision, then
exported to ONNX and compared with eager PyTorch on that device: the one command that checks "every task trains on
the GPU" on a machine that has one. On the CPU, `--tiny` runs it in seconds (a test does).

    python bench/devices.py [--steps 40] [--tiny] [--recipes classification_digits,detection_shapes,...]

Prints one row per recipe: device and precision, training images/s, peak memory (CUDA: the allocator's peak for
the recipe; CPU: the process's peak resident memory so far), the mean training loss of the first and last fifth of
the steps and whether it fell, and the exported ONNX model's largest difference from eager PyTorch (per output,
batches of 1 and 3, two image sizes where the model allows; onnxruntime's CUDA provider where it has one).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

import visionheads as vh
from visionheads.engine import resolve_accelerator, resolve_precision
from visionheads.recipes import load_recipe
from visionheads.runtime.export import export_parity

RECIPES = Path(__file__).resolve().parents[1] / "tasks"
DEFAULT = ("classification_digits", "regression_rotated_digits", "segmentation_shapes", "detection_shapes",
           "autoencoder_digits", "siamese_digits")  # fmt: skip
# What --tiny changes in a recipe: small images and bodies' widths, a slice of the data
TINY = {"image_size": 32, "min_size": 64, "max_size": 64, "fpn_channels": 16, "representation_size": 32,
        "proposals_train": 32, "proposals_test": 32, "rois_per_image": 16}  # fmt: skip


class StepLosses(L.Callback):
    """The training loss of every step, and the wall time of the steps."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.images = 0
        self.started: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: dict, index: int) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, index) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        self.images += len(batch["image"]) if "image" in batch else len(next(iter(batch.values())))


def peak_memory_mb(device: str) -> float:
    if device == "gpu":
        return torch.cuda.max_memory_allocated() / 2**20
    status = Path("/proc/self/status")
    found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text()) if status.exists() else None
    return int(found.group(1)) / 1024 if found else float("nan")


def run(recipe: str, steps: int, tiny: bool, folder: Path) -> str:
    loaded = load_recipe(RECIPES / f"{recipe}.yaml")
    task_arguments = dict(loaded["task"])
    if tiny:
        task_arguments |= {key: value for key, value in TINY.items() if key in task_arguments or key == "image_size"}
    train = loaded["data"]["train"]
    if tiny:
        train = f"{train}[:64]"
    task = vh.Task(task_arguments.pop("name"), **task_arguments)
    accelerator = resolve_accelerator()
    precision = resolve_precision("auto", accelerator)
    if accelerator == "gpu":
        torch.cuda.reset_peak_memory_stats()
    record = StepLosses()
    batch_size = min(int(loaded["fit"].get("batch_size", 32)), 8 if tiny else 10_000)
    task.fit(train, False, epochs=10_000, max_steps=steps, batch_size=batch_size, lr=loaded["fit"].get("lr", 1e-3),
             plots=False, progress=False, callbacks=[record], project=folder)  # fmt: skip
    seconds = time.perf_counter() - (record.started or time.perf_counter())
    fifth = max(1, len(record.losses) // 5)
    first, last = sum(record.losses[:fifth]) / fifth, sum(record.losses[-fifth:]) / fifth
    path = task.export(folder / f"{recipe}.onnx")
    device = "cuda" if accelerator == "gpu" else "cpu"
    worst = export_parity(task, path, device=device)
    parity = ", ".join(f"{name} {value:.1e}" for name, value in worst.items())
    return (f"| {recipe} | {accelerator} {precision} | {record.images / max(seconds, 1e-9):.1f} | "
            f"{peak_memory_mb(accelerator):.0f} | {first:.4f} -> {last:.4f} {'yes' if last < first else 'NO'} | "
            f"{parity} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--tiny", action="store_true", help="small images, models and data: seconds on a CPU")
    parser.add_argument("--recipes", default=",".join(DEFAULT))
    args = parser.parse_args()
    cuda = f"yes: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no"
    tiny = " (tiny)" if args.tiny else ""
    print(f"torch {torch.__version__}, CUDA {cuda}, {args.steps} steps per recipe{tiny}\n", file=sys.stderr)
    print("| recipe | device, precision | images/s | peak memory (MB) | loss, first -> last fifth, fell | "
          "ONNX vs eager, largest difference |")  # fmt: skip
    print("|---|---|---:|---:|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for recipe in args.recipes.split(","):
            print(run(recipe, args.steps, args.tiny, Path(folder)), flush=True)


if __name__ == "__main__":
    main()
