"""The command line answers at once (no torch for --help and list), explains fit's keys, and predict writes one
visible palette PNG per image without overwriting another's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionheads as vh
from visionheads import _names
from visionheads.backbones.registry import registered_entry
from visionheads.cli import _output_stems, main
from visionheads.data import catalog
from visionheads.data.masks import mask_palette, save_mask

SRC = Path(__file__).resolve().parents[2] / "src"
HEAVY = ("torch", "torchvision", "timm", "lightning", "segmentation_models_pytorch", "albumentations", "matplotlib")


def _built_in(names: list[str], module_of) -> list[str]:
    # Other test files register their own entries in this process (the template's "count" task); list only ours.
    return [name for name in names if module_of(name).startswith("visionheads.")]


def test_import_visionheads_and_its_cli_import_nothing_heavy():
    script = (
        "import sys, visionheads as vh, visionheads.cli\n"
        "vh.ConfigError, vh.DataError, vh.__version__\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", vh.__all__)
def test_every_public_name_still_resolves(name):
    namespace: dict = {}
    exec(f"from visionheads import {name}", namespace)  # the `from visionheads import X` form
    assert namespace[name] is getattr(vh, name)
    assert name in dir(vh)


def test_lazy_attributes_are_the_real_objects():
    from visionheads.tasks import Task, task_class

    assert vh.Task is Task and vh.task_class is task_class
    assert vh.tasks.FitSettings is vh.runtime.fitting.FitSettings  # submodules load on demand too
    assert vh.list_heads("classification") == {"classification": ["linear", "mlp"]}
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = vh.nonsense


def test_the_static_names_equal_the_registries():
    tasks = _built_in(vh.list_tasks(), lambda name: vh.task_class(name).__module__)
    heads = vh.list_heads()
    assert {task: heads[task] for task in tasks} == {k: list(v) for k, v in _names.TASK_HEADS.items()}
    assert list(_names.TASK_HEADS) == tasks  # sorted, as list prints them
    assert _built_in(vh.list_backbones(), lambda n: registered_entry(n).build.__module__) == list(_names.BACKBONES)
    datasets = vh.data.list_datasets()
    assert _built_in(datasets, lambda name: catalog._BUILTINS.get(name).__module__) == list(_names.DATASETS)


def test_list_prints_the_tables(capsys):
    assert main(["list", "tasks"]) == 0
    assert capsys.readouterr().out.split() == list(_names.TASK_HEADS)
    assert main(["list", "heads"]) == 0
    assert "segmentation: deeplabv3plus, fpn, segnet, segnet_lite, unet\n" in capsys.readouterr().out
    assert main(["list", "datasets"]) == 0
    assert capsys.readouterr().out.split() == ["coco", "digits", "mnist", "rotated-digits", "shapes", "yolo"]
    assert main(["list", "backbones"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "timm/<any timm model name>"


def test_fit_help_names_the_keys(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for key in ("epochs", "batch_size", "lr", "train", "val", "test", "backbone", "image_size", "num_classes"):
        assert re.search(rf"\b{key}=", out), key
    assert "lightning.Trainer" in out and "label_smoothing" in out and "head=unet*" in out


def test_output_stems_stay_when_distinct_and_differ_when_not():
    assert _output_stems(["a/x.png", "b/y.png", "z.jpg"]) == ["x", "y", "z"]
    assert _output_stems(["a/x.png", "b/x.png", "c/y.png"]) == ["a_x", "b_x", "y"]
    assert _output_stems(["1/a/x.png", "2/a/x.png", "a/x.png"]) == ["a_x", "a_x_2", "a_x_3"]
    assert _output_stems(["a/x.png", "b/x.png", "a_x.png"]) == ["a_x", "b_x", "a_x_2"]


def test_save_mask_writes_a_palette_png_of_the_class_indices(tmp_path):
    mask = np.array([[0, 1, 2], [3, 4, 255]], dtype=np.int64)
    with Image.open(save_mask(mask, tmp_path / "m.png")) as image:
        assert image.mode == "P"
        assert np.array_equal(np.array(image), mask)
    palette = np.array(mask_palette()).reshape(256, 3)
    assert len({tuple(colour) for colour in palette[:21]}) == 21  # VOC's 21 classes, all distinct
    assert tuple(palette[255]) == (255, 255, 255)
    wide = np.array([[0, 300]])  # more classes than a palette holds: 16-bit grey, still the indices
    assert np.array_equal(np.array(Image.open(save_mask(wide, tmp_path / "w.png"))), wide)


def test_predict_writes_one_palette_mask_per_image(tmp_path, capsys):
    task = vh.Task("segmentation", backbone="lenet5", num_classes=3, image_size=32)
    checkpoint = task.save(tmp_path / "seg.pt")
    rng = np.random.default_rng(0)
    images = []
    for folder, name in (("a", "x"), ("b", "x"), ("c", "y")):
        (tmp_path / folder).mkdir()
        images.append(tmp_path / folder / f"{name}.png")
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(images[-1])
    out = tmp_path / "predictions"
    assert main(["predict", str(checkpoint), *map(str, images), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_x_mask.png", "b_x_mask.png", "y_mask.png"]
    assert f"mask saved to {out / 'a_x_mask.png'}" in capsys.readouterr().out
    for image, written in zip(images, ("a_x_mask.png", "b_x_mask.png", "y_mask.png"), strict=True):
        with Image.open(out / written) as mask:
            assert mask.mode == "P" and mask.size == (28, 20)
            assert np.array_equal(np.array(mask), task.predict([str(image)])[0])
