"""`visionheads compare RECIPE strategy=scratch,features,freeze,finetune`: one recipe trained once per transfer
strategy on the same data, side by side: the test metric, the wall time, the trainable parameters, and the
validation curves of all of them on one figure.

`scratch` starts from random weights (the recipe's `weights` dropped): it is what transfer is measured against.
A recipe without validation data gets a seeded fifth of its training data held out, the same for every strategy,
so that the curves exist and nothing is chosen on the test data.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from visionheads.data.catalog import Source
from visionheads.errors import ConfigError
from visionheads.recipes import load_recipe
from visionheads.runtime.fitting import FitSettings, training_plan
from visionheads.runtime.module import STRATEGIES, TaskModule
from visionheads.tasks import Task

HELD_OUT = 0.2


@dataclass
class StrategyRun:
    """One strategy's fit: its test (or validation) metrics, wall time, trainable parameters, and History rows."""

    strategy: str
    metrics: dict[str, float]
    seconds: float
    trainable: int
    rows: list[dict[str, float]]
    run_dir: Path | None


def compare_strategies(
    recipe: str | Path, strategies: list[str], overrides: dict[str, Any] | None = None
) -> tuple[list[StrategyRun], str]:
    """Fit `recipe` once per strategy; returns the runs and what their metrics were measured on."""
    unknown = [name for name in strategies if name not in STRATEGIES]
    if unknown or not strategies:
        raise ConfigError(f"strategy={','.join(strategies)}: use some of {STRATEGIES}, e.g. scratch,finetune")
    runs, held_out, measured_on = [], None, ""
    for strategy in strategies:
        loaded = copy.deepcopy(load_recipe(recipe, {**(overrides or {}), "fit.strategy": strategy}))
        arguments = loaded["task"]
        if strategy == "scratch":
            arguments.pop("weights", None)
        task = Task(arguments.pop("name"), **arguments)
        data, fit = loaded["data"], loaded["fit"]
        train, val = data["train"], data.get("val")
        if val is None:
            held_out = held_out or _hold_out(task, train)
            train, val = held_out
        print(f"compare: strategy={strategy}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        settings = fit | {"name": fit.get("name") or f"compare-{strategy}"}
        history = task.fit(train, val, **settings)
        seconds = time.perf_counter() - start
        plan = training_plan(FitSettings.from_arguments(settings), pretrained=task.config.pretrained is not None)
        trainable = sum(p.numel() for group in TaskModule(task, plan).parameter_groups() for p in group["params"])
        test = data.get("test")
        if test is not None:
            metrics, measured_on = task.evaluate(test), f"test data ({test})"
        else:
            last = history.rows[-1]
            metrics = {key.removeprefix("val_"): value for key, value in last.items() if key.startswith("val_")}
            measured_on = "validation data"
        runs.append(StrategyRun(strategy, metrics, seconds, trainable, list(history.rows), history.run_dir))
    return runs, measured_on


def _hold_out(task: Task, train: Any) -> tuple[Source, Source]:
    source = task.source(train, fitting=True)
    order = torch.randperm(len(source.dataset), generator=torch.Generator().manual_seed(task.config.seed)).tolist()
    cut = max(1, int(len(order) * HELD_OUT))
    parts = (sorted(order[cut:]), sorted(order[:cut]))
    names = ("train", "held-out validation")
    return tuple(  # type: ignore[return-value]
        Source(Subset(source.dataset, indices), f"{source.description} ({name}, {len(indices)})",
               class_names=source.class_names, flips_ok=source.flips_ok)
        for indices, name in zip(parts, names, strict=True)
    )  # fmt: skip


def format_comparison(runs: list[StrategyRun], metric: str, measured_on: str) -> str:
    """A Markdown table: strategy, the metric, wall time, trainable parameters."""
    lines = [
        f"{metric} on {measured_on}",
        f"| strategy | {metric} | time | trainable parameters |",
        "|---|---:|---:|---:|",
    ]
    for run in runs:
        value = run.metrics.get(metric, float("nan"))
        lines.append(f"| {run.strategy} | {value:.3f} | {run.seconds:.0f} s | {run.trainable:,} |")
    return "\n".join(lines)
