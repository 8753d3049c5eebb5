"""The notebooks under notebooks/ run top to bottom in their small setting, and show what they teach.

Each is executed by nbclient in a Jupyter kernel of this interpreter (ipykernel's `python3`, which jupyter_client
starts with `sys.executable`), with VISIONHEADS_NOTEBOOK_SMALL=1 in the kernel's environment: built-in data,
1-2 epochs, tiny models, one torch thread. It runs from a copy in memory, in an empty folder of its own (its run
folders go there, never into the repository), so the stored notebook, with the outputs of its real run, is never
rewritten; and from that folder the real photos' relative path (../../shared/data) leads nowhere.

One kernel runs each class's notebooks in turn, its namespace emptied (`%reset -f`) before each: starting a kernel
and importing torch, Lightning and timm in it costs about 10 s, more than most notebooks take in the small setting.
The two classes go to two pytest-xdist workers (--dist loadscope groups the tests of a class).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SWITCH = "VISIONHEADS_NOTEBOOK_SMALL"

# notebook -> (text its outputs must hold: the metrics it prints, figures it must show)
LECTURE = {
    "lecture_1_segnet": (["ConfigError:", "miou", "iou_triangle"], 2),
    "lecture_2_transfer": (["test accuracy", "scratch", "features", "freeze", "finetune"], 1),
    "lecture_3_zoo": (["GFLOPs", "channels", "deeplabv3plus"], 1),
    "lecture_4_inside": (["accuracy", "stage 1 maps"], 3),
    "lecture_5_adversarial": (["FGSM", "PGD"], 2),
}
TASKS = {
    "task_classification_flowers12": (["accuracy", "macro_f1", "with test-time flips"], 2),
    "task_regression_rotated_digits": (["RMSE", "within ±10°"], 3),
    "task_segmentation": (["mIoU", "class acc", "per class IoU"], 2),
    "task_detection_pennfudan": (["AP50", "boxes scoring 0.5 or more"], 3),
    "task_autoencoder": (["PSNR", "SSIM", "anomaly ROC-AUC"], 2),
    "task_siamese": (["prototype_accuracy", "5-shot accuracy"], 2),
}
EXPECTED = LECTURE | TASKS


def _outputs(cells: list) -> list:
    return [output for cell in cells for output in cell.get("outputs", [])]


def _outputs_text(cells: list) -> str:
    return "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in _outputs(cells))


# The notebooks show figures of photos as JPEG. Stored (notebooks/store.py), those outputs are replaced by a line
# starting so: the photo datasets are for research use only and never copied into the repository.
PHOTOS_NOT_STORED = "[a figure of the dataset's photos, not stored with the notebook"


def _figures(cells: list) -> int:
    kinds = ("image/png", "image/jpeg")  # JPEG: the figures of photos
    return sum(
        any(kind in out.get("data", {}) for kind in kinds)
        or out.get("data", {}).get("text/plain", "").startswith(PHOTOS_NOT_STORED)
        for out in _outputs(cells)
    )


def _errors(cells: list) -> list[str]:
    return [f"{out.get('ename')}: {out.get('evalue')}" for out in _outputs(cells) if out.get("output_type") == "error"]


@pytest.fixture(scope="class")
def kernel(tmp_path_factory):
    """A kernel of this interpreter with the small switch on, shared by a class's notebooks."""
    env = {**os.environ, SWITCH: "1"}
    env.pop("MPLBACKEND", None)  # the kernel's own inline backend, so figures become outputs
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as tests/conftest.py: let the kernel keep the bytecode it compiles
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path_factory.mktemp("kernel")), env=env)
    yield manager
    manager.shutdown_kernel(now=True)


def run_small(kernel: KernelManager, name: str, folder: Path) -> list:
    """Execute notebook `name` (a copy) in `kernel` from `folder`; returns its cells with their outputs."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    fresh = nbformat.v4.new_code_cell(f"%reset -f\nimport os\nos.chdir({str(folder)!r})")
    notebook.cells.insert(0, fresh)  # a clean namespace and the notebook's own folder
    client = NotebookClient(notebook, km=kernel, timeout=600)
    try:
        client.execute()  # a cell that raises raises here, naming the cell
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    return notebook.cells[1:]


def check_outputs(name: str, cells: list) -> None:
    words, figures = EXPECTED[name]
    text = _outputs_text(cells)
    missing = [word for word in words if word not in text]
    assert not missing, f"{name}: the outputs do not show {missing}"
    assert _figures(cells) >= figures, f"{name}: {_figures(cells)} figures shown, expected at least {figures}"


class TestLectureNotebooks:
    @pytest.mark.parametrize("name", sorted(LECTURE))
    def test_runs_small(self, kernel, name, tmp_path):
        check_outputs(name, run_small(kernel, name, tmp_path))


class TestTaskNotebooks:
    @pytest.mark.parametrize("name", sorted(TASKS))
    def test_runs_small(self, kernel, name, tmp_path):
        check_outputs(name, run_small(kernel, name, tmp_path))


def test_every_notebook_is_run():
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stored_with_the_outputs_of_a_real_run(name):
    """Stored executed, in order, without errors and with its figures; small enough to read in a browser."""
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.stat().st_size < 1_000_000, f"{path.name}: {path.stat().st_size:,} bytes; lower the figures' dpi"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert SWITCH in code[0].source, f"{path.name}: its first code cell must read {SWITCH}"
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not stored as one run top to bottom: {counts}"
    assert not _errors(code), f"{path.name}: stored with errors {_errors(code)}"
    photos = [out for out in _outputs(code) if "image/jpeg" in out.get("data", {})]
    assert not photos, f"{path.name}: stored with {len(photos)} figures of photos; store it with notebooks/store.py"
    check_outputs(name, code)
