"""Weights metadata (apart from the architecture) and safe loading of local weight files."""

from __future__ import annotations

import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from visionheads.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NEUTRAL_MEAN = (0.5, 0.5, 0.5)
NEUTRAL_STD = (0.5, 0.5, 0.5)
TASK_BODY_PREFIX = "model.body.body."  # a task's state dict: Task.model (HeadOnBody) -> .body (Backbone) -> .body


@dataclass(frozen=True)
class WeightsInfo:
    """Where a pretrained tag comes from and how its inputs were normalised."""

    tag: str
    source: str  # e.g. "hf-hub:timm/resnet18.a1_in1k" or a download URL
    license: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a .safetensors or torch file without unpickling arbitrary objects."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} does not exist; pass an existing .pt/.pth/.safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path), device="cpu")
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's weights_only refusal; its advice to disable that is not ours
        raise ConfigError(
            f"cannot read weights file {str(path)!r}: it holds Python objects besides tensors, which are never "
            "unpickled here (they can run code). Save model.state_dict() with torch.save, or use a .safetensors file"
        ) from error
    except Exception as error:  # torch and safetensors raise many types for a bad file
        reason = str(error).splitlines()[0][:200]
        raise ConfigError(
            f"cannot read weights file {str(path)!r} ({type(error).__name__}: {reason}); it must be a state dict "
            "saved with torch.save (tensors only) or a .safetensors file"
        ) from error
    return _unwrap_state_dict(checkpoint, path)


def _unwrap_state_dict(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    # Training scripts nest the weights under a key and DataParallel prefixes "module."; accept both.
    if isinstance(checkpoint, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ConfigError(f"weights file {str(path)!r} holds no state dict (a mapping of names to tensors)")
    if any(k.startswith(TASK_BODY_PREFIX) for k in checkpoint):  # a saved visionheads task: its body alone
        return {k.removeprefix(TASK_BODY_PREFIX): v for k, v in checkpoint.items() if k.startswith(TASK_BODY_PREFIX)}
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def weights_cached(info: WeightsInfo | None) -> bool:
    """Whether the published weights `info` names are already on this machine (never raises, never downloads)."""
    if info is None:
        return False
    if info.source.startswith("hf-hub:"):
        from huggingface_hub import try_to_load_from_cache

        repo = info.source.removeprefix("hf-hub:")
        try:
            return any(
                isinstance(try_to_load_from_cache(repo, filename), str)
                for filename in ("model.safetensors", "pytorch_model.bin")
            )
        except (OSError, ValueError):  # a malformed repo id (HFValidationError) or an unreadable cache: not cached
            return False
    # A URL: torchvision and timm keep what they download in torch hub's checkpoints folder under its file name.
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(info.source).path).name).is_file()


def weights_host(info: WeightsInfo) -> str:
    """The host a download of `info` goes to."""
    if info.source.startswith("hf-hub:"):
        return "huggingface.co"
    return urlparse(info.source).hostname or info.source


def ensure_download_possible(host: str, what: str, cached: bool, local_hint: str) -> None:
    """Fail at once, with a way out, when `what` must be downloaded from `host` and cannot be."""
    if cached:
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("VISIONHEADS_OFFLINE")
    if not offline and _reachable(host):
        return
    raise ConfigError(
        f"{what} must be downloaded from {host}, which cannot be reached from here"
        f"{' (offline mode is set)' if offline else ''}. Download the file on a machine with internet access "
        f"and pass its path instead: {local_hint}"
    )


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
