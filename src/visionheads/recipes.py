"""Recipes: a small YAML of the Task(...) arguments, the fit(...) arguments and the train/val/test data; and the
two-column metric table the command line and recipes print."""

from __future__ import annotations

import copy
import dataclasses
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from visionheads.errors import ConfigError
from visionheads.tasks import FitSettings, Task, TaskConfig, list_tasks, task_class
from visionheads.tasks.config import head_option_defaults

SECTIONS = ("task", "data", "fit")
DATA_KEYS = ("train", "val", "test")


class RecipeLoader(yaml.SafeLoader):
    """YAML as PyYAML reads it, except that 3e-4 is a float (YAML 1.2) rather than a string (YAML 1.1)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Read a recipe and apply overrides (`"fit.epochs": 3` or bare `epochs=3`); checks its shape."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe not found")
    try:
        recipe = yaml.load(path.read_text(), Loader=RecipeLoader) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(recipe, dict) or set(recipe) - set(SECTIONS) or "task" not in recipe:
        raise ConfigError(f"{path}: a recipe has the sections {SECTIONS} (task required), found {list(recipe)}")
    recipe = {section: dict(recipe.get(section) or {}) for section in SECTIONS}
    for key, value in (overrides or {}).items():
        section, name = _locate(key)
        recipe[section][name] = value
    if "name" not in recipe["task"]:
        raise ConfigError(f"{path}: task.name is missing (one of the task names, e.g. classification)")
    unknown = set(recipe["data"]) - set(DATA_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown data key(s) {sorted(unknown)}; use {DATA_KEYS}")
    if "train" not in recipe["data"]:
        raise ConfigError(f"{path}: data.train is missing")
    return recipe


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["fit.epochs=3", "backbone=resnet18"]` to a dict, values read as YAML scalars."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like key=value (e.g. epochs=3 or fit.lr=0.01)")
        overrides[key] = yaml.load(value, Loader=RecipeLoader) if value else None
    return overrides


def _locate(key: str) -> tuple[str, str]:
    if "." in key:
        section, name = key.split(".", 1)
        if section not in SECTIONS:
            raise ConfigError(f"override {key!r}: unknown section {section!r}; use {SECTIONS}")
        return section, name
    if key in DATA_KEYS:
        return "data", key
    if key in {f.name for f in dataclasses.fields(FitSettings)}:
        return "fit", key
    return "task", key


def run_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Task:
    """Build the task, fit it, evaluate on data.test (printed, kept in history.test_metrics, figures redrawn)."""
    recipe = copy.deepcopy(load_recipe(path, overrides))
    task_args = recipe["task"]
    task = Task(task_args.pop("name"), **task_args)
    data = recipe["data"]
    history = task.fit(data["train"], data.get("val"), **recipe["fit"])
    if data.get("test") is not None:
        evaluation = task.evaluation(data["test"])
        history.test_metrics = evaluation.metrics
        tested = evaluation.source.description  # e.g. "coco:path.json:cat,dog[:500]" for a COCO dict
        print(format_metrics(evaluation.metrics, title=f"test metrics on {tested}"))
        if history.run_dir is not None:
            (history.run_dir / "test_metrics.yaml").write_text(yaml.safe_dump({"data": tested, **evaluation.metrics}))
            if recipe["fit"].get("plots", True):
                task.plot(history.run_dir, data=evaluation)  # the task's figures show the test data
    return task


def describe_keys(width: int = 100) -> str:
    """Every key a recipe section takes, as text for `visionheads fit --help`."""
    fit_keys = [f"{f.name}={_default(f)}" for f in dataclasses.fields(FitSettings) if f.name not in _NOT_KEYS]
    shared = [f for f in dataclasses.fields(TaskConfig) if f.name not in _NOT_KEYS]
    task_keys = ["weights=None"] + [f"{f.name}={_default(f)}" for f in shared]
    base = {f.name for f in dataclasses.fields(TaskConfig)}
    lines = [
        "keys: key=value, values read as YAML (e.g. class_names=[cat,dog]); section.key also works (fit.lr=0.01)",
        "",
        "data: train=DATA (required), val=DATA (false: none), test=DATA (scored after the fit). DATA is a built-in",
        "  dataset (`visionheads list datasets`: digits, digits:val, shapes:test, mnist:ROOT:train, ...), optionally",
        "  sliced (digits[:500]); coco:ANNOTATIONS.json[:cat,dog][@train|@val|@test][[:N]]; or a path the task",
        "  reads (class folders, images/ + masks/, a COCO JSON)",
        "",
        *_wrapped("fit: ", fit_keys, width),
        "  and any other lightning.Trainer argument as fit.NAME=VALUE (e.g. fit.gradient_clip_val=1.0)",
        "",
        *_wrapped("task (every task): ", task_keys, width),
        "  and each task's own keys, then the options of its heads (* the default head), also given as key=value:",
    ]
    for name in list_tasks():
        cls = task_class(name)
        own = [f.name for f in dataclasses.fields(cls.config_type) if f.name not in base]
        lines += _wrapped(f"  {name}: ", own, width)
        for head, build in sorted(cls.heads.items()):
            label = f"    head={head}{'*' if head == cls.default_head else ''}: "
            lines += _wrapped(label, list(head_option_defaults(build)) or ["(no options)"], width)
    return "\n".join(lines)


_NOT_KEYS = ("callbacks", "trainer", "head_options")  # Python objects, or filled from the other keys


def _default(field: dataclasses.Field) -> str:
    if field.name == "head":
        return "(the task's default)"
    value = field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]
    return str(value)


def _wrapped(label: str, words: list[str], width: int) -> list[str]:
    return textwrap.wrap(" ".join(words), width, initial_indent=label, subsequent_indent=" " * len(label))


def format_metrics(metrics: dict[str, float], *, title: str) -> str:
    """A two-column table of metric names and values."""
    width = max(len(key) for key in metrics) if metrics else 0
    lines = [title, "-" * max(len(title), width + 12)]
    lines += [f"{key:<{width}}  {value:>10.4f}" for key, value in metrics.items()]
    return "\n".join(lines)
