"""Every file a fit or a save writes loads back and predicts as the task that wrote it: for every task, on a
registry body and on a `timm/<name>` body, best.pt, last.pt, last.ckpt and Task.save's file load with
`vh.Task.load`, `visionheads evaluate` scores them as the task does and `visionheads predict` takes them; and a
fit on such a body stopped after its first epoch resumes to its end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
from PIL import Image

import visionheads as vh
from visionheads.cli import main

DETECTION = {"fpn_channels": 16, "representation_size": 32, "proposals_train": 64, "proposals_test": 64,
             "rois_per_image": 32, "min_size": 64, "max_size": 64}  # fmt: skip
# task -> (its arguments, training data, validation data, evaluation data)
CASES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "classification": ({"in_chans": 1, "image_size": 32}, "digits:train[:32]", "digits:val[:16]", "digits:test[:16]"),
    "regression": ({"in_chans": 1, "image_size": 32}, "rotated-digits:train[:32]", "rotated-digits:val[:16]",
                   "rotated-digits:test[:16]"),
    "segmentation": ({"image_size": 64}, "shapes:train[:16]", "shapes:val[:8]", "shapes:test[:8]"),
    "detection": (DETECTION, "shapes:train[:8]", "shapes:val[:4]", "shapes:test[:4]"),
    "autoencoder": ({"in_chans": 1, "image_size": 32, "latent_dim": 8}, "digits:train[:32]", "digits:val[:16]",
                    "digits:test[:16]"),
    "siamese": ({"in_chans": 1, "image_size": 32}, "digits:train[:48]", "digits:val[:32]", "digits:test[:32]"),
}  # fmt: skip
BODIES = ["simple_cnn", "timm/test_efficientnet"]  # a registry body; a timm model by its own name (82k parameters)
FILES = ("best.pt", "last.pt", "last.ckpt", "saved.pt")


class StopAfterFirstEpoch(L.Callback):
    """Ends the fit cleanly after its first epoch, as a preempted job leaves it: saved, unfinished."""

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def _printed_metrics(text: str) -> dict[str, float]:
    # format_metrics' table: one "name   value" line per metric
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\S+) +(-?\d+\.\d+|nan)$", text, re.MULTILINE)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str):
        return a == b
    return np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=1e-5)


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_saved_file_loads_evaluates_predicts_and_resumes(name, body, tmp_path, capsys):
    arguments, train, val, test = CASES[name]
    task = vh.Task(name, backbone=body, **arguments)
    fit = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "plots": False, "progress": False, "checkpoint_every": 0,
           "project": tmp_path / "runs", "name": "cut"}  # fmt: skip
    history = task.fit(train, val, **fit, callbacks=[StopAfterFirstEpoch()])
    run_dir = history.run_dir
    assert [row["epoch"] for row in history.rows] == [1]
    task.save(run_dir / "saved.pt")
    assert vh.Task.load(run_dir / "saved.pt").config.backbone == body  # the name that builds the body again

    dataset = task.source(test).dataset
    images = [dataset[i]["image"] for i in range(2)]
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"image{index}.png")
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(paths[-1])
    expected_predictions = task.predict(paths)
    expected_metrics = task.evaluate(test)
    capsys.readouterr()
    for file in FILES:
        path = run_dir / file
        loaded = vh.Task.load(path)
        assert loaded.config == task.config, file
        assert _same(loaded.predict(paths), expected_predictions), file
        assert main(["evaluate", str(path), test, "--results", str(tmp_path / "results.json")]) == 0, file
        printed = _printed_metrics(capsys.readouterr().out)
        assert printed.keys() == expected_metrics.keys(), file
        assert all(printed[k] == pytest.approx(v, abs=1e-4, nan_ok=True) for k, v in expected_metrics.items()), file
        assert main(["predict", str(path), *map(str, paths), "--out", str(tmp_path / "out")]) == 0, file
        assert str(paths[0]) in capsys.readouterr().out

    resumed = vh.Task(name, backbone=body, **arguments).fit(train, val, **fit, resume=run_dir)
    assert [row["epoch"] for row in resumed.rows] == [1, 2] and resumed.run_dir == Path(run_dir)
