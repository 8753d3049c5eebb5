"""The names of the built-in tasks, heads, backbones and datasets, as plain data.

`visionheads list` prints these without importing torch (the registries fill only when their modules import them).
tests/cli/test_cli_reliability.py checks that they equal what the registries report, so the two cannot drift apart.
"""

from __future__ import annotations

# task -> its heads, both sorted
TASK_HEADS: dict[str, tuple[str, ...]] = {
    "autoencoder": ("conv", "denoising", "vae"),
    "classification": ("linear", "mlp"),
    "detection": ("faster_rcnn", "mask_rcnn"),
    "regression": ("angle", "linear", "mlp"),
    "segmentation": ("deeplabv3plus", "fpn", "segnet", "segnet_lite", "unet"),
    "siamese": ("embedding",),
}

BACKBONES: tuple[str, ...] = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "inception_v3",
    "lenet5",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "resnet18",
    "resnet34",
    "resnet50",
    "simple_cnn",
    "vgg11_bn",
    "vgg16_bn",
    "xception41",
)

DATASETS: tuple[str, ...] = ("coco", "digits", "mnist", "rotated-digits", "shapes", "yolo")
