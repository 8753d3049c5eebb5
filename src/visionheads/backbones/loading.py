"""Loading a user's weights file into a built body: every tensor accounted for, or a ConfigError that lists them.

A file fits when each tensor of the body is in it under the body's name and shape. Names are matched loosely where
upstream files need it: timm's feature wrappers write `features_0.weight` where the whole network says
`features.0.weight`, and a Backbone's own state dict and torchvision extractors add `body.` and `extractor.`. A stem
trained on 3 channels is adapted to the body's channels as timm adapts its own weights. Tensors that only the whole
network has (its classifier; `network_keys`) are skipped without a word; anything else unmatched is an error unless
`strict=False`, which loads what fits and says what it left at random.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path

import torch
from torch import nn

from visionheads.errors import ConfigError

SHOWN_NAMES = 5
_WRAPPER_PREFIXES = ("body.", "extractor.")  # a Backbone's own state dict; torchvision extractors


def load_weights_file(
    body: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    source: str | Path,
    what: str,
    strict: bool = True,
    network_keys: Collection[str] = (),
) -> int:
    """Copy the tensors of `state_dict` into `body`; ConfigError listing what does not fit. Returns how many loaded."""
    expected = body.state_dict()
    stem = next((key for key, value in expected.items() if value.ndim == 4), None)
    by_name = _match_names(state_dict, expected)
    skipped = {_normal(key) for key in network_keys}
    unexpected = [key for key in state_dict if key not in by_name.values() and _normal(key) not in skipped]
    usable, wrong_shape = {}, []
    for key, file_key in by_name.items():
        tensor = state_dict[file_key]
        if key == stem:
            tensor = _adapted_stem(tensor, expected[key])
        if tensor.shape == expected[key].shape:
            usable[key] = tensor
        else:
            wrong_shape.append(f"{key} {tuple(state_dict[file_key].shape)} vs {tuple(expected[key].shape)}")
    counted = [key for key in expected if not key.endswith("num_batches_tracked")]  # BatchNorm's counters: optional
    missing = [key for key in counted if key not in usable]
    loaded = len(counted) - len(missing)
    problems = _describe(missing, unexpected, wrong_shape)
    if problems and (strict or not usable):
        advice = (
            f"pass strict=False to load the {loaded} that fit and keep the rest random"
            if usable and strict
            else "nothing in it fits"
        )
        raise ConfigError(
            f"weights file {str(source)!r} does not fit {what}: {problems}. Give weights of the same architecture "
            f"(saved from it, or timm's/torchvision's for it), or {advice}"
        )
    body.load_state_dict(usable, strict=False)
    if problems:
        print(
            f"weights file {str(source)!r}: loaded {loaded} of {len(counted)} tensors of {what} (strict=False); "
            f"{problems}",
            file=sys.stderr,
        )
    return loaded


def _normal(key: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        key = key.removeprefix(prefix)
    return key.replace("_", ".")


def _match_names(state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, str]:
    """The file's key for each body key that has one: the same name, or the same after `_normal`."""
    normal_to_body: dict[str, str | None] = {}
    for key in expected:
        normal = _normal(key)
        normal_to_body[normal] = None if normal in normal_to_body else key  # two bodies keys alike: exact only
    matched = {}
    for file_key in state_dict:
        body_key = file_key if file_key in expected else normal_to_body.get(_normal(file_key))
        if body_key is not None and body_key not in matched:
            matched[body_key] = file_key
    return matched


def _adapted_stem(tensor: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # RGB weights given to a grey (or 4-band) body: the stem summed or repeated, as timm adapts its own weights.
    same_kernels = tensor.ndim == 4 and tensor.shape[0] == target.shape[0] and tensor.shape[2:] == target.shape[2:]
    if not same_kernels or tensor.shape[1] == target.shape[1]:
        return tensor
    from timm.models import adapt_input_conv

    try:
        return adapt_input_conv(int(target.shape[1]), tensor)
    except NotImplementedError:  # no rule for these channel counts: reported as a shape mismatch
        return tensor


def _describe(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) of the body are not in the file ({_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) in the file are not in the body ({_names(unexpected)})")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} have another shape ({_names(wrong_shape)})")
    return "; ".join(parts)


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_NAMES])
    return shown + (f", ... +{len(keys) - SHOWN_NAMES} more" if len(keys) > SHOWN_NAMES else "")
