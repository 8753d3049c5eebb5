"""Every `visionheads` command the README and docs show is one the command line takes as written.

Each command in a fenced block, and each concrete one in the prose, is parsed by the real argument parser. `list`
commands run. `fit` commands go further without training: the recipe and its overrides become the Task (its body
built, weights tags checked against the registry) and FitSettings, and built-in data specs are resolved. `compare`
commands too, with their strategies checked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import visionheads as vh
from visionheads import _names
from visionheads.backbones import backbone_entry
from visionheads.cli import _parser, main
from visionheads.data.catalog import is_builtin, parse_coco_spec
from visionheads.recipes import load_recipe, parse_overrides
from visionheads.runtime.fitting import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = ("RECIPE", "CKPT", "IMAGE", "DATA", "<recipe>", "...", " [")  # prose shorthand, not commands


def _fenced_commands(text: str) -> list[str]:
    commands, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = pending + re.sub(r"\s+#.*$", "", line).strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
        elif line.startswith("visionheads "):
            commands.append(line)
    return commands


def _inline_commands(text: str) -> list[str]:
    spans = re.findall(r"`(visionheads [^`]+)`", text.replace("\n", " "))
    # `visionheads evaluate` alone names the command in a sentence; `visionheads demo` is a whole one.
    spans = [span for span in spans if len(span.split()) > 2 or span == "visionheads demo"]
    return [span for span in spans if not any(mark in span for mark in PLACEHOLDERS)]


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for command in dict.fromkeys(_fenced_commands(text) + _inline_commands(text)):
            if " | " in command:  # `visionheads list backbones | tasks | heads` shows the choices
                head, *choices = command.split(" | ")
                stem = head.rsplit(" ", 1)[0]
                found += [(page.name, f"{stem} {choice}") for choice in [head.rsplit(" ", 1)[1], *choices]]
            else:
                found.append((page.name, command))
    return found


COMMANDS = _commands()


def test_the_docs_show_the_main_commands():
    shown = {shlex.split(command)[1] for _, command in COMMANDS}
    assert {"demo", "fit", "evaluate", "predict", "list"} <= shown and len(COMMANDS) >= 20


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}:{c[12:60]}" for p, c in COMMANDS])
def test_every_documented_command_runs_as_written(page, command, capsys):
    argv = [word.replace("<run>", "run") for word in shlex.split(command)[1:]]
    if "--help" in argv:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0 and "epochs" in capsys.readouterr().out
        return
    args = _parser().parse_args(argv)  # an unknown option or a missing argument exits here
    if args.command == "list" and args.details:
        return  # builds every backbone (about a minute); tests/test_zoo.py runs it on rows counted at 96 px
    if args.command == "list":
        assert main(argv) == 0 and capsys.readouterr().out.strip()
    elif args.command == "fit":
        _check_fit(args.recipe, args.overrides)
    elif args.command == "compare":
        strategies = [o for o in args.overrides if o.startswith(("strategy=", "fit.strategy="))]
        for chosen in strategies:
            assert set(chosen.split("=", 1)[1].split(",")) <= set(STRATEGIES) - {"auto"}, command
        _check_fit(args.recipe, [o for o in args.overrides if o not in strategies])
    elif args.command == "evaluate" and args.data.startswith("coco:"):
        parse_coco_spec(args.data)


def _check_fit(recipe: str, overrides: list[str]) -> None:
    changes = parse_overrides(overrides)
    if recipe.endswith(".yaml"):
        loaded = load_recipe(ROOT / recipe, changes)
    else:  # a task name: the recipe written on the command line
        loaded = load_recipe(_write({"task": {"name": recipe}}), changes)
    arguments = dict(loaded["task"])
    weights = arguments.pop("weights", None)
    task = vh.Task(arguments.pop("name"), **arguments)
    if isinstance(weights, str) and "/" not in weights:  # a tag: downloads are not tested here, but must exist
        assert weights in backbone_entry(task.config.backbone).tags
    vh.tasks.FitSettings.from_arguments(loaded["fit"])
    for key, spec in loaded["data"].items():
        if is_builtin(spec) and not str(spec).startswith(("mnist:", "coco:")):  # mnist/coco need files
            task.source(spec, fitting=key == "train")


def _write(recipe: dict) -> Path:
    import tempfile

    import yaml

    path = Path(tempfile.mkdtemp()) / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_the_readme_table_names_exactly_the_heads_each_task_has():
    # Its "What is in it" table: one row per task, its heads in backticks in the second column.
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        task = cells[0].strip("`")
        if line.startswith("|") and len(cells) > 2 and task in _names.TASK_HEADS:
            rows[task] = sorted(re.findall(r"`(\w+)`", cells[1]))
    assert rows == {task: vh.list_heads(task)[task] for task in _names.TASK_HEADS}
