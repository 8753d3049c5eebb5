"""`visionheads compare`: one recipe, once per transfer strategy, in one table and one figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import visionheads as vh
from visionheads.cli import main
from visionheads.comparing import compare_strategies

RECIPE = {
    "task": {"name": "classification", "backbone": "lenet5", "in_chans": 1, "image_size": 16},
    "data": {"train": "digits:train[:160]", "test": "digits:test[:80]"},
    "fit": {"epochs": 2, "batch_size": 32, "lr": 0.01, "plots": False, "progress": False},
}


def test_compare_trains_each_strategy_on_the_same_data_and_prints_one_table(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    assert main(["compare", str(recipe), "strategy=scratch,freeze", f"project={tmp_path}"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| scratch") or line.startswith("| freeze")]
    assert len(table) == 2 and "accuracy on test data (digits:test[:80])" in out
    trainable = {line.split("|")[1].strip(): int(line.split("|")[4].replace(",", "")) for line in table}
    body = sum(p.numel() for p in vh.create_backbone("lenet5", in_chans=1).parameters())
    assert trainable["scratch"] - trainable["freeze"] == body  # freeze trains the head alone
    assert (tmp_path / "classification" / "compare.png").is_file()


def test_without_validation_data_every_strategy_holds_out_the_same_fifth_of_training(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE | {"fit": RECIPE["fit"] | {"epochs": 1, "project": str(tmp_path)}}))
    runs, measured_on = compare_strategies(recipe, ["scratch", "features"])
    configs = [yaml.safe_load((run.run_dir / "config.yaml").read_text())["fit"] for run in runs]
    assert [c["train"] for c in configs] == ["digits:train[:160] (train, 128)"] * 2
    assert [c["val"] for c in configs] == ["digits:train[:160] (held-out validation, 32)"] * 2
    assert all("val_accuracy" in run.rows[-1] for run in runs) and measured_on.startswith("test data")


def test_unknown_strategy_is_a_config_error(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    with pytest.raises(vh.ConfigError, match="strategy=scratch,sideways: use some of"):
        compare_strategies(Path(recipe), ["scratch", "sideways"])
