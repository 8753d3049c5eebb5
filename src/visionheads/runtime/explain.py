"""Seeing inside a model: class activation maps (through the `grad-cam` package), a body's stage maps, its first
convolution. Works on modules, not on tasks: `Task.explain`, `Task.feature_maps` and `Task.plot_filters` use it.
"""

from __future__ import annotations

import difflib
import importlib
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from visionheads.errors import ConfigError

# method name -> its class in pytorch_grad_cam. Left out: FullGrad (explains every bias, not a stage), AblationCAM
# (swaps the target layer for its own module), RandomCAM (a baseline), and methods for transformers.
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "gradcam-elementwise": "GradCAMElementWise",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
}
INSTALL = 'explain() needs the grad-cam package: pip install "visionheads[explain]"'

Target = Callable[[torch.Tensor], torch.Tensor]  # one image's model outputs -> the scalar its heatmap explains


def cam_type(method: str) -> type:
    """The pytorch_grad_cam class of `method`; a ConfigError for unknown names or when grad-cam is missing."""
    if method not in CAM_METHODS:
        close = difflib.get_close_matches(str(method), list(CAM_METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown explain method {method!r}{hint} (methods: {', '.join(CAM_METHODS)})")
    try:
        package = importlib.import_module("pytorch_grad_cam")
    except ImportError as error:
        raise ConfigError(INSTALL) from error
    return getattr(package, CAM_METHODS[method])


def stage_index(stage: int, count: int) -> int:
    """`stage` (negative counts from the deepest) as an index into `count` stages, or a ConfigError."""
    if isinstance(stage, bool) or not isinstance(stage, (int, np.integer)) or not -count <= stage < count:
        raise ConfigError(f"stage={stage!r}: the body has {count} stages, so use 0..{count - 1} or -1..-{count}")
    return int(stage) % count


def class_activation_maps(
    model: nn.Module,
    body: nn.Module,
    stage: int,
    stride: int,
    images: torch.Tensor,
    targets: list[Target],
    method: str,
    sizes: list[tuple[int, int]],
) -> list[np.ndarray]:
    """Heatmaps of `targets` at `body`'s stage `stage` (of `stride`) by `method`, one per image at its original
    (height, width).

    images: float normalised, shape (B, C, S, S): the images resized to S x S, on the model's device; `model(images)`
    must run `body`. Returns: float32 (height, width) maps in [0, 1], each scaled to its own maximum.
    """
    cam_class = cam_type(method)
    grid = cell_grid(body, stage, stride, tuple(images.shape[1:]))
    with _tapped(body, stage) as tap, _frozen(model), torch.enable_grad():
        # Gradients flow to the stage's maps through the input, not into the weights' .grad
        inputs = images.detach().clone().requires_grad_(True)
        cam = cam_class(model=_Outputs(model), target_layers=[tap])
        # The maps at the stage's own resolution, placed on each image below where its cells look (see cell_grid)
        cam.get_target_width_height = lambda tensor: None
        if method == "scorecam":
            cam.batch_size = 64  # masked copies of the image per forward pass (its default, 16, is slower on CPU)
        try:
            maps = cam(input_tensor=inputs, targets=targets)  # (B, h, w) in [0, 1]
        finally:
            cam.activations_and_grads.release()  # not `with cam`: its __exit__ swallows IndexError
    side = tuple(images.shape[-2:])
    return [
        _place(np.asarray(heatmap, np.float32), side, size, grid) for heatmap, size in zip(maps, sizes, strict=True)
    ]


Grid = tuple[tuple[float, float], tuple[float, float]]  # per axis (y, x): input pixel of cell 0's centre, cell spacing
_GRIDS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Grid]] = weakref.WeakKeyDictionary()


def cell_grid(body: nn.Module, stage: int, stride: int, shape: tuple[int, ...]) -> Grid:
    """Where the cells of `body`'s stage `stage` (cells `stride` pixels apart) look in an input of `shape` (C, H, W):
    per axis, the input pixel at the centre of cell 0's receptive field, and the spacing; measured once per body.

    The half-pixel convention of image resizing (cell i at stride * (i + 0.5) - 0.5, which grad-cam's cv2.resize
    assumes) holds for bodies that pool 2x2 (VGG, LeNet); "same"-padded strided convolutions (ResNet, simple_cnn)
    centre cell i at stride * i, (stride - 1) / 2 pixels up and left of that: 15.5 px at a ResNet's last stage. So the
    centre of a middle cell is measured: the middle of its receptive field, read off the gradient.
    """
    key = (stage, stride, *shape)
    known = _GRIDS.setdefault(body, {})
    if key not in known:
        training = body.training
        body.eval()  # BatchNorm in training mode would make every cell depend on every pixel
        try:
            known[key] = _measured_grid(body, stage, stride, shape)
        finally:
            body.train(training)
    return known[key]


def _measured_grid(body: nn.Module, stage: int, stride: int, shape: tuple[int, ...]) -> Grid:
    channels, height, width = shape
    device = next(body.parameters()).device
    generator = torch.Generator().manual_seed(0)
    for scale in (1, 2):  # a receptive field wider than the input is cut off by its edges: measure on a larger one
        size = (height * scale, width * scale)
        inputs = torch.randn(1, channels, *size, generator=generator).to(device).requires_grad_(True)
        with _frozen(body), torch.enable_grad():
            maps = body(inputs)[stage]  # (1, C, h, w)
            i, j = maps.shape[-2] // 2, maps.shape[-1] // 2
            (gradient,) = torch.autograd.grad(maps[0, :, i, j].sum(), inputs)
        seen = gradient[0].abs().sum(dim=0) > 0  # (H, W): the pixels that cell (i, j) depends on
        ys, xs = torch.nonzero(seen.any(dim=1)).flatten(), torch.nonzero(seen.any(dim=0)).flatten()
        if len(ys) and ys[0] > 0 and ys[-1] < size[0] - 1 and xs[0] > 0 and xs[-1] < size[1] - 1:
            return (float(ys[0] + ys[-1]) / 2 - i * stride, stride), (float(xs[0] + xs[-1]) / 2 - j * stride, stride)
    # Not measurable (no gradient, a field wider than twice the input): the half-pixel convention
    return ((stride - 1) / 2, stride), ((stride - 1) / 2, stride)


def _place(heatmap: np.ndarray, side: tuple[int, int], size: tuple[int, int], grid: Grid) -> np.ndarray:
    """A (h, w) map of cells onto an image of `size` (height, width) that the body saw resized to `side`: bilinear
    between cell centres, the edge cells' values beyond them. Convex weights, so the map stays in [0, 1]."""
    weights = []
    for cells, resized, original, (first, spacing) in zip(heatmap.shape, side, size, grid, strict=True):
        pixels = (np.arange(original) + 0.5) * resized / original - 0.5  # original pixel -> resized pixel (cv2's)
        position = (pixels - first) / spacing  # -> fractional cell index
        weights.append(np.stack([np.interp(position, np.arange(cells), row) for row in np.eye(cells)], axis=1))
    rows, columns = weights  # (H, h), (W, w)
    return np.clip(rows @ heatmap @ columns.T, 0.0, 1.0).astype(np.float32)


def first_conv(module: nn.Module) -> nn.Conv2d:
    """The first 2-D convolution of `module` in registration order (the stem of the bodies we build)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return layer
    raise ConfigError(f"{type(module).__name__} has no Conv2d layer whose kernels could be shown")


class _Outputs(nn.Module):
    """The model as pytorch_grad_cam calls it: images in, outputs out (it needs a Module with parameters)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> Any:
        return self.model(images)


@contextmanager
def _tapped(body: nn.Module, stage: int) -> Iterator[nn.Module]:
    # Bodies return a list of stage maps, so no single submodule outputs stage k for every body (timm, torchvision
    # and our own differ). An Identity applied to that map after the body runs is one: its hooks see the map.
    tap = nn.Identity()

    def hook(module: nn.Module, inputs: Any, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = list(outputs)
        outputs[stage] = tap(outputs[stage])
        return outputs

    handle = body.register_forward_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        model.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
