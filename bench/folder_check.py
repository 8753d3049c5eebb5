"""What checking a big class folder costs before training: `fit` opens every image once (headers, PNG checksums,
each JPEG's stream read at 1/8 scale) so that one unreadable file stops it at once, not an hour in.

    python bench/folder_check.py [--files 10000] [--size 640 480]

Writes FILES JPEG photos (the flowers12 photos, resized to SIZE, in turn; a synthetic gradient where those are
absent) into a temporary folder, then times, in one process: the check (`check_image_files`, as fit runs it) and
the baseline of decoding every file in full once (what one epoch's reading costs at least). Prints both rows and
their ratio. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from visionheads.data.images import check_image_files

FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers12_224"


def write_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    sources = sorted(FLOWERS.rglob("*.jpg"))[:200]
    if sources:
        photos = [Image.open(path).convert("RGB").resize(size) for path in sources]
    else:
        ramp = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
        photos = [Image.fromarray(ramp)]
    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.jpg"
        photos[index % len(photos)].save(path, quality=90)
        paths.append(path)
    return paths


def timed(action) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (the latter barely moved by other work on the machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - start, time.process_time() - cpu


def decode_all(paths: list[Path]) -> None:
    for path in paths:
        with Image.open(path) as image:
            image.convert("RGB").load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("WIDTH", "HEIGHT"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_photos(Path(folder), args.files, tuple(args.size))
        megabytes = sum(path.stat().st_size for path in paths) / 2**20
        decode_all(paths[:200])  # the files are in the page cache for both rows (they were just written)
        check = timed(lambda: check_image_files(paths, folder))
        full = timed(lambda: decode_all(paths))
    width, height = args.size
    print(f"\n{args.files} JPEG files of {width}x{height} ({megabytes:.0f} MB), one process\n")
    print("| what | seconds | CPU seconds | ms per file |")
    print("|---|---:|---:|---:|")
    for what, seconds in (("the check before training (headers, JPEG streams at 1/8 scale)", check),
                          ("baseline: every file decoded in full once", full)):  # fmt: skip
        wall, cpu = seconds
        print(f"| {what} | {wall:.1f} | {cpu:.1f} | {wall / len(paths) * 1000:.2f} |")
    ratio, cpu_ratio = check[0] / full[0], check[1] / full[1]
    print(f"\nthe check costs {ratio:.2f}x one full read of the folder ({cpu_ratio:.2f}x in CPU time)")


if __name__ == "__main__":
    main()
