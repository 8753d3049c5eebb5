"""A square-ish grid of image panels, shared by the figures that show many small images."""

from __future__ import annotations

import math

from matplotlib.axes import Axes
from matplotlib.figure import Figure


def square_panels(count: int, *, inches: float = 1.1) -> tuple[Figure, list[Axes]]:
    """A figure of `count` panels in a square-ish grid, `inches` a side, room above for a title; the grid's spare
    cells are blanked. Returns the figure and the `count` axes, row by row."""
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(inches * columns, inches * rows + 0.4), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for spare in axes[count:]:
        spare.axis("off")
    return figure, axes[:count]
