"""A task's arguments as one frozen dataclass: what `Task(...)` takes, what `task.config` shows, what checkpoints hold.

Each task extends `TaskConfig` with its own fields; head options sit with the head (the keyword-only parameters of
its builder) and are kept under `head_options`. `resolve_config` turns the user's arguments into a complete config.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionheads.backbones import Backbone
from visionheads.data.transforms import checked_size, image_hw
from visionheads.errors import ConfigError, as_written, whole_number

HeadBuilder = Callable[..., Any]  # (in_channels, strides, out_features, **head options) -> nn.Module


@dataclass(frozen=True)
class TaskConfig:
    """Arguments shared by every task; a checkpoint stores exactly these (plus the task's own fields)."""

    backbone: str = "simple_cnn"
    head: str = ""  # "" means the task's default head
    in_chans: int = 3
    # the size the model sees: a side (square) or (height, width); None means the backbone's native input size
    image_size: int | tuple[int, int] | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    seed: int = 0
    mean: tuple[float, ...] | None = None  # None means what the backbone's weights expect
    std: tuple[float, ...] | None = None
    # Each image's channels to mean 0 and std 1 in front of the body (TensorFlow's per_image_standardization), for
    # data whose colours or lighting vary from image to image more than what tells the classes apart.
    standardize_images: bool = False
    pretrained: str | None = None  # where the body's starting weights came from (a tag or a file): a record only
    head_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image_size is not None:  # a checkpoint's or a recipe's [height, width] list, as a tuple
            object.__setattr__(self, "image_size", checked_size("image_size", self.image_size))
        if not isinstance(self.standardize_images, bool):
            raise ConfigError(f"standardize_images must be True or False, got {self.standardize_images!r}")
        if self.num_classes is not None:
            whole_number("num_classes", self.num_classes)
        if self.class_names is not None:  # class names fix the number of classes
            names = tuple(str(name) for name in self.class_names)
            if self.num_classes is not None and self.num_classes != len(names):
                raise ConfigError(f"{len(names)} class_names given but num_classes={self.num_classes}")
            object.__setattr__(self, "class_names", names)
            object.__setattr__(self, "num_classes", len(names))

    def arguments(self) -> dict[str, Any]:
        """The config as plain data (lists, dicts, numbers, strings): YAML, hparams and checkpoints hold this."""
        return {f.name: as_written(getattr(self, f.name)) for f in dataclasses.fields(self)}


def head_option_defaults(build: HeadBuilder) -> dict[str, Any]:
    """The options a head builder takes (its keyword-only parameters) with their defaults."""
    parameters = inspect.signature(build).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def resolve_config(
    config_type: type[TaskConfig],
    *,
    task: str,
    heads: Mapping[str, HeadBuilder],
    default_head: str,
    body: Backbone,
    weights: str | Path | None,
    arguments: dict[str, Any],
) -> TaskConfig:
    """The complete config of a task from the user's arguments; unknown names raise with the valid ones."""
    arguments = dict(arguments)
    names = {f.name for f in dataclasses.fields(config_type)}
    head = arguments.get("head") or default_head
    if head not in heads:
        raise ConfigError(f"unknown head {head!r} for task {task!r}; valid: {sorted(heads)} (list_heads())")
    head_defaults = head_option_defaults(heads[head])
    head_options = dict(arguments.pop("head_options", None) or {})
    for key in [key for key in arguments if key not in names]:
        if key not in head_defaults:
            raise ConfigError(_unknown_option(task, key, names, head, head_defaults, heads))
        head_options[key] = arguments.pop(key)
    for key in head_options:
        if key not in head_defaults:
            raise ConfigError(_unknown_option(task, key, names, head, head_defaults, heads))
    asked = arguments.get("image_size")
    image_size = body.input_size if asked is None else checked_size("image_size", asked)
    if min(image_hw(image_size)) < body.min_input_size:
        raise ConfigError(
            f"image_size={as_written(image_size)} is below what backbone {body.name!r} accepts "
            f"({body.min_input_size}); raise image_size"
        )
    arguments |= {
        "backbone": body.name,
        "head": head,
        "in_chans": body.in_chans,
        "image_size": image_size,
        "mean": tuple(float(v) for v in arguments.get("mean") or body.mean),
        "std": tuple(float(v) for v in arguments.get("std") or body.std),
        "pretrained": _provenance(weights, body) if weights is not None else arguments.get("pretrained"),
        "head_options": head_defaults | head_options,
    }
    try:
        return config_type(**arguments)
    except TypeError as error:  # a field of the wrong kind, reported by a task's __post_init__ or dataclasses
        raise ConfigError(f"task {task!r}: {error}") from error


def _provenance(weights: str | Path, body: Backbone) -> str:
    # A tag the registry knows is recorded as the tag (e.g. "imagenet"); anything else is the file it came from.
    if isinstance(weights, str) and body.weights is not None and weights == body.weights.tag:
        return weights
    return str(Path(weights).expanduser())


def _fit_hint(key: str) -> str:
    # Task and fit keys share one namespace in recipes and on the command line: `epocs=3` reaches the task.
    from visionheads.runtime.fitting import fit_argument_names

    ours, trainer = fit_argument_names()
    if key in ours | trainer:
        return f"{key!r} is an argument of fit, not of the task; "
    close = difflib.get_close_matches(key, sorted(ours) + sorted(trainer), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}, an argument of fit (not of the task)? " if close else ""


def _unknown_option(
    task: str, key: str, names: set[str], head: str, head_defaults: dict[str, Any], heads: Mapping[str, HeadBuilder]
) -> str:
    valid = sorted((names - {"head_options"}) | set(head_defaults))
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else _fit_hint(key)
    elsewhere = [name for name, build in heads.items() if name != head and key in head_option_defaults(build)]
    if elsewhere:
        hint += f"(an option of head {elsewhere[0]!r}, not of {head!r}) "
    head_names = ", ".join(sorted(head_defaults)) or "none"
    return (
        f"task {task!r} has no option {key!r}; {hint}task options: {', '.join(sorted(names - {'head_options'}))}; "
        f"options of head {head!r}: {head_names}"
    )
