"""Regression: an angle head on the unit circle (rotated digits) or a linear head for any float target."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics import MetricCollection

from visionheads.data.catalog import Source
from visionheads.data.folders import ClassFolders
from visionheads.data.rotation import Rotated, rotate_image
from visionheads.data.transforms import eval_pipeline, photometric_pipeline
from visionheads.errors import ConfigError, DataError, one_of
from visionheads.heads import AngleHead, PooledLinear, PooledMLP
from visionheads.metrics import RegressionErrors, angle_difference
from visionheads.runtime.explain import Target
from visionheads.runtime.inference import image_arrays
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import register_task
from visionheads.tasks.base import Task
from visionheads.tasks.config import TaskConfig

LOSSES = {"smooth_l1": partial(F.smooth_l1_loss, beta=0.1), "mse": F.mse_loss}


@dataclass(frozen=True)
class RegressionConfig(TaskConfig):
    """Regression arguments: those of every task, plus these."""

    degrees: float = 45.0  # declared angle range ±degrees; data without angles is rotated within it
    target_key: str = "angle"  # the sample key of the target; any key but "angle" means plain float values
    target_dim: int = 1
    target_scale: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (means, stds); learnt when None
    # smooth_l1 (beta 0.1) fits precisely where errors are small (built-in digits: 0.47° vs 0.65° RMSE with mse);
    # mse aims at the mean, so at the RMSE, where a share of errors stays large (MNIST: 9.35° vs 9.57°).
    loss: str = "smooth_l1"
    jitter: bool = True  # brightness/contrast jitter in training (built-in digits: 0.47° with, 0.56° without)

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("loss", self.loss, LOSSES)
        if not 0 < float(self.degrees) <= 180:
            raise ConfigError(f"degrees must be in (0, 180], got {self.degrees}")
        if self.target_scale is not None:  # checkpoints and YAML hold lists
            object.__setattr__(self, "target_scale", tuple(tuple(float(v) for v in row) for row in self.target_scale))


@register_task
class RegressionTask(Task):
    """`Task("regression")`: the angle a digit was rotated by (default), or any float vector (`head="linear"`)."""

    name = "regression"
    config_type = RegressionConfig
    monitor = ("val_rmse", "min")
    # 1. heads: `angle` emits (cos θ, sin θ) so that 179° and -179° are neighbours; `linear` a scaled value.
    heads = {"angle": AngleHead, "linear": PooledLinear, "mlp": PooledMLP}
    default_head = "angle"
    attackable = True
    data_key = "angle"

    @property
    def is_angle(self) -> bool:
        """Whether the target is the rotation angle (circular errors) rather than plain values."""
        return self.config.target_key == "angle"

    def head_outputs(self) -> int:
        if self.config.head == "angle":
            if not self.is_angle:
                raise ConfigError("head='angle' predicts angles; use head='linear' for other targets")
            return 2
        return int(self.config.target_dim)

    # 2. data
    def sample_keys(self) -> tuple[str, ...]:
        return ("image", self.config.target_key)

    def source_from_path(self, path: Path, channels: int) -> Source:
        folders = ClassFolders(path, channels=channels)  # any image tree; the task rotates it
        return Source(folders, str(path), class_names=folders.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        degrees = float(self.config.degrees)
        first = source.dataset[0] if len(source.dataset) else {}
        if self.is_angle and isinstance(first, dict) and "angle" not in first:
            # Images without angles become a rotation problem: fresh angles each epoch while training, fixed ones
            # for evaluation.
            seed = self.config.seed if fitting else self.config.seed + 1000
            source.dataset = Rotated(source.dataset, degrees, seed=seed, resample=fitting)
            source.description = f"rotated({source.description}, ±{degrees:g}°)"
        if fitting and self.config.head != "angle" and self.config.target_scale is None:
            scale = _learn_target_scale(source, self.config.target_key, degrees if self.is_angle else None)
            self.set_config(target_scale=scale)

    def train_transform(self, source: Source) -> Any:
        # Photometric jitter only: rotating, flipping or even re-sampling (scale/shift) the image changes or blurs
        # what the angle is read from (measured on MNIST: 9.4° -> 7.8° RMSE after 12 epochs without them).
        if not self.config.jitter:
            return self.eval_transform()
        return photometric_pipeline(self.config.image_size)

    def eval_transform(self) -> Any:
        return eval_pipeline(self.config.image_size)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        key = self.config.target_key
        value = np.asarray(sample[key], dtype=np.float64).reshape(-1)
        if not np.isfinite(value).all():
            raise DataError(f"{where}[{key!r}]: target is NaN or infinite ({value.tolist()})")
        if self.is_angle:
            limit = float(self.config.degrees)
            if value.size != 1 or abs(value[0]) > limit + 1e-6:
                raise DataError(
                    f"{where}['angle']: {value.tolist()} is outside the declared range ±{limit:g}°; "
                    f"pass degrees={math.ceil(abs(value).max())} (or more) when creating the task"
                )
        elif value.size != self.config.target_dim:
            raise DataError(f"{where}[{key!r}]: {value.size} values but target_dim={self.config.target_dim}")
        target = torch.tensor(value, dtype=torch.float32)
        return {"image": pipeline(image=sample["image"])["image"], "target": target}

    # 3. losses: on the unit circle for angles, on standardised values otherwise
    def losses(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """outputs: (B, 2) cos/sin for angles, else (B, D) standardised values; batch["target"]: (B, D)."""
        target = batch["target"].float()
        if self.config.head == "angle":
            radians = torch.deg2rad(target[:, 0])
            unit = torch.stack([radians.cos(), radians.sin()], dim=1)
            return {self.config.loss: LOSSES[self.config.loss](outputs.float(), unit)}
        mean, std = (torch.tensor(v, device=target.device) for v in self._target_scale())
        return {self.config.loss: LOSSES[self.config.loss](outputs.float(), (target - mean) / std)}

    # 4. metrics
    def new_metrics(self, source: Source | None) -> MetricCollection:
        return MetricCollection({"errors": RegressionErrors(circular=self.is_angle)})

    def update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        metrics.update(self.values(outputs.detach()), batch["target"].float())

    # 5. predictions
    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Head outputs (B, K) to target values (B, D): degrees for angles."""
        outputs = outputs.float()
        if self.config.head == "angle":
            return torch.rad2deg(torch.atan2(outputs[:, 1], outputs[:, 0]))[:, None]
        mean, std = (torch.tensor(v, device=outputs.device) for v in self._target_scale())
        return outputs * std + mean

    def _target_scale(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.config.target_scale is None:
            raise ConfigError("head='linear' needs target_scale=(means, stds), or fit() to learn it from the data")
        return self.config.target_scale

    def decode(self, outputs: torch.Tensor, sizes: list[tuple[int, int]]) -> list[Any]:
        values = self.values(outputs).detach().cpu().numpy()
        return [float(v[0]) if len(v) == 1 else v for v in values]

    def export_outputs(self, batch: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
        """values (B, D): degrees for angles (atan2 of the head's cos and sin), else the target's own scale."""
        return {"values": self.values(self.prediction_outputs(batch))}

    def derotate(self, images: Any) -> list[np.ndarray]:
        """The images turned upright: each rotated back by its predicted angle."""
        items = image_arrays(images, self.config.in_chans)
        return [rotate_image(image, -angle) for image, angle in zip(items, self.predict(items), strict=True)]

    def describe_predictions(self, outputs: torch.Tensor, batch: dict[str, Any]) -> list[tuple[str, bool | None]]:
        predicted, true = self.values(outputs.detach())[:, 0].cpu(), batch["target"][:, 0].float().cpu()
        if self.is_angle:  # right: within ±10°, as within_10 counts
            right = (angle_difference(predicted, true).abs() <= 10).tolist()
            pairs = zip(predicted.tolist(), true.tolist(), right, strict=True)
            return [(f"{p:+.0f}° (true {t:+.0f}°)", r) for p, t, r in pairs]
        return [(f"{p:.3g} (true {t:.3g})", None) for p, t in zip(predicted.tolist(), true.tolist(), strict=True)]

    # 6. figures
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        from visionheads.viz.regression import plot_derotated_grid, plot_predicted_vs_true

        predicted, true = (evaluation.computed[key].cpu().numpy() for key in ("predicted", "true"))
        unit = "°" if self.is_angle else ""
        paths = [plot_predicted_vs_true(predicted[:, 0], true[:, 0], out_dir / "predicted_vs_true.png", unit=unit)]
        if self.is_angle:
            dataset = evaluation.source.dataset
            samples = [dataset[i] for i in range(min(16, len(dataset)))]
            images = [s["image"] for s in samples]
            angles = [float(s["angle"]) for s in samples]
            paths.append(plot_derotated_grid(images, self.derotate(images), angles, out_dir / "derotated.png"))
        return paths

    # 7. explanations: the prediction, signed so that the map shows what moved it away from 0° (or the mean)
    def explanation_targets(self, outputs: torch.Tensor, target: int | str | None) -> list[Target]:
        """outputs: (B, 2) cos/sin or (B, D) standardised values. Returns: per image, |predicted value| (degrees for
        angles, standard deviations otherwise) of dimension `target`, default the sum over all dimensions."""
        dims = 1 if self.config.head == "angle" else int(self.config.target_dim)
        if target is not None and not (isinstance(target, int) and not isinstance(target, bool) and 0 <= target < dims):
            raise ConfigError(f"target={target!r}: regression explains an output dimension, 0..{dims - 1}")
        return [partial(_size_of_prediction, angle=self.config.head == "angle", dim=target)] * len(outputs)


def _size_of_prediction(outputs: torch.Tensor, *, angle: bool, dim: int | None) -> torch.Tensor:
    values = torch.rad2deg(torch.atan2(outputs[1], outputs[0]))[None] if angle else outputs  # (D,)
    values = values if dim is None else values[dim : dim + 1]
    return values.abs().sum()


def _learn_target_scale(source: Source, key: str, degrees: float | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(means, stds) of the targets, one per dimension, from up to 2,000 training samples."""
    if degrees is not None:
        return (0.0,), (degrees,)  # angles are uniform in ±degrees: scale them to ±1
    dataset = source.dataset
    count = min(len(dataset), 2000)
    values = np.stack([np.asarray(dataset[i][key], dtype=np.float64).reshape(-1) for i in range(count)])
    std = values.std(axis=0)
    return tuple(float(v) for v in values.mean(axis=0)), tuple(float(s) if s > 0 else 1.0 for s in std)
