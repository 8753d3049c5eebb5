"""The `visionheads` command: recipes with overrides, evaluate, predict, list, and clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import visionheads as vh
from visionheads.cli import main
from visionheads.recipes import load_recipe, parse_overrides

RECIPES = Path(__file__).resolve().parents[2] / "tasks"


def _tiny_recipe(tmp_path: Path) -> Path:
    recipe = load_recipe(RECIPES / "classification_digits.yaml")
    recipe["data"]["train"] = "digits[:400]"
    recipe["task"]["image_size"] = 16
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_fit_recipe_with_overrides_prints_test_metrics(tmp_path, capsys):
    assert main(["fit", str(_tiny_recipe(tmp_path)), "epochs=3", "fit.batch_size=32", "name=cli"]) == 0
    out = capsys.readouterr().out
    assert "test metrics on digits:test" in out and "accuracy" in out
    run = tmp_path / "runs" / "classification" / "cli"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["fit"]["epochs"] == 3 and saved["fit"]["batch_size"] == 32
    assert yaml.safe_load((run / "test_metrics.yaml").read_text())["accuracy"] > 0.5
    assert (run / "confusion_matrix.png").stat().st_size > 1000 and (run / "curves.png").is_file()

    assert main(["evaluate", str(run / "best.pt"), "digits:test[:50]"]) == 0
    assert "metrics on digits:test[:50]" in capsys.readouterr().out

    image = tmp_path / "seven.png"
    Image.fromarray(np.zeros((24, 24), dtype=np.uint8)).save(image)
    assert main(["predict", str(run / "best.pt"), str(image)]) == 0
    assert "seven.png: {'label':" in capsys.readouterr().out


def test_run_recipe_in_python_matches_the_cli(tmp_path):
    task = vh.run_recipe(_tiny_recipe(tmp_path), {"epochs": 1, "name": "py"})
    assert set(task.history.test_metrics) == {"loss", "accuracy", "macro_f1", "top5_accuracy"}
    assert task.history.run_dir.name == "py" and len(task.history.rows) == 1


@pytest.mark.smoke
def test_fit_by_task_name_and_bad_override_are_clear(tmp_path, capsys):
    assert main(["fit", "classification", "train=digits[:100]", "epochs=1", "backbone=lenet5", "in_chans=1",
                 "image_size=16", "test=digits:test[:40]"]) == 0  # fmt: skip
    assert "test metrics" in capsys.readouterr().out
    assert main(["fit", str(_tiny_recipe(tmp_path)), "nonsense"]) == 2
    assert "must look like key=value" in capsys.readouterr().err
    assert main(["fit", str(_tiny_recipe(tmp_path)), "backbone=resnt18"]) == 2
    assert "did you mean 'resnet18'" in capsys.readouterr().err


def test_exponent_numbers_are_floats_in_recipes_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: {name: classification}\ndata: {train: digits}\nfit: {lr: 3e-4, weight_decay: 1.E-2}\n")
    loaded = load_recipe(recipe, parse_overrides(["epochs=1e1", "name=2e5run", "fit.momentum=[1e-3, .5e1]"]))
    assert loaded["fit"]["lr"] == pytest.approx(3e-4) and loaded["fit"]["weight_decay"] == pytest.approx(0.01)
    assert loaded["fit"]["epochs"] == 10.0 and loaded["fit"]["momentum"] == [0.001, 5.0]
    assert loaded["fit"]["name"] == "2e5run"  # words stay words


def test_recipe_shape_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: {name: classification}\nmodel: {}\n")
    with pytest.raises(vh.ConfigError, match="sections"):
        load_recipe(bad)
    bad.write_text("task: {name: classification}\ndata: {training: digits}\n")
    with pytest.raises(vh.ConfigError, match=r"unknown data key\(s\) \['training'\]"):
        load_recipe(bad)


def test_list_commands(capsys):
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "timm/<any timm model name>" in out
    assert main(["list", "heads"]) == 0
    assert "classification: linear, mlp" in capsys.readouterr().out


def test_console_script_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "visionheads.cli", "evaluate", str(tmp_path / "missing.pt"), "digits:test"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "checkpoint not found" in result.stderr and "Traceback" not in result.stderr


def test_demo_trains_tests_and_leaves_a_loadable_checkpoint(tmp_path, capsys):
    assert main(["demo", "--epochs", "2", "--project", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "test metrics on digits:test (360 images)" in out
    checkpoint = tmp_path / "runs" / "classification" / "demo" / "model.pt"
    assert f"checkpoint: {checkpoint}" in out
    assert vh.Task.load(checkpoint).evaluate("digits:test")["accuracy"] > 0.5  # 2 epochs, chance is 0.1


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_recipe_builds_its_task_and_fit_settings(recipe):
    loaded = load_recipe(recipe)
    arguments = dict(loaded["task"])
    arguments.pop("weights", None)  # downloaded or prepared files are not here; weights loading is tested apart
    task = vh.Task(arguments.pop("name"), **arguments)
    vh.tasks.FitSettings.from_arguments(dict(loaded["fit"]))  # as fit takes them: unknown or invalid ones raise
    assert task.name == loaded["task"]["name"] and task.config.head == loaded["task"].get("head", task.default_head)
