"""One table of speed and memory ratios, each side by side in this one process (median of >= 3 paired runs).

    python bench/run.py [--repeats 3] [--only fit,predict,onnx,augment,coco,memory] [--flowers DIR]

| row | ours | baseline | target |
|---|---|---|---|
| fit | Task.fit | a plain PyTorch loop (same model, data, batch, optimiser; bench/fit_throughput.py) | >= 0.95x |
| predict | predict(compile=True): channels-last, torch.compile | plain eager inference of the same model | >= 1.3x |
| onnx | the exported ONNX file's predict on onnxruntime | eager Task.predict on the same images | >= 1.3x, batch 1 |
| augment | our train augmentation (albumentations) | the same pipeline in torchvision.transforms.v2 | >= 4.5x |
| coco bbox / segm | COCO evaluation, default backend | pycocotools; the 12 stats must be identical | >= 10x / >= 3x |
| memory | peak RSS of evaluate on 2,000 images | the same on 200 images (ratio: lower is better) | <= 1.5x |

Each pair runs in turns that swap, so a shared machine's slow drifts hit both sides alike. The flowers12 photos
(`--flowers`, research use only, never in the repo) feed the augmentation row; without them it uses seeded noise.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import visionheads as vh

HERE = Path(__file__).parent
FLOWERS = HERE.parent.parent / "shared" / "data" / "flowers12_224"
Row = tuple[str, float, float, float, str]  # name, ours, baseline, ratio (ours over baseline, in its sense), target


def paired(ours: Callable[[], float], baseline: Callable[[], float], repeats: int) -> tuple[float, float, float]:
    """Medians of `ours`, `baseline` (seconds each) and of the paired ratios baseline/ours (> 1: ours faster)."""
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for repeat in range(repeats):
        order = [("ours", ours), ("baseline", baseline)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            times[name].append(run())
    ratios = [b / o for o, b in zip(times["ours"], times["baseline"], strict=True)]
    return statistics.median(times["ours"]), statistics.median(times["baseline"]), statistics.median(ratios)


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# ----- fit ------------------------------------------------------------------------------------------------
def fit_row(repeats: int) -> Row:
    spec = importlib.util.spec_from_file_location("fit_throughput", HERE / "fit_throughput.py")
    fit_throughput = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_throughput)
    # 6 epochs (~9 s), 5 pairs at least: runs of 3 epochs moved the ratio between 0.88 and 1.04 from run to run.
    args = argparse.Namespace(backbone="simple_cnn", image_size=24, batch_size=64, epochs=6)
    fit_throughput.plain_loop(args)  # warm-up for both sides
    images, pairs = args.epochs * (1077 // 64) * 64, max(repeats, 5)
    ours, base, ratio = paired(lambda: images / fit_throughput.task_fit(args),
                               lambda: images / fit_throughput.plain_loop(args), pairs)  # fmt: skip
    what = f"Task.fit vs plain loop (s, simple_cnn, digits, {args.epochs} epochs, {pairs} pairs)"
    return (what, ours, base, ratio, ">= 0.95")


# ----- predict --------------------------------------------------------------------------------------------
def predict_row(repeats: int, count: int = 64) -> Row:
    torch.manual_seed(0)
    task = vh.Task("classification", backbone="resnet18", image_size=224, num_classes=12)
    images = np.random.default_rng(0).integers(0, 256, (count, 224, 224, 3), dtype=np.uint8)
    plain = copy.deepcopy(task.model).eval()  # the same model, as a user runs it: eager, default layout
    pipeline = task.eval_transform()

    def eager() -> None:
        with torch.inference_mode():
            for start in range(0, count, 32):
                batch = torch.stack([pipeline(image=image)["image"] for image in images[start : start + 32]])
                plain(task.model_inputs(batch)).softmax(1)  # the pipeline gives uint8: normalised as predict does

    def compiled() -> None:
        task.predict(images, batch_size=32, compile=True)

    start = time.perf_counter()
    compiled()  # compiles (cached by the task afterwards)
    print(f"  predict: torch.compile took {time.perf_counter() - start:.0f} s on first use", file=sys.stderr)
    eager()
    ours, base, ratio = paired(lambda: timed(compiled), lambda: timed(eager), repeats)
    return (f"predict(compile=True) vs eager (s, resnet18, {count} images at 224)", ours, base, ratio, ">= 1.3")


# ----- exported models ------------------------------------------------------------------------------------
def onnx_rows(repeats: int, count: int = 32) -> list[Row]:
    """The exported ONNX file under onnxruntime against eager Task.predict, batch 1 and 32, on the same images."""
    rng = np.random.default_rng(0)
    models = {
        "resnet18 classifier at 224": (vh.Task("classification", backbone="resnet18", image_size=224, num_classes=12),
                                       rng.integers(0, 256, (count, 224, 224, 3), dtype=np.uint8)),
        "U-Net recipe (simple_cnn, 64 px)": (vh.Task("segmentation", backbone="simple_cnn", head="unet",
                                                     image_size=64, num_classes=4),
                                             rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)),
    }  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (task, images) in models.items():
            exported = vh.load_exported(task.export(Path(folder) / "model.onnx"))
            for batch in (1, 32) if name.startswith("resnet") else (1,):
                exported.predict(images[:2], batch_size=batch)  # warm-up for both sides
                task.predict(images[:2], batch_size=batch)

                def ours_run(b: int = batch, e: Any = exported, x: np.ndarray = images) -> float:
                    return timed(lambda: e.predict(x, batch_size=b))

                def eager_run(b: int = batch, t: vh.Task = task, x: np.ndarray = images) -> float:
                    return timed(lambda: t.predict(x, batch_size=b))

                ours, base, ratio = paired(ours_run, eager_run, repeats)
                rows.append((f"ONNX on onnxruntime vs eager predict (s, {name}, {count} images, batch {batch})",
                             ours, base, ratio, ">= 1.3 at batch 1"))  # fmt: skip
    return rows


# ----- augmentation ---------------------------------------------------------------------------------------
def augment_rows(repeats: int, flowers: Path) -> list[Row]:
    from torchvision.transforms import v2

    from visionheads.data.images import read_image
    from visionheads.data.transforms import train_pipeline

    paths = sorted(flowers.rglob("*.jpg"))[:400] if flowers.is_dir() else []
    if paths:
        arrays = [read_image(path, 3) for path in paths]
    else:
        arrays = list(np.random.default_rng(0).integers(0, 256, (400, 240, 240, 3), dtype=np.uint8))
    tensors = [torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous() for array in arrays]  # v2's own input
    size, mean, std, batch = 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 32
    task = vh.Task("classification", backbone="simple_cnn", num_classes=12, image_size=size, mean=mean, std=std)
    ours_pipeline = train_pipeline(size, flips=True, seed=0)
    bilinear = v2.InterpolationMode.BILINEAR  # as albumentations' Affine (v2's RandomAffine default: nearest)
    steps = [
        v2.Resize((size, size), antialias=True),
        v2.RandomApply([v2.RandomAffine(10, (0.08, 0.08), (0.9, 1.1), interpolation=bilinear)], p=0.8),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(brightness=0.15, contrast=0.15)], p=0.3),
    ]
    theirs = v2.Compose(steps)  # the same steps, uint8 in and out, as ours
    theirs_normalised = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def ours() -> None:
        for array in arrays:
            ours_pipeline(image=array)

    def baseline() -> None:
        for tensor in tensors:
            theirs(tensor)

    # To a normalised float32 batch of 32, what a training step takes: v2 as its docs write a training pipeline
    # (each image converted and normalised), ours as a fit does it (uint8 batches normalised by Task.model_inputs,
    # on the device where there is a GPU; here on the CPU).
    def ours_to_batches() -> None:
        for start in range(0, len(arrays), batch):
            task.model_inputs(torch.stack([ours_pipeline(image=a)["image"] for a in arrays[start : start + batch]]))

    def baseline_to_batches() -> None:
        for start in range(0, len(tensors), batch):
            torch.stack([theirs_normalised(tensor) for tensor in tensors[start : start + batch]])

    what = f"{len(arrays)} flowers12 photos" if paths else f"{len(arrays)} noise images"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker, where torch runs one thread (the GPU fit's loaders)
    try:
        ours(), baseline(), ours_to_batches(), baseline_to_batches()
        same = paired(lambda: timed(ours), lambda: timed(baseline), repeats)
        batches = paired(lambda: timed(ours_to_batches), lambda: timed(baseline_to_batches), repeats)
    finally:
        torch.set_num_threads(threads)
    return [
        (f"train augmentation vs the same steps in torchvision v2 (s, {what} to 224, uint8)", *same, ">= 4.5"),
        (f"the same to normalised float batches of {batch} (s; ours normalises each batch, v2 each image)",
         *batches, "(no target)"),
    ]  # fmt: skip


# ----- COCO evaluation ------------------------------------------------------------------------------------
def coco_scenes(images: int = 400, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A seeded COCO file of polygons (some crowd regions) and detections: jittered truths plus false ones."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    categories = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]
    truth: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
    results = []

    def polygon(x: float, y: float, w: float, h: float) -> list[float]:
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        return [v for a in angles for v in (x + w / 2 * (1 + np.cos(a)), y + h / 2 * (1 + np.sin(a)))]

    def rle(x: float, y: float, w: float, h: float) -> dict[str, Any]:  # results hold masks as RLE
        encoded = mask_utils.merge(mask_utils.frPyObjects([polygon(x, y, w, h)], 240, 320))
        return {"size": encoded["size"], "counts": encoded["counts"].decode()}

    for image_id in range(1, images + 1):
        truth["images"].append({"id": image_id, "width": 320, "height": 240, "file_name": f"{image_id}.png"})
        for _ in range(rng.integers(2, 8)):
            w, h = rng.uniform(8, 120, 2)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            category = int(rng.integers(1, 4))
            crowd = int(rng.random() < 0.05)
            truth["annotations"].append({
                "id": len(truth["annotations"]) + 1, "image_id": image_id, "category_id": category,
                "segmentation": [polygon(x, y, w, h)], "bbox": [x, y, w, h], "area": float(np.pi * w * h / 4),
                "iscrowd": crowd,
            })  # fmt: skip
            dx, dy = rng.normal(0, 0.08, 2) * (w, h)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category,
                    "score": float(rng.uniform(0.3, 1)),
                    "bbox": [x + dx, y + dy, w, h],
                    "segmentation": rle(x + dx, y + dy, w, h),
                }
            )
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(8, 80, 2)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 4)),
                            "score": float(rng.uniform(0, 0.6)), "bbox": [x, y, w, h],
                            "segmentation": rle(x, y, w, h)})  # fmt: skip
    return truth, results


def coco_rows(repeats: int) -> list[Row]:
    import contextlib
    import io

    from pycocotools.coco import COCO

    from visionheads.metrics.coco import coco_backend, evaluate_results

    truth, results = coco_scenes()
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = truth
        ground_truth.createIndex()
    image_ids, category_ids = [i["id"] for i in truth["images"]], [1, 2, 3]
    backend = coco_backend("auto")
    rows = []
    for iou_type, target in (("bbox", ">= 10"), ("segm", ">= 3")):

        def run(name: str, iou_type: str = iou_type) -> Any:
            return evaluate_results(ground_truth, results, iou_type, image_ids, category_ids, backend=name)

        ours_stats, reference_stats = list(run(backend).stats), list(run("pycocotools").stats)
        same = np.allclose(ours_stats, reference_stats, atol=1e-12)
        o, b, ratio = paired(lambda: timed(lambda: run(backend)), lambda: timed(lambda: run("pycocotools")), repeats)
        note = "stats identical" if same else f"STATS DIFFER: {ours_stats} vs {reference_stats}"
        rows.append((f"COCO {iou_type} eval, {backend} vs pycocotools (s, {len(results)} detections; {note})",
                     o, b, ratio, target))  # fmt: skip
    return rows


# ----- memory ---------------------------------------------------------------------------------------------
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this process) through exec.
MEMORY_CHILD = """
import re, sys, visionheads as vh
task = vh.Task("classification", backbone="simple_cnn", image_size=64, num_classes=2)
task.evaluate(sys.argv[1], batch_size=64)
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def memory_row(repeats: int) -> Row:
    from PIL import Image

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        sets = {}
        for count in (200, 2000):
            root = Path(folder) / str(count)
            for index in range(count):
                (root / f"class{index % 2}").mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / f"class{index % 2}" / f"{index}.png")
            sets[count] = root

        def peak_kb(count: int) -> float:
            command = [sys.executable, "-c", MEMORY_CHILD, str(sets[count])]
            return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])

        # Both are peaks (KB), not times: the ratio is the large run's over the small one's (lower is better).
        large, small, inverse = paired(lambda: peak_kb(2000), lambda: peak_kb(200), repeats)
    return ("peak RSS of evaluate, 2,000 vs 200 images (MB; ratio large/small)", large / 1024, small / 1024,
            1 / inverse, "<= 1.5")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="fit,predict,onnx,augment,coco,memory")
    parser.add_argument("--flowers", type=Path, default=FLOWERS)
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    rows: list[Row] = []
    for name, make in (
        ("fit", lambda: [fit_row(args.repeats)]),
        ("predict", lambda: [predict_row(args.repeats)]),
        ("onnx", lambda: onnx_rows(args.repeats)),
        ("augment", lambda: augment_rows(args.repeats, args.flowers)),
        ("coco", lambda: coco_rows(args.repeats)),
        ("memory", lambda: [memory_row(args.repeats)]),
    ):
        if name in chosen:
            print(f"measuring {name}...", file=sys.stderr, flush=True)
            rows += make()
    cpu = platform.processor() or platform.machine()
    print(
        f"\n{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.repeats} paired "
        f"runs; peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n"
    )
    print("| what | ours | baseline | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for what, ours, base, ratio, target in rows:
        print(f"| {what} | {ours:.3f} | {base:.3f} | {ratio:.2f}x | {target} |")


if __name__ == "__main__":
    main()
