"""Errors users can act on: each message names what is wrong and how to fix it."""

from __future__ import annotations

import numbers
from collections.abc import Collection, Mapping
from typing import Any


class VisionHeadsError(Exception):
    """Base class of every error visionheads raises on purpose."""


class ConfigError(VisionHeadsError, ValueError):
    """A name, option or combination of options that cannot work."""


class DataError(VisionHeadsError, ValueError):
    """Input data that is missing, malformed or disagrees with the task."""


class TrainingError(VisionHeadsError, RuntimeError):
    """Training that cannot go on, e.g. a loss that turned NaN or infinite."""


def as_written(value: Any) -> Any:
    """`value` as a user writes it in YAML or on the command line: tuples as lists, mapping keys as strings."""
    if isinstance(value, (tuple, list)):
        return [as_written(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): as_written(v) for k, v in value.items()}
    return value


def whole_number(name: str, value: object, minimum: int = 1) -> int:
    """`value` if it is a whole number >= minimum (not a bool, not a float), else a ConfigError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def one_of(name: str, value: object, choices: Collection[str]) -> None:
    """A ConfigError naming `name` and the valid values unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r}; use one of {tuple(choices)}")


def checked_colors(colors: object, count: int | None) -> tuple[tuple[int, int, int], ...]:
    """`colors` as one (R, G, B) triple of whole numbers 0..255 per class (`count` of them when known), else a
    ConfigError saying what it takes."""
    triples: list[tuple[int, int, int]] = []
    if isinstance(colors, (list, tuple)):
        for color in colors:
            if not isinstance(color, (list, tuple)) or len(color) != 3:
                break
            if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= 255 for v in color):
                break
            triples.append((int(color[0]), int(color[1]), int(color[2])))
        else:
            if triples and (count is None or len(triples) == count):
                return tuple(triples)
    wanted = f"{count} " if count is not None else ""
    raise ConfigError(
        f"class_colors={colors!r}; give {wanted}[R, G, B] triples of whole numbers 0..255, one per class in class order"
    )
