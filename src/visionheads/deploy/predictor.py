"""An exported task file run on its own: ONNX files on onnxruntime, TorchScript and ExportedProgram files on torch;
images read and resized as the task's eval pipeline does, the outputs decoded as the task decodes them. Nothing of
the training stack (Lightning, the task classes, the runtime) is imported."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from visionheads.data.images import as_image_list, read_image
from visionheads.data.samples import as_image
from visionheads.deploy.decoders import DECODERS
from visionheads.deploy.metadata import ExportMetadata, format_of, read_metadata
from visionheads.errors import ConfigError, DataError, whole_number

Graph = Callable[[np.ndarray], list[np.ndarray]]  # the graph's input -> its outputs, in output_names order


def load_exported(path: str | Path, *, device: str = "auto") -> ExportedModel:
    """An exported file (`.onnx`, `.torchscript`, `.pt2`) as a predictor; `device`: "auto" (CUDA when onnxruntime or
    torch has it), "cpu" or "cuda"."""
    path = Path(path).expanduser()
    metadata = read_metadata(path)
    return ExportedModel(path, metadata, _graph(path, metadata.format, device))


class ExportedModel:
    """`predict(images)` gives what `Task.predict` gives for the task the file was exported from."""

    def __init__(self, path: Path, metadata: ExportMetadata, graph: Graph) -> None:
        self.path = path
        self.metadata = metadata
        self._graph = graph

    @property
    def task(self) -> str:
        """The name of the task the file was exported from."""
        return self.metadata.task

    @property
    def class_names(self) -> list[str] | None:
        """Class names, index order (None for tasks without classes)."""
        return self.metadata.class_names

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """The graph on `inputs` as it takes them (see `metadata.input_name`): its outputs by name."""
        return dict(zip(self.metadata.output_names, self._graph(inputs), strict=True))

    def predict(self, images: Any, *, batch_size: int = 64) -> list[Any]:
        """Predictions for image files or a folder of them, one HxWxC array or a batch NxHxWxC: one result per image,
        at its own size, as `Task.predict` gives them."""
        meta = self.metadata
        if meta.input_name == "codes":
            raise ConfigError(f"{self.path}: the autoencoder's decode part takes codes: use decode_codes(codes)")
        decode = DECODERS.get(meta.task)
        if decode is None:
            raise ConfigError(f"{self.path}: no decoder for task {meta.task!r}; run(inputs) gives the raw outputs")
        batch_size = 1 if meta.input_name == "image" else whole_number("batch_size", batch_size)
        items = as_image_list(images, meta.in_chans)
        results: list[Any] = []
        for start in range(0, len(items), batch_size):
            arrays = [self._image(item, start + i) for i, item in enumerate(items[start : start + batch_size])]
            inputs = np.stack([self._preprocessed(array) for array in arrays])
            outputs = self.run(inputs[0] if meta.input_name == "image" else inputs)
            results += decode(outputs, [array.shape[:2] for array in arrays], meta)
        return results

    def decode_codes(self, codes: np.ndarray) -> list[np.ndarray]:
        """Images (HxWxC uint8, at the task's image size) decoded from latent codes (N, latent_dim): the autoencoder's
        decode part."""
        meta = self.metadata
        if meta.input_name != "codes":
            raise ConfigError(f"{self.path}: decode_codes needs the autoencoder's decode part (export part='decode')")
        codes = np.asarray(codes, dtype=np.float32)
        side = meta.config["image_size"]
        return DECODERS["autoencoder"](self.run(codes), [(side, side)] * len(codes), meta)

    def verify(self, pairs: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
        """Siamese: whether each pair `(a, b)` shows one class, `{"same", "score"}`, at the threshold fit chose."""
        if self.metadata.task != "siamese":
            raise ConfigError(f"{self.path}: verify() is for siamese models, not {self.metadata.task}")
        first = np.stack(self.predict([a for a, _ in pairs]))
        second = np.stack(self.predict([b for _, b in pairs]))
        cut = self.metadata.config.get("threshold")
        cut = 0.5 if cut is None else cut
        return [{"same": bool(s >= cut), "score": float(s)} for s in (first * second).sum(axis=1)]

    def _image(self, item: Any, index: int) -> np.ndarray:
        channels = self.metadata.in_chans
        if isinstance(item, (str, Path)):
            return read_image(item, channels)
        return as_image(item, f"images[{index}]", channels=channels)

    def _preprocessed(self, image: np.ndarray) -> np.ndarray:
        # As the task's eval pipeline: albumentations' Resize (OpenCV, bilinear), then channels first.
        if self.metadata.resize is not None:
            import albumentations as A

            height, width = self.metadata.resize
            image = A.Resize(height, width)(image=image)["image"]
            image = image[:, :, None] if image.ndim == 2 else image
        return np.ascontiguousarray(image.transpose(2, 0, 1))


def _graph(path: Path, file_format: str, device: str) -> Graph:
    if format_of(path) != file_format:
        raise DataError(f"{path}: its record says {file_format}, its name {format_of(path)}; rename it")
    if file_format == "onnx":
        try:
            import onnxruntime
        except ImportError as error:
            raise ConfigError('ONNX files run on onnxruntime: pip install "visionheads[export]"') from error
        available = onnxruntime.get_available_providers()
        cuda = "CUDAExecutionProvider" in available and device != "cpu"
        if device == "cuda" and not cuda:
            raise ConfigError(f"device='cuda' but this onnxruntime has no CUDA provider (it has {available})")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: R-CNN's graphs warn of empty shapes where no box is left
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        name = session.get_inputs()[0].name
        return lambda inputs: session.run(None, {name: inputs})
    import torch

    target = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    if file_format == "torchscript":
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice: TorchScript files still load and run
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=target)
    else:
        module = torch.export.load(str(path)).module().to(target)

    def run(inputs: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            outputs = module(torch.from_numpy(inputs).to(target))
        return [output.float().cpu().numpy() if output.is_floating_point() else output.cpu().numpy()
                for output in outputs]  # fmt: skip

    return run
