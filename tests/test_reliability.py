"""Bad input gets one clear line: a ConfigError/DataError naming the field (API), or that line and exit 2 (CLI)."""

from __future__ import annotations

import pytest

import visionheads as vh
from visionheads.cli import main


@pytest.mark.parametrize(
    "arguments",
    [
        {"image_size": 0},
        {"image_size": -5},
        {"image_size": "abc"},
        {"image_size": 2.5},
        {"num_classes": 0},
        {"num_classes": 2.5},
        {"num_classes": "ten"},
        {"num_classes": True},
    ],  # fmt: skip
    ids=str,
)
def test_bad_task_sizes_are_config_errors_naming_the_field(arguments):
    name = next(iter(arguments))
    with pytest.raises(vh.ConfigError, match=f"{name} must be a whole number >= 1"):
        vh.Task("classification", backbone="lenet5", **arguments)


@pytest.mark.parametrize("override", ["image_size=0", "num_classes=0", "epochs=0", "batch_size=-1", "lr=fast"])
def test_bad_values_on_the_command_line_give_one_line_and_exit_2(override, capsys, tmp_path):
    code = main(["fit", "classification", "train=digits", "backbone=lenet5", f"project={tmp_path}", override])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and override.split("=")[0] in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing was trained or written


def test_fits_racing_for_one_run_name_all_get_their_own_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from visionheads.engine import new_run_dir

    (tmp_path / "classification" / "same").mkdir(parents=True)  # an earlier run took the name
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(tmp_path, "classification", "same"), range(32)))
    assert len(set(folders)) == 32 and all(folder.is_dir() for folder in folders)
    assert {folder.name for folder in folders} == {f"same-{n}" for n in range(2, 34)}
