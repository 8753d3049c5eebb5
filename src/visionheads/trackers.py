"""Experiment trackers through Lightning's loggers: `fit(logger=...)` takes a name ("csv", "tensorboard", "mlflow",
"wandb"), a Lightning logger object, or a list of them; each goes beside the run folder's metrics.csv, never instead
of it. When the fit ends, the run folder's files (checkpoints, plots, config, metrics) go to each tracker that keeps
artifacts (MLflow, W&B)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger

from visionheads.errors import ConfigError

NAMES = ("csv", "tensorboard", "mlflow", "wandb")
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def given_loggers(extra: Any, run_dir: Path, *, experiment: str) -> list[Logger]:
    """The user's loggers (`extra`: a name, a Logger, a list of them, or None/True/False for none), names made into
    Lightning loggers that write for the run in `run_dir` under `experiment` (the task's name)."""
    if extra is None or isinstance(extra, bool):
        return []
    loggers = []
    for item in list(extra) if isinstance(extra, (list, tuple)) else [extra]:
        if isinstance(item, Logger):
            loggers.append(item)
        elif isinstance(item, str) and item in NAMES:
            loggers += _named(item, run_dir, experiment)
        else:
            raise ConfigError(
                f"logger={item!r}: give one of {NAMES} or Lightning logger objects (e.g. "
                "lightning.pytorch.loggers.MLFlowLogger(...)); metrics.csv in the run folder is always written"
            )
    return loggers


def _named(name: str, run_dir: Path, experiment: str) -> list[Logger]:
    package = _PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(f"logger={name!r} needs the {package} package: pip install {package}")
    if name in ("csv", "tensorboard"):  # the run folder's metrics.csv, and TensorBoard files when installed: always
        return []
    if name == "mlflow":
        import mlflow
        from lightning.pytorch.loggers import MLFlowLogger

        # where MLflow itself would log (MLFLOW_TRACKING_URI, else its default store); the run named as its folder
        uri = mlflow.get_tracking_uri()
        return [MLFlowLogger(experiment_name=experiment, run_name=run_dir.name, tracking_uri=uri)]
    from lightning.pytorch.loggers import WandbLogger

    # WANDB_MODE=offline (or `wandb offline`) keeps it on disk, for `wandb sync` later
    project = os.environ.get("WANDB_PROJECT", "visionheads")
    return [WandbLogger(project=project, name=run_dir.name, save_dir=str(run_dir))]


def publish_run_folder(loggers: list[Logger], run_dir: Path) -> None:
    """The run folder's files (checkpoints, plots, config.yaml, metrics.csv) as artifacts of each MLflow or W&B run;
    then the W&B run is finished, as Lightning finishes MLflow's, so that the next fit in the process starts its own."""
    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    files = sorted(path for path in run_dir.iterdir() if path.is_file())
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            for path in files:
                logger.experiment.log_artifact(logger.run_id, str(path))
        elif isinstance(logger, WandbLogger):
            for path in files:
                # under the run folder's name: W&B keeps its own config.yaml beside
                logger.experiment.save(str(path), base_path=str(run_dir.parent), policy="now")
            logger.experiment.finish()
