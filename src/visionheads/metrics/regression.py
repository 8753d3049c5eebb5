"""Regression errors, with circular differences for angles (torchmetrics has no circular RMSE)."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def angle_difference(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Signed smallest difference in degrees, in [-180, 180): 179 vs -179 is -2."""
    return torch.remainder(predicted - true + 180.0, 360.0) - 180.0


class RegressionErrors(Metric):
    """RMSE and MAE over every value; for angles (`circular`) also the share within ±5° and ±10°.

    States are the predicted and true values themselves (gathered across processes), so the errors are
    dataset-wide and the predicted-vs-true plot can be drawn from the same evaluation.
    """

    full_state_update = False

    def __init__(self, *, circular: bool) -> None:
        super().__init__()
        self.circular = circular
        self.add_state("predicted", default=[], dist_reduce_fx="cat")
        self.add_state("true", default=[], dist_reduce_fx="cat")

    def update(self, predicted: torch.Tensor, true: torch.Tensor) -> None:
        """predicted, true: (B, D) values (degrees for angles)."""
        self.predicted.append(predicted.detach().double())
        self.true.append(true.detach().double())

    def compute(self) -> dict[str, torch.Tensor]:
        """rmse, mae (and within_5, within_10 for angles), plus the `predicted` and `true` values (N, D)."""
        predicted, true = dim_zero_cat(self.predicted), dim_zero_cat(self.true)
        error = angle_difference(predicted, true) if self.circular else predicted - true
        result = {"rmse": error.square().mean().sqrt(), "mae": error.abs().mean()}
        if self.circular:
            result["within_5"] = (error.abs() <= 5).double().mean()
            result["within_10"] = (error.abs() <= 10).double().mean()
        return result | {"predicted": predicted, "true": true}
