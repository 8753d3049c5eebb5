"""fit(resume=...): find an interrupted run's training state, and check that this fit can continue it before
anything in the run folder is touched (a refused resume leaves every file of the run as it was)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from visionheads.engine import RESUME_CHECKPOINT
from visionheads.errors import ConfigError
from visionheads.runtime.checkpoint import read_task_file

# Settings that shape the optimiser's schedule and the data it steps through: a resumed fit must keep them.
PLANNED_SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "strategy", "schedule", "train", "val")
SHOWN = 4


def resume_checkpoint(resume: str | Path) -> Path:
    """The last.ckpt of a run folder (or the file itself); ConfigError naming what is missing."""
    path = Path(resume).expanduser()
    checkpoint = path / RESUME_CHECKPOINT if path.is_dir() else path
    if not checkpoint.is_file():
        raise ConfigError(
            f"resume={str(resume)!r}: no {RESUME_CHECKPOINT} there; pass the run folder of an interrupted fit "
            f"(it holds {RESUME_CHECKPOINT}, written after every epoch) or that file itself"
        )
    return checkpoint


def check_resumable(
    task_name: str,
    arguments: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    checkpoint: Path,
    settings: dict[str, Any],
    defaults: dict[str, Any] | None = None,
    *,
    fitted: tuple[str, ...] = (),
) -> None:
    """ConfigError, before anything is written, unless `checkpoint` holds a fit of this very task and plan.

    `arguments` and `state_dict` are the task's; `settings` are this fit's (FitSettings.record() plus its data);
    `defaults` are the config fields' defaults, which stand for fields a run older than them does not record;
    `fitted` are fields the fit itself decides (a run that ended holds them), which are not compared.
    """
    saved = read_task_file(checkpoint)  # a truncated or foreign file is a one-line ConfigError here
    if saved.task != task_name:
        raise ConfigError(f"{checkpoint}: a {saved.task} checkpoint, given to a {task_name} fit; resume it as a "
                          f"{saved.task} task")  # fmt: skip
    recorded = (defaults or {}) | saved.arguments
    changed = [f"{key}: {recorded.get(key)!r} in the run, {value!r} now"
               for key, value in arguments.items() if key not in fitted and recorded.get(key) != value]  # fmt: skip
    if changed:
        raise ConfigError(f"{checkpoint}: the run's task differs from this one ({_first(changed)}); resume with "
                          "the task the run was started with (its config.yaml)")  # fmt: skip
    misfits = _misfits(saved.state_dict, state_dict)
    if misfits:
        raise ConfigError(f"{checkpoint}: its weights do not fit this task's model ({_first(misfits)})")
    planned = _planned_settings(checkpoint.parent)
    changed = [f"{key}={planned[key]!r} in the run, {settings.get(key)!r} now"
               for key in PLANNED_SETTINGS if key in planned and planned[key] != settings.get(key)]  # fmt: skip
    if changed:
        raise ConfigError(
            f"{checkpoint}: a resumed fit continues the run as it was planned, and this one changes {_first(changed)} "
            "(the learning-rate schedule and the data depend on them). Resume with the run's settings, or train on "
            f"from its weights in a new fit: vh.Task.load('{checkpoint.parent / 'last.pt'}').fit(...)"
        )
    finished = saved.epoch or 0
    if finished >= int(settings["epochs"]):
        raise ConfigError(
            f"{checkpoint}: the run finished all its {finished} epoch(s); there is nothing to resume. Its weights "
            f"are in {checkpoint.parent / 'best.pt'} (vh.Task.load)"
        )


def _misfits(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    missing = [f"{key} missing" for key in expected if key not in saved]
    extra = [f"{key} unexpected" for key in saved if key not in expected]
    shapes = [f"{key} {tuple(saved[key].shape)} vs {tuple(value.shape)}"
              for key, value in expected.items() if key in saved and saved[key].shape != value.shape]  # fmt: skip
    return missing + extra + shapes


def _planned_settings(run_dir: Path) -> dict[str, Any]:
    # config.yaml is written as a fit starts; a last.ckpt copied elsewhere has none: then only the model is checked.
    try:
        record = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return dict(record.get("fit") or {}) if isinstance(record, dict) else {}


def _first(items: list[str]) -> str:
    return "; ".join(items[:SHOWN]) + (f"; +{len(items) - SHOWN} more" if len(items) > SHOWN else "")
