"""Every task and head exports to every format that can hold it, and the exported file scores as eager PyTorch does:
per output, the largest difference over batches of 1 and 3 at two image sizes (R-CNN: one image at two sizes) is
within 1e-4 (boxes 1e-3 px); `load_exported(file).predict` gives what `Task.predict` gives on images of other sizes.
Formats that cannot hold a graph say which can. One class per task, so that the rows spread over the test workers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import visionheads as vh
from visionheads.runtime.export import export_parity

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "exported-program": ".pt2"}
SMALL = {"backbone": "simple_cnn", "image_size": 32}
DETECTION = {**SMALL, "num_classes": 3, "fpn_channels": 16, "representation_size": 32, "proposals_train": 64,
             "proposals_test": 64, "rois_per_image": 32, "min_size": 64, "max_size": 80}  # fmt: skip
TOLERANCE = {"boxes": 1e-3}  # pixels; every other output 1e-4


def _images(count: int = 4, channels: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    shapes = [(40, 52), (33, 61), (70, 45), (50, 55)][:count]  # R-CNN: the long side limits the first three
    return [rng.integers(0, 256, (*shape, channels), dtype=np.uint8) for shape in shapes]


def _same(a: Any, b: Any, atol: float) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key], atol) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, atol) for x, y in zip(a, b, strict=True))
    if isinstance(a, str):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.allclose(a.astype(np.float64), b.astype(np.float64), atol=atol, rtol=0)


def _check(task: vh.Task, file_format: str, tmp_path, *, part: str | None = None, channels: int = 3) -> None:
    path = task.export(tmp_path / f"model{FORMATS[file_format]}", format=file_format, part=part)
    worst = export_parity(task, path)
    assert all(value <= TOLERANCE.get(name, 1e-4) for name, value in worst.items()), worst
    exported = vh.load_exported(path)
    assert exported.task == task.name and exported.metadata.part == (part or task.export_parts[0])
    images = _images(channels=channels)
    if part == "decode":
        codes = np.random.default_rng(0).normal(size=(3, task.config.head_options["latent_dim"])).astype(np.float32)
        assert _same(exported.decode_codes(codes), task.decode_codes(codes), atol=1)  # uint8: one grey level at most
    elif part == "encode":
        assert _same(np.stack(exported.predict(images)), task.encode(images), atol=1e-4)
    elif task.name == "detection":  # R-CNN pads a batch to its largest image: one image at a time is the reference
        assert _same(exported.predict(images), [task.predict([image])[0] for image in images], atol=1e-3)
    else:
        assert _same(exported.predict(images), task.predict(images), atol=1 if task.name == "autoencoder" else 1e-4)


class TestClassification:
    @pytest.mark.parametrize("file_format", FORMATS)
    @pytest.mark.parametrize("head", vh.list_heads("classification")["classification"])
    def test_exports_and_matches_eager(self, head, file_format, tmp_path):
        _check(vh.Task("classification", head=head, class_names=list("abcd"), **SMALL), file_format, tmp_path)


class TestRegression:
    @pytest.mark.parametrize("file_format", FORMATS)
    @pytest.mark.parametrize("head", vh.list_heads("regression")["regression"])
    def test_exports_and_matches_eager(self, head, file_format, tmp_path):
        scale = {} if head == "angle" else {"target_scale": [[5.0], [20.0]]}  # degrees out, whatever the head
        _check(vh.Task("regression", head=head, in_chans=1, **scale, **SMALL), file_format, tmp_path, channels=1)


class TestSegmentation:
    @pytest.mark.parametrize("file_format", FORMATS)
    @pytest.mark.parametrize("head", vh.list_heads("segmentation")["segmentation"])
    def test_exports_and_matches_eager(self, head, file_format, tmp_path):
        body = {"backbone": "vgg11_bn"} if head == "segnet" else {}  # SegNet unpools with VGG's pooling indices
        task = vh.Task("segmentation", head=head, num_classes=3, **(SMALL | body))
        if head == "segnet" and file_format == "torchscript":
            with pytest.raises(vh.ConfigError, match="cannot be traced to TorchScript; export it as onnx or exported"):
                task.export(tmp_path / "model.torchscript", format=file_format)
            return
        _check(task, file_format, tmp_path)

    @pytest.mark.parametrize("file_format", FORMATS)
    def test_a_height_and_width_size_exports_and_matches_eager(self, file_format, tmp_path):
        task = vh.Task("segmentation", num_classes=3, **(SMALL | {"image_size": (28, 44)}))
        _check(task, file_format, tmp_path)
        assert vh.load_exported(tmp_path / f"model{FORMATS[file_format]}").metadata.resize == [28, 44]


class TestAutoencoder:
    @pytest.mark.parametrize("file_format", FORMATS)
    @pytest.mark.parametrize("head", vh.list_heads("autoencoder")["autoencoder"])
    def test_reconstructions_export_and_match_eager(self, head, file_format, tmp_path):
        _check(vh.Task("autoencoder", head=head, latent_dim=8, **SMALL), file_format, tmp_path)

    @pytest.mark.parametrize("file_format", FORMATS)
    @pytest.mark.parametrize("part", ["encode", "decode"])
    @pytest.mark.parametrize("head", ["conv", "vae"])
    def test_codes_and_decoding_export_and_match_eager(self, head, part, file_format, tmp_path):
        _check(vh.Task("autoencoder", head=head, latent_dim=8, **SMALL), file_format, tmp_path, part=part)


class TestSiamese:
    @pytest.mark.smoke
    @pytest.mark.parametrize("file_format", FORMATS)
    def test_embeddings_export_and_match_eager(self, file_format, tmp_path):
        task = vh.Task("siamese", class_names=["a", "b"], threshold=0.3, **SMALL)
        _check(task, file_format, tmp_path)
        pairs = [(a, b) for a, b in zip(_images(), _images()[::-1], strict=True)]
        exported = vh.load_exported(tmp_path / f"model{FORMATS[file_format]}")
        assert _same(exported.verify(pairs), task.verify(pairs), atol=1e-4)


class TestDetection:
    @pytest.mark.parametrize("file_format", FORMATS)
    @pytest.mark.parametrize("head", vh.list_heads("detection")["detection"])
    def test_detections_export_and_match_eager(self, head, file_format, tmp_path):
        task = vh.Task("detection", head=head, **DETECTION)
        if file_format == "exported-program":
            with pytest.raises(vh.ConfigError, match="depends on the data .* export it as onnx or torchscript"):
                task.export(tmp_path / "model.pt2", format=file_format)
            return
        _check(task, file_format, tmp_path)
        found = vh.load_exported(tmp_path / f"model{FORMATS[file_format]}").predict(_images()[:1])[0]
        assert len(found["boxes"]) > 0  # untrained heads still find boxes: the comparison compared something
