"""The single-file task checkpoint: plain-data config plus tensors, written atomically, read without pickle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from visionheads.errors import ConfigError

FORMAT = "visionheads-task"
VERSION = 1


def write_checkpoint(path: str | Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Path:
    """Write config and weights to `path` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "config": config, "state_dict": state_dict}
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(temporary, path)  # readers see the old file or the new one, never half of one
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Config and weights of a checkpoint written by `write_checkpoint`; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a foreign or corrupt file raises many types inside torch.load
        raise ConfigError(
            f"{path}: not a readable visionheads checkpoint ({type(error).__name__}: {str(error)[:200]}); "
            "only files written by Task.save (or fit's best.pt/last.pt) load safely"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a visionheads checkpoint (written by Task.save)")
    if payload.get("version", 0) > VERSION:
        raise ConfigError(f"{path}: checkpoint version {payload['version']} is newer than this visionheads")
    return payload["config"], payload["state_dict"]


def task_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that rebuild a task from its saved `config` (Task(config["task"], **these))."""
    keys = ("backbone", "head", "in_chans", "image_size", "num_classes", "class_names", "seed", "mean", "std")
    return {**{key: config[key] for key in keys}, **config["options"]}
