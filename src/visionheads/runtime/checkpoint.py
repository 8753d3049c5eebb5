"""The task checkpoint file: Lightning's layout (state_dict + hyper_parameters) plus a `visionheads` record.

One layout serves `Task.save`, the run folder's best.pt/last.pt and Lightning's last.ckpt, so `vh.Task.load` and
`TaskModule.load_from_checkpoint` read any of them. Files are read with `weights_only=True`: data, never code.
Version 1 files (visionheads 0.1's `Task.save`) still load; their weights are renamed to today's module layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from visionheads._atomic import write_atomically
from visionheads.errors import ConfigError

FORMAT = "visionheads-task"
VERSION = 2
META_KEY = "visionheads"  # our record inside the checkpoint dict
ARGUMENTS_KEY = "hyper_parameters"  # LightningModule.CHECKPOINT_HYPER_PARAMS_KEY: what load_from_checkpoint reads


@dataclass
class SavedTask:
    """What a checkpoint file holds: the task's name and arguments, its weights, and the epoch they are from."""

    task: str
    arguments: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    epoch: int | None
    version: int


def meta(task: str, epoch: int | None) -> dict[str, Any]:
    """The `visionheads` record of a checkpoint."""
    return {"format": FORMAT, "version": VERSION, "task": task, "epoch": epoch}


def write_task_file(path: str | Path, *, task: str, arguments: dict[str, Any], state_dict: dict) -> Path:
    """Write a task's arguments and weights to `path` (atomically), in the layout Lightning's loaders read."""
    payload = {
        META_KEY: meta(task, None),
        ARGUMENTS_KEY: {"name": task, **arguments},
        "state_dict": state_dict,
        "pytorch-lightning_version": L.__version__,
    }
    return write_atomically(path, lambda file: torch.save(payload, file))


def record_arguments(path: Path, arguments: dict[str, Any]) -> None:
    """Replace the task arguments a checkpoint file holds (atomically); its weights and training state stay."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload[ARGUMENTS_KEY] = {"name": payload[ARGUMENTS_KEY].get("name"), **arguments}
    write_atomically(path, lambda file: torch.save(payload, file))


def read_task_file(path: str | Path) -> SavedTask:
    """The task in a checkpoint written by Task.save or by fit (best.pt, last.pt, last.ckpt), or a ConfigError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a foreign or corrupt file raises many types inside torch.load
        raise ConfigError(
            f"{path}: not a readable visionheads checkpoint ({type(error).__name__}); only files written by "
            "Task.save or by fit (best.pt, last.pt, last.ckpt) load safely"
        ) from error
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: not a visionheads checkpoint (written by Task.save or fit)")
    if payload.get("format") == FORMAT and payload.get("version") == 1:
        return _version_1(payload)
    record = payload.get(META_KEY)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a visionheads checkpoint (written by Task.save or fit)")
    if int(record.get("version", 0)) > VERSION:
        raise ConfigError(
            f"{path}: checkpoint format {record['version']} is newer than this visionheads reads ({VERSION}); "
            "upgrade visionheads"
        )
    arguments = dict(payload[ARGUMENTS_KEY])
    arguments.pop("name", None)
    return SavedTask(record["task"], arguments, payload["state_dict"], record.get("epoch"), int(record["version"]))


def _version_1(payload: dict[str, Any]) -> SavedTask:
    # v1 held {"config": {..., "options": {...}}, "state_dict"} with the body under "backbone." and the head
    # under "head."; its options mixed task and head options of every head (Task.load keeps those that apply).
    config = dict(payload["config"])
    options = config.pop("options", {})
    task = config.pop("task")
    renamed = {"backbone.": "model.body.", "head.": "model.head."}
    state_dict = {}
    for key, value in payload["state_dict"].items():
        prefix = next((p for p in renamed if key.startswith(p)), "")
        state_dict[renamed.get(prefix, "") + key.removeprefix(prefix)] = value
    return SavedTask(task, {**config, **options}, state_dict, None, 1)
