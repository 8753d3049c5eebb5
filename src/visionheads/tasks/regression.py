"""Regression: an angle head on the unit circle (rotated digits) or a linear head for any float target."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from visionheads.data.folders import ClassFolders
from visionheads.data.rotation import Rotated, rotate_image
from visionheads.data.sources import Source
from visionheads.data.transforms import eval_pipeline, photometric_pipeline
from visionheads.errors import ConfigError, DataError
from visionheads.heads import PooledLinear, PooledMLP
from visionheads.tasks.base import Task, register_task


@register_task
class RegressionTask(Task):
    """`Task("regression")`: the angle a digit was rotated by (default), or any float vector (`head="linear"`)."""

    name = "regression"
    # 1. heads: `angle` emits (cos θ, sin θ) so that 179° and -179° are neighbours; `linear` a scaled value.
    heads = {"angle": PooledLinear, "linear": PooledLinear, "mlp": PooledMLP}
    default_head = "angle"
    option_defaults = {
        "degrees": 45.0,  # declared angle range ±degrees; data without angles is rotated within it
        "target_key": "angle",
        "target_dim": 1,
        "target_scale": None,  # (mean, std) of linear targets; learnt from the training data when None
        "dropout": 0.0,
        "hidden": 256,
        "pool_size": 1,
    }
    monitor = ("val_rmse", "min")

    @property
    def target_key(self) -> str:  # the key of (images, targets) arrays follows the option
        return self.options["target_key"]

    @property
    def is_angle(self) -> bool:
        return self.options["target_key"] == "angle"

    def head_outputs(self) -> int:
        if self.head_name == "angle":
            if not self.is_angle:
                raise ConfigError("head='angle' predicts angles; use head='linear' for other targets")
            return 2
        return int(self.options["target_dim"])

    # 2. data
    def source_from_path(self, path: Path, channels: int) -> Source:
        folders = ClassFolders(path, channels=channels)  # any image tree; the task rotates it
        return Source(folders, str(path), class_names=folders.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        degrees = float(self.options["degrees"])
        if not 0 < degrees <= 180:
            raise ConfigError(f"degrees must be in (0, 180], got {degrees}")
        first = source.dataset[0] if len(source.dataset) else {}
        if self.is_angle and isinstance(first, dict) and "angle" not in first:
            # Images without angles become a rotation problem: fresh angles while training, fixed for evaluation.
            seed = self.seed if fitting else self.seed + 1000
            source.dataset = Rotated(source.dataset, degrees, seed=seed, resample=fitting)
            source.description = f"rotated({source.description}, ±{degrees:g}°)"
        if fitting and self.head_name != "angle" and self.options["target_scale"] is None:
            self.options["target_scale"] = _target_scale(source, self.target_key, degrees if self.is_angle else None)

    def train_transform(self, source: Source) -> Any:
        # Photometric jitter only: rotating, flipping or even re-sampling (scale/shift) the image changes or blurs
        # what the angle is read from (measured on MNIST: 9.4° -> 7.8° RMSE after 12 epochs without them).
        return photometric_pipeline(self.image_size, self.mean, self.std, seed=self.seed)

    def eval_transform(self) -> Any:
        return eval_pipeline(self.image_size, self.mean, self.std)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        value = np.asarray(sample[self.target_key], dtype=np.float64).reshape(-1)
        if not np.isfinite(value).all():
            raise DataError(f"{where}[{self.target_key!r}]: target is NaN or infinite ({value.tolist()})")
        if self.is_angle:
            limit = float(self.options["degrees"])
            if value.size != 1 or abs(value[0]) > limit + 1e-6:
                raise DataError(
                    f"{where}['angle']: {value.tolist()} is outside the declared range ±{limit:g}°; "
                    f"pass degrees={math.ceil(abs(value).max())} (or more) when creating the task"
                )
        elif value.size != self.options["target_dim"]:
            raise DataError(
                f"{where}[{self.target_key!r}]: {value.size} values but target_dim={self.options['target_dim']}"
            )
        target = torch.tensor(value, dtype=torch.float32)
        return {"image": pipeline(image=sample["image"])["image"], "target": target}

    # 3. loss: on the unit circle for angles, on standardised values otherwise
    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = batch["target"].float()
        if self.head_name == "angle":
            radians = torch.deg2rad(target[:, 0])
            return F.smooth_l1_loss(outputs.float(), torch.stack([radians.cos(), radians.sin()], dim=1), beta=0.1)
        mean, std = (torch.tensor(v, device=target.device) for v in self.options["target_scale"])
        return F.smooth_l1_loss(outputs.float(), (target - mean) / std, beta=0.1)

    # 4. metrics
    def new_metrics(self) -> RegressionMetrics:
        return RegressionMetrics(self.values, circular=self.is_angle)

    # 5. predictions
    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Head outputs (B, K) to target values (B, D): degrees for angles."""
        outputs = outputs.float()
        if self.head_name == "angle":
            return torch.rad2deg(torch.atan2(outputs[:, 1], outputs[:, 0]))[:, None]
        mean, std = (torch.tensor(v, device=outputs.device) for v in self.options["target_scale"])
        return outputs * std + mean

    def decode(self, outputs: torch.Tensor) -> list[Any]:
        values = self.values(outputs).detach().cpu().numpy()
        return [float(v[0]) if len(v) == 1 else v for v in values]

    def derotate(self, images: Any) -> list[np.ndarray]:
        """The images turned upright: each rotated back by its predicted angle."""
        items = self.image_arrays(images)
        return [rotate_image(image, -angle) for image, angle in zip(items, self.predict(items), strict=True)]

    # 6. plots
    def task_plots(self, out_dir: Path) -> list[Path]:
        from visionheads.viz.regression import plot_derotated_grid, plot_predicted_vs_true

        metrics = self.last_evaluation
        if not isinstance(metrics, RegressionMetrics) or not metrics.count:
            return []
        predicted, true = metrics.arrays()
        unit = "°" if self.is_angle else ""
        paths = [plot_predicted_vs_true(predicted[:, 0], true[:, 0], out_dir / "predicted_vs_true.png", unit=unit)]
        if self.is_angle and self.last_evaluated is not None:
            dataset = self.last_evaluated.dataset
            samples = [dataset[i] for i in range(min(16, len(dataset)))]
            images = [s["image"] for s in samples]
            derotated = self.derotate(images)
            angles = [float(s["angle"]) for s in samples]
            paths.append(plot_derotated_grid(images, derotated, angles, out_dir / "derotated.png"))
        return paths


class RegressionMetrics:
    """RMSE and MAE (circular differences for angles), and for angles the share within ±5° and ±10°."""

    def __init__(self, to_values: Any, *, circular: bool) -> None:
        self.to_values = to_values
        self.circular = circular
        self._predicted: list[np.ndarray] = []
        self._true: list[np.ndarray] = []

    @property
    def count(self) -> int:
        return sum(len(t) for t in self._true)

    def update(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self._predicted.append(self.to_values(outputs.detach()).cpu().numpy())
        self._true.append(batch["target"].detach().float().cpu().numpy())

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Predicted and true values, each (N, D)."""
        return np.concatenate(self._predicted), np.concatenate(self._true)

    def compute(self) -> dict[str, float]:
        predicted, true = self.arrays()
        error = angle_difference(predicted, true) if self.circular else predicted - true
        result = {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}
        if self.circular:
            result["within_5"] = float(np.mean(np.abs(error) <= 5))
            result["within_10"] = float(np.mean(np.abs(error) <= 10))
        return result


def angle_difference(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Signed smallest difference in degrees, in [-180, 180): 179 vs -179 is -2."""
    return (np.asarray(predicted) - np.asarray(true) + 180.0) % 360.0 - 180.0


def _target_scale(source: Source, key: str, degrees: float | None) -> list[list[float]]:
    """[means, stds] of the targets, one per dimension, from up to 2,000 training samples."""
    if degrees is not None:
        return [[0.0], [degrees]]  # angles are uniform in ±degrees: scale them to ±1
    dataset = source.dataset
    count = min(len(dataset), 2000)
    values = np.stack([np.asarray(dataset[i][key], dtype=np.float64).reshape(-1) for i in range(count)])
    std = values.std(axis=0)
    return [[float(v) for v in values.mean(axis=0)], [float(s) if s > 0 else 1.0 for s in std]]
