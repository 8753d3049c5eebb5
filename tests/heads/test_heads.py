"""Every head of every task's registry on its own: built from a body's channel widths and strides alone, fed random
stage maps of those widths, its outputs shaped as its docstring says, and a gradient for every parameter. Heads
whose input is more than stage maps (SegNet's pooling indices, R-CNN's images) are walked through their models in
the task suites; a test keeps the two lists covering the registry between them."""

from __future__ import annotations

import pytest
import torch

import visionheads as vh
from visionheads import _names
from visionheads.heads import (
    AutoencoderHead,
    DeepLabV3PlusHead,
    FPNHead,
    PooledHead,
    SegNetLiteHead,
    UnetHead,
    VAEHead,
)

NOT_ON_MAPS = {("segmentation", "segnet"), ("detection", "faster_rcnn"), ("detection", "mask_rcnn")}
ON_MAPS = sorted(
    (task, head) for task in _names.TASK_HEADS for head in vh.list_heads(task)[task] if (task, head) not in NOT_ON_MAPS
)
BODIES = ["lenet5", "simple_cnn", "resnet18", "vgg11_bn"]  # 2 to 6 stage maps, first strides 1 to 4
SIDE, OUT = 64, 3


def _maps(body: vh.backbones.Backbone) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(2, width, SIDE // stride, SIDE // stride, generator=generator, requires_grad=True)
        for width, stride in zip(body.channels, body.strides, strict=True)
    ]


def test_the_two_lists_cover_every_head_of_the_registry():
    registry = {(task, head) for task in _names.TASK_HEADS for head in vh.list_heads(task)[task]}
    assert NOT_ON_MAPS <= registry
    assert set(ON_MAPS) | NOT_ON_MAPS == registry


@pytest.mark.parametrize("body_name", BODIES)
@pytest.mark.parametrize(("task", "head_name"), ON_MAPS)
def test_every_head_on_stage_maps_gives_its_shapes_and_trains(task, head_name, body_name, bodies):
    body = bodies(body_name)
    torch.manual_seed(0)
    head = vh.task_class(task).heads[head_name](body.channels, body.strides, OUT)
    maps = _maps(body)
    outputs = head(maps)
    if isinstance(head, PooledHead):
        assert outputs.shape == (2, OUT)
        head.eval()  # no dropout: the two halves give forward's outputs exactly
        torch.testing.assert_close(head.classifier(head.pooled(maps)), head(maps))
        head.train()
    elif isinstance(head, (UnetHead, SegNetLiteHead, FPNHead, DeepLabV3PlusHead)):
        size = maps[0].shape[-1] * body.strides[0]  # the finest map times its stride: the input's size
        assert outputs.shape == (2, OUT, size, size)
    elif isinstance(head, VAEHead):
        logits, mean, log_variance = outputs
        assert logits.shape[:2] == (2, OUT) and mean.shape == log_variance.shape == (2, head.mean.out_features)
    else:
        assert isinstance(head, AutoencoderHead), f"{task}/{head_name}: a head this test does not know"
        assert outputs.shape[:2] == (2, OUT) and head.encode(maps).shape == (2, head.bottleneck.out_features)
    total = sum(o.float().sum() for o in (outputs if isinstance(outputs, tuple) else (outputs,)))
    assert torch.isfinite(total)
    total.backward()
    without = [name for name, p in head.named_parameters() if p.grad is None]
    assert not without, f"parameters without a gradient: {without[:5]}"
    assert maps[-1].grad is not None and torch.isfinite(maps[-1].grad).all()  # the deepest map is read


@pytest.mark.parametrize("body_name", ["lenet5", "resnet18"])  # the finest stage at input size / below it
def test_unet_decoder_channels_set_each_blocks_width_deep_to_fine(body_name, bodies):
    body = bodies(body_name)
    mirrored = UnetHead(body.channels, body.strides, OUT)
    blocks = len(body.channels) - 1 + (body.strides[0] > 1)
    asked = [8 * (blocks - i) for i in range(blocks)]  # e.g. 40, 32, 24, 16, 8: none of them a mirrored width
    head = UnetHead(body.channels, body.strides, OUT, decoder_channels=asked)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [bn.num_features for bn in convs][1::2] == asked  # two conv-BN-ReLU per block, the second one's width
    assert head.classifier.in_channels == asked[-1] != mirrored.classifier.in_channels
    assert head(_maps(body)).shape == mirrored(_maps(body)).shape


def test_unet_decoder_channels_of_the_wrong_length_name_what_the_body_needs():
    with pytest.raises(vh.ConfigError, match=r"decoder_channels=\[64, 32\]: this body needs 5 positive widths"):
        vh.Task("segmentation", backbone="resnet18", num_classes=3, decoder_channels=[64, 32])
