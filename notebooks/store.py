"""Run notebooks top to bottom in their folder and store them with their outputs, as they are kept here.

    python notebooks/store.py notebooks/task_segmentation.ipynb [...]

The figures of photos (shown as JPEG) are replaced by one line saying so: the photo datasets are for research use
only and never copied into the repository. Everything else (text, PNG plots) is stored as the run left it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

PHOTOS_NOT_STORED = (
    "[a figure of the dataset's photos, not stored with the notebook: the dataset is for research use only and is "
    "never copied; run the notebook to see it]"
)


def without_photos(notebook: nbformat.NotebookNode) -> int:
    """Replace every JPEG output of `notebook` by the PHOTOS_NOT_STORED line; returns how many were replaced."""
    replaced = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "image/jpeg" in output.get("data", {}):
                output["data"] = {"text/plain": PHOTOS_NOT_STORED}
                replaced += 1
    return replaced


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=None, resources={"metadata": {"path": str(path.parent)}}).execute()
        replaced = without_photos(notebook)
        nbformat.write(notebook, path)
        print(f"{path}: stored, {replaced} figure(s) of photos left out")


if __name__ == "__main__":
    main(sys.argv[1:])
