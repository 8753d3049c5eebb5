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


def test_a_checkpoint_given_another_tasks_data_says_so_in_those_words(tmp_path, capsys):
    checkpoint = vh.Task("segmentation", backbone="simple_cnn", image_size=32).save(tmp_path / "seg.pt")
    with pytest.raises(vh.DataError, match="a segmentation task given classification data"):
        vh.Task.load(checkpoint).evaluate("digits:test")
    with pytest.raises(vh.DataError, match="a classification task given detection or segmentation data"):
        vh.Task("classification", backbone="lenet5", image_size=16).fit("shapes", epochs=1)
    assert main(["evaluate", str(checkpoint), "digits:test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "segmentation task given classification data" in err


@pytest.mark.parametrize(
    "key, suggestion",
    [
        ("epocs", "epochs"),
        ("batchsize", "batch_size"),
        ("max_epoch", "max_epochs"),
        ("backbon", "backbone"),
        ("imagesize", "image_size"),
    ],  # fmt: skip
)
def test_misspelled_keys_get_a_did_you_mean_from_task_fit_and_trainer_arguments(key, suggestion, capsys, tmp_path):
    with pytest.raises(vh.ConfigError, match=f"did you mean {suggestion!r}"):
        vh.Task("classification", backbone="lenet5", **{key: 3})
    assert main(["fit", "classification", "train=digits", f"project={tmp_path}", f"{key}=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"did you mean {suggestion!r}" in err


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_bad_batch_sizes_of_evaluate_and_predict_are_config_errors(batch_size, tmp_path, capsys):
    import numpy as np

    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16, num_classes=10)
    with pytest.raises(vh.ConfigError, match="batch_size must be a whole number >= 1"):
        task.evaluate("digits:test", batch_size=batch_size)
    with pytest.raises(vh.ConfigError, match="batch_size must be a whole number >= 1"):
        task.predict(np.zeros((2, 16, 16, 1), np.uint8), batch_size=batch_size)
    if isinstance(batch_size, int):
        assert main(["evaluate", str(task.save(tmp_path / "c.pt")), "digits:test", f"--batch-size={batch_size}"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_bad_target_found_by_a_dataloader_worker_is_still_one_line():
    import numpy as np

    from visionheads.cli import _one_line

    images, angles = np.zeros((16, 16, 16, 1), np.uint8), np.linspace(-40, 40, 16)
    angles[9] = np.nan
    task = vh.Task("regression", backbone="lenet5", in_chans=1, image_size=16)
    with pytest.raises(vh.DataError) as caught:
        list(task.data_loader((images, angles), train=False, batch_size=4, num_workers=1))
    assert _one_line(caught.value).startswith("arrays[9]['angle']: target is NaN or infinite")
