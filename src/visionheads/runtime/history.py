"""What a fit returns: per-epoch losses and metrics, the run folder and the best epoch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class History:
    """Per-epoch rows like `{"epoch": 1, "train_loss": 0.9, "val_loss": 0.5, "val_accuracy": 0.91}` (epochs from 1)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    run_dir: Path | None = None
    best_epoch: int | None = None
    monitor: str = "val_loss"
    test_metrics: dict[str, float] | None = None

    def __getitem__(self, key: str) -> list[float]:
        """Keras-style access: `history["val_loss"]` is the list over epochs."""
        if not any(key in row for row in self.rows):
            raise KeyError(f"{key!r} was not recorded; recorded: {self.keys()}")
        return [row.get(key, float("nan")) for row in self.rows]

    def keys(self) -> list[str]:
        """Names recorded in any epoch."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    @property
    def best(self) -> dict[str, float]:
        """The row of the best epoch (the last row when nothing was monitored)."""
        if not self.rows:
            return {}
        if self.best_epoch is None:
            return self.rows[-1]
        return next(row for row in self.rows if row["epoch"] == self.best_epoch)
