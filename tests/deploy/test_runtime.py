"""An exported file stands alone: it carries what using it needs, runs in an interpreter that has only onnxruntime
and NumPy, and the light runtime predicts without importing the training stack; the command line exports and
predicts from exported files as from checkpoints; impossible requests are one clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import visionheads as vh
from visionheads.cli import main
from visionheads.deploy import read_metadata


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A small digit classifier trained for one epoch, saved, and exported as ONNX."""
    folder = tmp_path_factory.mktemp("classifier")
    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)
    task.fit("digits:train[:256]", False, epochs=1, batch_size=32, plots=False, progress=False, project=folder)
    return task, task.save(folder / "digits.pt"), task.export(folder / "digits.onnx")


def _digit_files(task, folder, count=3):
    dataset = task.source("digits:test[:8]").dataset
    paths = []
    for index in range(count):
        paths.append(folder / f"digit{index}.png")
        Image.fromarray(dataset[index]["image"][..., 0]).save(paths[-1])
    return paths


def test_the_file_carries_what_using_it_needs(classifier):
    task, _, onnx_file = classifier
    meta = read_metadata(onnx_file)
    assert (meta.task, meta.part, meta.format, meta.input_name) == ("classification", "predict", "onnx", "images")
    assert meta.class_names == task.class_names and meta.in_chans == 1 and meta.resize == [16, 16]
    assert meta.mean == list(task.config.mean) and meta.std == list(task.config.std) and meta.output_names == ["probs"]
    assert meta.config == task.config.arguments() and meta.dynamic


def test_the_onnx_file_runs_where_only_onnxruntime_and_numpy_are(classifier, tmp_path):
    task, _, onnx_file = classifier
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    script = f"""
import json, sys
import numpy as np, onnxruntime as ort
session = ort.InferenceSession({str(onnx_file)!r}, providers=["CPUExecutionProvider"])
record = json.loads(session.get_modelmeta().custom_metadata_map["visionheads"])
(probs,) = session.run(None, {{record["input_name"]: np.load({str(tmp_path / "images.npy")!r})}})
np.save({str(tmp_path / "probs.npy")!r}, probs)
print(json.dumps({{"names": record["class_names"], "loaded": sorted(m.split(".")[0] for m in sys.modules)}}))
"""
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["names"] == task.class_names
    assert not {"torch", "visionheads", "lightning"} & set(report["loaded"])
    import torch

    with torch.no_grad():
        expected = task.export_graph("predict").module(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), expected, atol=1e-5)


def test_the_light_runtime_predicts_without_the_training_stack(classifier, tmp_path):
    task, _, onnx_file = classifier
    files = _digit_files(task, tmp_path)
    script = f"""
import json, sys
from visionheads.deploy import load_exported
results = load_exported({str(onnx_file)!r}).predict({[str(f) for f in files]!r})
heavy = sorted(m for m in sys.modules if m.startswith(("lightning", "visionheads.tasks", "visionheads.runtime")))
print(json.dumps({{"labels": [r["label"] for r in results], "heavy": heavy}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["heavy"] == []
    assert report["labels"] == [r["label"] for r in task.predict(files)]


def test_the_command_line_exports_and_predicts_from_the_exported_file(classifier, tmp_path, capsys):
    task, checkpoint, _ = classifier
    files = [str(f) for f in _digit_files(task, tmp_path)]
    for file_format, suffix in (("onnx", ".onnx"), ("torchscript", ".torchscript"), ("exported-program", ".pt2")):
        out = tmp_path / f"cli{suffix}"
        assert main(["export", str(checkpoint), "--format", file_format, "--out", str(out)]) == 0
        assert read_metadata(out).format == file_format
    capsys.readouterr()
    assert main(["predict", str(checkpoint), *files]) == 0
    from_checkpoint = capsys.readouterr().out
    assert main(["predict", str(tmp_path / "cli.onnx"), *files]) == 0
    from_onnx = capsys.readouterr().out
    labels = [line.split("'label': ")[1].split(",")[0] for line in from_checkpoint.splitlines()]
    assert labels and labels == [line.split("'label': ")[1].split(",")[0] for line in from_onnx.splitlines()]


def test_impossible_exports_and_foreign_files_are_one_clear_error(classifier, tmp_path, capsys):
    task, checkpoint, _ = classifier
    with pytest.raises(vh.ConfigError, match=r"onnx files are named \*\.onnx"):
        task.export(tmp_path / "model.pt")
    with pytest.raises(vh.ConfigError, match="unknown format 'tflite'|format must be one of|format="):
        task.export(tmp_path / "model.tflite", format="tflite")
    with pytest.raises(vh.ConfigError, match="part"):
        task.export(tmp_path / "model.onnx", part="encode")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(vh.ConfigError, match="no CUDA device"):
            task.export(tmp_path / "model.onnx", half=True)
    with pytest.raises(vh.ConfigError, match="not an exported model"):
        vh.load_exported(checkpoint)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["predict", str(tmp_path / "junk.onnx"), "x.png"]) == 2
    assert "not a readable ONNX file" in capsys.readouterr().err
