"""The parity table of docs/deploy.md: for every task, head (and autoencoder part) and format, the largest absolute
difference per output between the exported file under its runtime and eager PyTorch on the same inputs (batches of
1 and 3 at two image sizes where the graph takes any; R-CNN: one image at two sizes). Small models with random
weights, as tests/deploy/test_export.py checks them row by row.

    python bench/export_parity.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import visionheads as vh
from visionheads.runtime.export import export_parity

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "exported-program": ".pt2"}
SMALL = {"backbone": "simple_cnn", "image_size": 32}
DETECTION = {"num_classes": 3, "fpn_channels": 16, "representation_size": 32, "proposals_train": 64,
             "proposals_test": 64, "rois_per_image": 32, "min_size": 64, "max_size": 80}  # fmt: skip


def rows() -> list[tuple[str, str, str, dict]]:
    """(task, head, part, Task arguments) of every row."""
    found = []
    for task, heads in vh.list_heads().items():
        for head in heads:
            arguments = SMALL | {"head": head}
            if task == "classification":
                arguments |= {"num_classes": 4}
            elif task == "regression" and head != "angle":
                arguments |= {"target_scale": [[0.0], [1.0]]}
            elif task == "segmentation":
                arguments |= {"num_classes": 3} | ({"backbone": "vgg11_bn"} if head == "segnet" else {})
            elif task == "siamese":
                arguments |= {"class_names": ["a", "b"]}
            elif task == "autoencoder":
                arguments |= {"latent_dim": 8}
            elif task == "detection":
                arguments |= DETECTION
            parts = vh.task_class(task).export_parts
            found += [(task, head, part, arguments) for part in parts]
    return found


def main() -> None:
    print("| task | head | part | onnx | torchscript | exported-program |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for task_name, head, part, arguments in rows():
            task = vh.Task(task_name, **arguments)
            cells = []
            for file_format, suffix in FORMATS.items():
                try:
                    path = task.export(Path(folder) / f"model{suffix}", format=file_format, part=part)
                except vh.ConfigError:
                    cells.append("not held (error names the formats that are)")
                    continue
                worst = export_parity(task, path)
                cells.append(", ".join(f"{name} {value:.0e}" for name, value in worst.items()))
            print(f"| {task_name} | {head} | {part} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
