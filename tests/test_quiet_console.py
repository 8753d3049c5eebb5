"""A quiet, honest console: every shipped recipe (tasks/*.yaml), run as `visionheads fit` at tiny settings, prints no
warning of any library, and finishes.

One interpreter fits all the recipes in turn through the command's `main` (an interpreter per recipe would spend ~5 s
on imports each), started with `-W always`: every warning is printed, each time it is issued (no once-per-location
registry), DeprecationWarnings too, and none of pyproject's filterwarnings apply. A fresh interpreter also shows what
the test process would already have spent: warnings at import, and torch's warn-once ones (a read-only NumPy array).
Recipes whose data or weights a test machine lacks (photo folders under ../shared/data, a prepared weights file,
MNIST idx files, an ImageNet download) run on stand-ins made here in the same layout. A canary run, last, has its
data pipeline warn on every sample, and the same capture must show each of those warnings.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from visionheads.recipes import load_recipe, parse_overrides

RECIPES = Path(__file__).resolve().parents[1] / "tasks"
STANDINS = "{standins}"  # replaced by the folder of the stand-ins
TINY_DETECTOR = ["min_size=64", "max_size=64", "fpn_channels=16", "representation_size=32", "proposals_train=32",
                 "proposals_test=32", "rois_per_image=16"]  # fmt: skip
DIGITS = ["train=digits[:16]", "val=digits:val[:8]", "test=digits:test[:8]"]
SHAPES = ["train=shapes[:8]", "val=shapes:val[:4]", "test=shapes:test[:4]"]
CAMVID = [f"train={STANDINS}/camvid/train", f"val={STANDINS}/camvid/val", "image_size=[32,48]", "crop_size=[32,32]"]
LITE0 = f"weights={STANDINS}/tf_efficientnet_lite0.safetensors"
PENNFUDAN = [f"{split}={{coco: {STANDINS}/pennfudan/{split}.json, images: {STANDINS}/pennfudan/images}}"
             for split in ("train", "test")]  # fmt: skip
# What each recipe's tiny run changes besides epochs=1 and batch_size=4: a handful of images at a small size, stand-ins
# for what is not on a test machine, and no figures (they cost more than the tiny fit) but for two recipes whose
# figures are cheap to draw.
TINY: dict[str, list[str]] = {
    "autoencoder_digits": [*DIGITS, "plots=false"],
    "autoencoder_vae_digits": [*DIGITS, "plots=false"],
    "classification_digits": [*DIGITS, "image_size=16", "plots=false"],
    "classification_flowers12": [f"train={STANDINS}/flowers/train", f"test={STANDINS}/flowers/test", LITE0,
                                 "image_size=32"],
    "detection_pennfudan": [*PENNFUDAN, LITE0, "min_size=64", "max_size=64", "rois_per_image=16", "plots=false"],
    "detection_shapes": [*SHAPES, *TINY_DETECTOR, "plots=false"],
    "regression_mnist": [f"train=mnist:{STANDINS}/mnist:train[:16]", f"test=mnist:{STANDINS}/mnist:test[:8]"],
    "regression_rotated_digits": [*(spec.replace("digits", "rotated-digits") for spec in DIGITS), "image_size=16",
                                  "plots=false"],
    "segmentation_camvid": [*CAMVID, LITE0, "plots=false"],
    "segmentation_camvid_segnet": [*CAMVID, "weights=null", "plots=false"],  # its `imagenet` tag is a download
    "segmentation_segnet_shapes": [*SHAPES, "image_size=32", "plots=false"],
    "segmentation_shapes": [*SHAPES, "image_size=32", "plots=false"],
    "siamese_digits": ["train=digits[:40]", "val=digits:val[:16]", "test=digits:test[:16]", "image_size=16",
                       "batch_size=16", "plots=false"],
    "siamese_digits_unseen": ["train=digits:train:0-6[:40]", "val=digits:val:0-6[:16]", "test=digits:test:7-9[:24]",
                              "image_size=16", "batch_size=16", "plots=false"],
}  # fmt: skip


def warned(lines: list[str]) -> list[str]:
    """The console lines that name a warning: UserWarning, DeprecationWarning, FutureWarning, PossibleUserWarning..."""
    return [line for line in lines if "Warning" in line]


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny stand-ins, in the recipes' layouts, for what they read from outside the repository."""
    root = tmp_path_factory.mktemp("standins")
    rng = np.random.default_rng(0)

    def picture(path: Path, height: int, width: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)

    for split in ("train", "test"):  # flowers12_224: class folders of JPEGs
        for name in ("bluebell", "daisy"):
            for i in range(4):
                picture(root / "flowers" / split / name / f"{i}.jpg", 40, 48)
    (root / "camvid").mkdir()  # camvid_180: <split>/images/*.jpg, <split>/labels/*.png (11 classes, 255 ignored)
    (root / "camvid" / "classes.txt").write_text("".join(f"class{i}\n" for i in range(11)))
    for split in ("train", "val"):
        (root / "camvid" / split / "labels").mkdir(parents=True)
        for i in range(4):
            picture(root / "camvid" / split / "images" / f"{i}.jpg", 36, 48)
            labels = np.where(rng.random((36, 48)) < 0.1, 255, rng.integers(0, 11, (36, 48)))
            Image.fromarray(labels.astype(np.uint8)).save(root / "camvid" / split / "labels" / f"{i}.png")
    images, annotations = [], []  # pennfudan: COCO files over images/, one person per photo
    for i in range(1, 7):
        picture(root / "pennfudan" / "images" / f"{i}.jpg", 60, 50)
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 60})
        x, y, w, h = 8 + i, 10, 20, 30
        polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, w, h], "area": w * h,
                            "iscrowd": 0, "segmentation": [polygon]})  # fmt: skip
    for split, chosen in (("train", slice(0, 4)), ("test", slice(4, 6))):
        coco = {"images": images[chosen], "annotations": annotations[chosen],
                "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}  # fmt: skip
        (root / "pennfudan" / f"{split}.json").write_text(json.dumps(coco))
    (root / "mnist").mkdir()  # MNIST idx files
    for prefix, count in (("train", 16), ("t10k", 8)):
        pixels = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8).tobytes()
        labels = (np.arange(count) % 10).astype(np.uint8).tobytes()
        header = struct.pack(">HBBIII", 0, 8, 3, count, 28, 28)  # 2 zero bytes, uint8, 3 dims, their sizes
        (root / "mnist" / f"{prefix}-images-idx3-ubyte").write_bytes(header + pixels)
        (root / "mnist" / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, count) + labels)
    # datasets/flowers12/prepare_weights.py's file: timm's tf_efficientnet_lite0 state dict as safetensors
    import timm
    from safetensors.torch import save_file

    state = {key: value.contiguous() for key, value in timm.create_model("tf_efficientnet_lite0").state_dict().items()}
    save_file(state, str(root / "tf_efficientnet_lite0.safetensors"))
    return root


def tiny_overrides(recipe: Path, standins: Path, project: Path) -> list[str]:
    """The command-line overrides of `recipe`'s tiny run, its run folder under `project`."""
    tiny = [item.replace(STANDINS, str(standins)) for item in TINY[recipe.stem]]
    return ["epochs=1", "batch_size=4", f"project={project}", *tiny]


# Fits each (name, argv) of sys.argv[1] in turn, between marker lines. The canary's data pipeline (the tensor step of
# every pipeline) warns on each sample it converts.
DRIVER = """
import json, sys, time, traceback, warnings
from visionheads.cli import main
from visionheads.data import transforms

for name, argv in json.loads(sys.argv[1]):
    if name == "canary":
        def noisy(self, img, _apply=transforms.ToTensor.apply, **params):
            warnings.warn("canary", UserWarning)
            warnings.warn("old canary", DeprecationWarning)
            return _apply(self, img, **params)
        transforms.ToTensor.apply = noisy
    print(f"=== {name}", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        code = main(argv)
    except BaseException:
        traceback.print_exc()
        code = "an exception"
    took = f"{time.perf_counter() - start:.1f} s, CPU {time.process_time() - cpu:.1f} s"
    print(f"=== {name} exit {code} ({took})", flush=True)
"""
CANARY_SAMPLES = 8


@pytest.fixture(scope="module")
def consoles(standins: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Each tiny run's console lines (stdout and stderr, in order) by recipe name, and the canary's; all from one
    interpreter."""
    project = tmp_path_factory.mktemp("runs")
    runs = [(path.stem, ["fit", str(path), *tiny_overrides(path, standins, project / path.stem)])
            for path in sorted(RECIPES.glob("*.yaml")) if path.stem in TINY]  # fmt: skip
    canary = [f"train=digits[:{CANARY_SAMPLES}]", "val=false", "test=null", "image_size=16", "plots=false"]
    runs.append(("canary", ["fit", str(RECIPES / "classification_digits.yaml"), "epochs=1", "batch_size=4",
                            f"project={project / 'canary'}", *canary]))  # fmt: skip
    # torch on one thread: on a shared machine whose other core is busy, two threads' barrier waits cost ~10x
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    environment.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, "-u", "-W", "always", "-c", DRIVER, json.dumps(runs)], cwd=project, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
    )  # fmt: skip
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in done.stdout.splitlines():
        if line.startswith("=== ") and " exit " not in line:
            current = line.removeprefix("=== ")
            sections[current] = []
        sections[current].append(line)
    assert done.returncode == 0, done.stdout
    print(*(line for line in done.stdout.splitlines() if line.startswith("=== ") and " exit " in line), sep="\n")
    sections["imports"] = sections.pop("")  # before the first run: warnings of the imports
    return sections


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda path: path.stem)
def test_recipe_fits_with_a_quiet_console(recipe, consoles, standins, tmp_path):
    if recipe.stem not in TINY:
        pytest.fail(f"{recipe.name}: a new recipe; add its tiny settings to TINY in {Path(__file__).name}")
    loaded = load_recipe(recipe, parse_overrides(tiny_overrides(recipe, standins, tmp_path)))
    reads = yaml.safe_dump({"data": loaded["data"], "weights": loaded["task"].get("weights")})
    assert "shared/data" not in reads and "~" not in reads, f"the tiny run would read outside the test: {reads}"

    lines = consoles[recipe.stem]
    console = "\n".join(lines)
    assert lines[-1].startswith(f"=== {recipe.stem} exit 0 "), console
    assert any(line.startswith("epoch 1/1 ") for line in lines), console  # the fit finished its epoch
    if loaded["data"].get("test"):
        assert "test metrics on" in console, console  # and was scored on the test data
    assert not warned(lines), f"{recipe.name} printed warnings:\n" + "\n".join(warned(lines))


def test_imports_print_no_warning(consoles):
    assert not warned(consoles["imports"]), "\n".join(consoles["imports"])


def test_the_capture_shows_every_warning_a_data_pipeline_issues_inside_a_fit(consoles):
    lines = consoles["canary"]
    assert lines[-1].startswith("=== canary exit 0 "), "\n".join(lines)
    shown = warned(lines)
    # one of each per sample read (the 8 of the epoch, and the one that fit checks first), all from one source
    # line: the once-per-location registry swallowed no repeat
    assert sum("UserWarning: canary" in line for line in shown) >= CANARY_SAMPLES, lines
    assert sum("DeprecationWarning: old canary" in line for line in shown) >= CANARY_SAMPLES, lines


def test_read_only_masks_reach_tensors_as_copies():
    # torch.from_numpy warns on a read-only array (once per process, so recipe runs after the first would not show
    # it); a memory-mapped or shared mask is one
    from visionheads.data.transforms import MaskAsItIs, eval_pipeline

    mask = np.zeros((12, 10), dtype=np.int64)
    mask.flags.writeable = False
    out = MaskAsItIs(eval_pipeline(8))(image=np.zeros((12, 10, 3), dtype=np.uint8), mask=mask)
    assert out["mask"].shape == (12, 10) and out["mask"].dtype == torch.int64
    assert out["mask"].data_ptr() != mask.ctypes.data  # a copy, not a view of the read-only memory
