"""task.export: one part of a task as an ONNX, TorchScript or ExportedProgram file that carries everything using it
needs (deploy/metadata.py). The graph takes uint8 images and normalises them itself, and returns the task's
outputs by name; `visionheads.deploy.load_exported` decodes them as `Task.predict` does.

ONNX goes through torch's dynamo exporter (torch.export, then ONNX), except for graphs whose control flow depends
on the data (R-CNN's proposals and NMS), which the TorchScript-based exporter traces with their image size left
free; TorchScript files are traced; ExportedProgram files are torch.export's own.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from visionheads._atomic import write_atomically
from visionheads.data.transforms import image_hw
from visionheads.deploy.metadata import EXTRA_FILE, FORMATS, KEY, ExportMetadata
from visionheads.errors import ConfigError, one_of

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask


@dataclass
class ExportGraph:
    """What one part of a task exports: the module, an example input, its name, the axes that may vary, the output
    names, and whether its control flow depends on the data (then only ONNX and TorchScript hold it)."""

    module: nn.Module
    example: torch.Tensor
    input_name: str  # "images" (B, C, H, W) uint8, "image" (C, H, W) uint8 or "codes" (B, L) float32
    dynamic_axes: tuple[int, ...]
    output_names: tuple[str, ...]
    data_dependent: bool = False
    traceable: bool = True  # torch.jit.trace follows it (SegNet's unpooling checks tensors, which tracing cannot)


class ImagesGraph(nn.Module):
    """uint8 images, normalised as the task normalises them, to the task's named outputs of `part` (in `names`
    order). `batched=False`: one (C, H, W) image, as R-CNN takes images of any size one by one."""

    def __init__(
        self, task: RunnableTask, outputs: Callable[[dict[str, Any]], dict[str, torch.Tensor]], *, batched: bool
    ) -> None:
        super().__init__()
        self.task = task
        self.outputs = outputs
        self.batched = batched

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """images: uint8, (B, C, H, W) (or (C, H, W) unbatched). Returns: the task's outputs."""
        inputs = self.task.model_inputs(images if self.batched else [images])
        dtype = next(self.task.parameters()).dtype  # float16 in a half export: the inputs follow the weights
        if dtype != torch.float32:
            inputs = inputs.to(dtype) if self.batched else [image.to(dtype) for image in inputs]
        return tuple(self.outputs({"image": inputs}).values())


def images_graph(
    task: RunnableTask, outputs: Callable[[dict[str, Any]], dict[str, torch.Tensor]], *, batched: bool = True
) -> ExportGraph:
    """An ExportGraph of uint8 images at the task's image size (two, so that BatchNorm-free checks see a batch)."""
    height, width = image_hw(task.config.image_size)
    shape = (2, task.config.in_chans, height, width) if batched else (task.config.in_chans, height, width)
    example = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    module = ImagesGraph(task, outputs, batched=batched).eval()
    with torch.no_grad():
        names = tuple(outputs({"image": task.model_inputs(example if batched else [example])}))
    axes = (0, 2, 3) if batched else (1, 2)
    return ExportGraph(module, example, "images" if batched else "image", axes, names, data_dependent=not batched)


def export_task(
    task: RunnableTask,
    path: str | Path,
    *,
    format: str = "onnx",
    part: str | None = None,
    dynamic: bool = True,
    opset: int | None = None,
    half: bool = False,
) -> Path:
    """Write `part` of `task` (default its first) to `path` in `format`; see Task.export."""
    one_of("format", format, tuple(FORMATS))
    part = part or task.export_parts[0]
    one_of("part", part, task.export_parts)
    path = Path(path).expanduser()
    if not path.name.endswith(FORMATS[format]):
        raise ConfigError(f"{path}: {format} files are named *{FORMATS[format]}; name it so")
    if half and not torch.cuda.is_available():
        raise ConfigError("half=True exports float16 for CUDA, and this machine has no CUDA device; export float32")
    device = torch.device("cuda" if half else "cpu")
    task.to(device).eval()
    graph = task.export_graph(part)
    if graph.data_dependent and format == "exported-program":
        raise ConfigError(
            f"the {task.name} task's {part!r} graph has control flow that depends on the data (R-CNN's proposals and "
            "NMS), which torch.export cannot hold; export it as onnx or torchscript"
        )
    if not graph.traceable and format == "torchscript":
        raise ConfigError(
            f"the {task.name} task's {part!r} graph ({task.config.head}) cannot be traced to TorchScript; export it as "
            "onnx or exported-program"
        )
    module, example = graph.module.to(device), graph.example.to(device)
    if half:
        module = _Half(module)
        if example.is_floating_point():
            example = example.half()
    names = list(task.config.class_names) if task.config.class_names is not None else None
    metadata = ExportMetadata(
        task=task.name, part=part, format=format, input_name=graph.input_name, output_names=list(graph.output_names),
        in_chans=task.config.in_chans, resize=list(image_hw(task.config.image_size)) if task.fixed_input_size else None,
        dynamic=dynamic, mean=list(task.config.mean), std=list(task.config.std), class_names=names,
        config=task.config.arguments(),
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporters(), torch.no_grad():
        if format == "onnx":
            _onnx(module, example, graph, path, metadata, dynamic=dynamic, opset=opset)
        elif format == "torchscript":
            traced = torch.jit.trace(module, (example,), check_trace=False)
            files = {EXTRA_FILE: metadata.to_json()}
            write_atomically(path, lambda file: torch.jit.save(traced, file, _extra_files=files))
        else:
            program = torch.export.export(module, (example,), dynamic_shapes=_shapes(graph, dynamic), strict=False)
            files = {EXTRA_FILE: metadata.to_json()}
            write_atomically(path, lambda file: torch.export.save(program, file, extra_files=files))
    return path


def _shapes(graph: ExportGraph, dynamic: bool) -> tuple[dict[int, Any], ...] | None:
    # AUTO lets torch.export find what each axis may be (a U-Net's size: a multiple of its deepest stride).
    return ({axis: torch.export.Dim.AUTO for axis in graph.dynamic_axes},) if dynamic else None


def _onnx(
    module: nn.Module, example: torch.Tensor, graph: ExportGraph, path: Path, metadata: ExportMetadata, **options: Any
) -> None:
    import onnx

    dynamic, opset = options["dynamic"], options["opset"]
    temporary = path.with_name(f".{path.name}.export")
    try:
        if graph.data_dependent:  # TorchScript-based: it traces R-CNN's loops with the image size left free
            axes = {graph.input_name: list(graph.dynamic_axes)} if dynamic else None
            torch.onnx.export(module, (example,), str(temporary), dynamo=False, opset_version=opset or 17,
                              input_names=[graph.input_name], output_names=list(graph.output_names),
                              dynamic_axes=axes)  # fmt: skip
        else:
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                        input_names=[graph.input_name], output_names=list(graph.output_names),
                                        dynamic_shapes=_shapes(graph, dynamic), verbose=False)  # fmt: skip
            program.save(str(temporary))
        model = onnx.load(str(temporary))
        model.metadata_props.add(key=KEY, value=metadata.to_json())
        write_atomically(path, lambda file: file.write(model.SerializeToString()))
    finally:
        temporary.unlink(missing_ok=True)


class _Half(nn.Module):
    """A module in float16 (CUDA), its outputs back in float32 for decoding."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.half()

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(o.float() if o.is_floating_point() else o for o in self.module(inputs))


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    # The exporters' progress lines and warnings about tracing go to the log, not the console: a failed export
    # raises anyway, and the parity tests are what tells a faithful file.
    import logging

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(_Sink()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


class _Sink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def export_parity(
    task: RunnableTask, path: str | Path, *, part: str | None = None, device: str = "cpu"
) -> dict[str, float]:
    """The largest absolute difference, per output, between an exported file under its own runtime and the eager
    graph it was exported from, over batches of 1 and 3 at two image sizes (one, the example's, when the file was
    exported static). R-CNN graphs take one image at a time: its boxes, scores and labels at two sizes; a count of
    detections that differs is an infinite difference."""
    from visionheads.deploy import load_exported

    exported = load_exported(path, device=device)
    part = part or exported.metadata.part
    task.to(torch.device(device)).eval()
    graph = task.export_graph(part)
    example = graph.example
    generator = torch.Generator().manual_seed(1)
    cases = []
    for size_step in (0, 1) if graph.dynamic_axes[-1] != 0 else (0,):  # a second size where the size may vary
        for count in (1, 3):
            if graph.input_name == "codes":
                cases.append(torch.randn(count, example.shape[1], generator=generator))
            elif graph.input_name == "image":  # one image; two sizes, taller and wider than the example
                height, width = (60, 90) if size_step == 0 else (100, 70)
                cases.append(torch.randint(0, 256, (example.shape[0], height, width), generator=generator,
                                           dtype=torch.uint8))  # fmt: skip
                break
            else:
                side = example.shape[-1] * (1 + size_step)  # twice the size: a multiple of every stride still
                cases.append(torch.randint(0, 256, (count, example.shape[1], side, side), generator=generator,
                                           dtype=torch.uint8))  # fmt: skip
    if not exported.metadata.dynamic:
        cases = [example]
    worst: dict[str, float] = dict.fromkeys(graph.output_names, 0.0)
    with torch.no_grad():
        for inputs in cases:
            outputs = graph.module(inputs.to(device))
            eager = [o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in outputs]
            ran = exported.run(inputs.numpy())
            for name, b in zip(graph.output_names, eager, strict=True):
                a = ran[name]
                difference = float("inf") if a.shape != b.shape else (
                    float(abs(a.astype("float64") - b.astype("float64")).max()) if a.size else 0.0)  # fmt: skip
                worst[name] = max(worst[name], difference)
    return worst
