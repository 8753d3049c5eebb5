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


# ----- weights files: every tensor fits, or a ConfigError that lists what does not ---------------------------------


def test_weights_of_another_architecture_list_missing_and_unexpected_tensors(tmp_path):
    import torch

    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    for name in ("lenet5", "resnet18"):  # timm loaded such a file without a word before (features_only is lenient)
        with pytest.raises(vh.ConfigError) as caught:
            vh.Task("classification", backbone=name, weights=path)
        message = str(caught.value)
        assert f"does not fit backbone {name!r}" in message and str(path) in message
        assert "not in the file (" in message and "in the file are not in the body (weight, bias)" in message
        assert "nothing in it fits" in message


def test_a_partial_match_needs_strict_false_which_says_what_it_loaded(tmp_path, capsys):
    import torch

    from visionheads.backbones import create_backbone

    source = create_backbone("simple_cnn", in_chans=1)
    kept = {k: v for k, v in source.body.state_dict().items() if not k.startswith("stages.3.")}
    path = tmp_path / "three_stages.pt"
    torch.save(kept, path)
    with pytest.raises(vh.ConfigError, match=r"not in the file \(stages\.3\..*pass strict=False to load the \d+ that"):
        create_backbone("simple_cnn", in_chans=1, weights=path)
    loaded = vh.Task("classification", backbone="simple_cnn", in_chans=1, weights=path, strict=False)
    said = capsys.readouterr().err
    body = loaded.model.body.body.state_dict()
    assert f"loaded {len([k for k in kept if 'num_batches' not in k])} of" in said and "strict=False" in said
    assert all(torch.equal(body[key], value) for key, value in kept.items())
    assert not torch.equal(body["stages.3.0.0.weight"], source.body.state_dict()["stages.3.0.0.weight"])


def test_a_local_file_is_recorded_as_the_file_never_as_imagenet(tmp_path):
    import timm
    import torch

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=5).state_dict(), path)  # its classifier is skipped
    task = vh.Task("classification", backbone="resnet18", weights=path, num_classes=3, image_size=32)
    assert task.config.pretrained == str(path)
    assert task.model.body.weights.tag == "file" and task.model.body.weights.source == str(path)


def test_wrapped_names_of_timm_features_and_whole_networks_both_load(tmp_path):
    import timm
    import torch

    from visionheads.backbones import create_backbone

    # timm's feature wrapper of VGG says features_0.*, the whole network features.0.*: a file of either fits.
    whole = timm.create_model("vgg11_bn", num_classes=4)
    torch.save(whole.state_dict(), tmp_path / "whole.pt")
    body = create_backbone("vgg11_bn", weights=tmp_path / "whole.pt")
    assert torch.equal(body.body.state_dict()["features_0.weight"], whole.state_dict()["features.0.weight"])
    torch.save(body.state_dict(), tmp_path / "body.pt")
    again = create_backbone("vgg11_bn", weights=tmp_path / "body.pt")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in body.state_dict().items())


# ----- resume: checked before anything in the run folder is touched -----------------------------------------------


class _PowerCut:
    """A Lightning callback raising as epoch `epoch` (from 1) starts: the epochs before it are finished and saved."""

    def __new__(cls, epoch: int):
        import lightning as L

        class PowerCut(L.Callback):
            def on_train_epoch_start(self, trainer, module):
                if trainer.current_epoch + 1 == epoch:
                    raise RuntimeError("power cut")

        return PowerCut()


def _hashes(folder):
    import hashlib

    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_a_refused_resume_leaves_the_run_folder_unchanged_hash_for_hash(tmp_path):
    fit = {"train": "digits:train[:64]", "val": "digits:val[:32]", "epochs": 3, "batch_size": 32,
           "project": tmp_path, "name": "cut", "plots": False, "progress": False, "checkpoint_every": 0}  # fmt: skip
    with pytest.raises(RuntimeError, match="power cut"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(**fit, callbacks=[_PowerCut(2)])
    run = tmp_path / "classification" / "cut"
    before = _hashes(run)
    assert {"last.ckpt", "metrics.csv", "config.yaml", "best.pt"} <= {p.name for p in before}

    def resume(task_arguments, reason, **changes):
        task = vh.Task(**{"name": "classification", "backbone": "lenet5", "in_chans": 1, "image_size": 16}
                       | task_arguments)  # fmt: skip
        with pytest.raises(vh.ConfigError, match=reason):
            task.fit(**fit | {"name": None, "resume": run} | changes)
        assert _hashes(run) == before and {p.name for p in (tmp_path / "classification").iterdir()} == {"cut"}

    resume({"backbone": "simple_cnn"}, r"the run's task differs from this one \(backbone: 'lenet5' in the run")
    resume({"name": "siamese"}, "a classification checkpoint, given to a siamese fit")
    resume({"image_size": 20}, r"image_size: 16 in the run, 20 now")
    resume({}, r"changes epochs=3 in the run, 5 now .*learning-rate schedule", epochs=5)
    resume({}, r"changes batch_size=32 in the run, 16 now", batch_size=16)
    resume({}, r"changes train='digits:train\[:64\]' in the run, 'digits:train\[:48\]' now", train="digits:train[:48]")
    checkpoint = run / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])  # a copy cut short by a full disk
    before = _hashes(run)
    resume({}, r"last.ckpt: not a readable visionheads checkpoint")


def test_resuming_a_finished_run_says_there_is_nothing_to_resume(tmp_path):
    fit = {"train": "digits:train[:64]", "val": False, "epochs": 1, "batch_size": 32, "project": tmp_path,
           "plots": False, "progress": False}  # fmt: skip
    run = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(**fit).run_dir
    with pytest.raises(vh.ConfigError, match=r"the run finished all its 1 epoch\(s\); there is nothing to resume"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(**fit, resume=run)


# ----- a fit that cannot go on: NaN loss, signals, and what is left on disk -----------------------------------------

_TINY_FIT = {"train": "digits:train[:64]", "val": "digits:val[:32]", "epochs": 3, "batch_size": 32,
             "plots": False, "progress": False, "checkpoint_every": 0}  # fmt: skip


class _AtEpoch:
    """A Lightning callback running `action(trainer)` as epoch `epoch` (from 1) starts."""

    def __new__(cls, epoch: int, action):
        import lightning as L

        class AtEpoch(L.Callback):
            def on_train_epoch_start(self, trainer, module):
                if trainer.current_epoch + 1 == epoch:
                    action(trainer)

        return AtEpoch()


def _poison_the_weights(trainer):  # as an overflow in the previous step would leave them
    for parameter in trainer.lightning_module.parameters():
        parameter.data.fill_(float("nan"))


def test_a_loss_that_turns_nan_stops_the_fit_naming_epoch_and_batch_and_keeps_the_last_good_checkpoint(tmp_path):
    import torch

    from visionheads.runtime.checkpoint import read_task_file

    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)
    with pytest.raises(vh.TrainingError, match=r"loss became (nan|inf) at epoch 2, batch 1; .*Lower lr"):
        task.fit(**_TINY_FIT, project=tmp_path, name="nan", callbacks=[_AtEpoch(2, _poison_the_weights)])
    saved = read_task_file(tmp_path / "classification" / "nan" / "last.ckpt")
    assert saved.epoch == 1 and all(torch.isfinite(v).all() for v in saved.state_dict.values() if v.is_floating_point())
    assert (tmp_path / "classification" / "nan" / "best.pt").is_file()


def test_a_fit_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    def fail(trainer):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(
            **_TINY_FIT, project=tmp_path, callbacks=[_AtEpoch(1, fail)]
        )
    with pytest.raises(vh.ConfigError, match="invalid training option"):
        vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(
            **_TINY_FIT, project=tmp_path, accelerator="abacus"
        )
    assert not any((tmp_path / "classification").iterdir())


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_and_sigterm_exit_130_and_143_with_the_resume_state_saved(signal_name, code, monkeypatch, capsys):
    import os
    import signal

    from visionheads.runtime import fitting
    from visionheads.runtime.checkpoint import read_task_file

    def send(trainer):
        os.kill(os.getpid(), getattr(signal, signal_name))

    build = fitting.build_trainer
    monkeypatch.setattr(fitting, "build_trainer", lambda **kw: build(**kw | {"callbacks": [_AtEpoch(3, send)]}))
    sigint = signal.getsignal(signal.SIGINT)
    try:
        arguments = [f"{key}={value}" for key, value in _TINY_FIT.items() if key != "progress"]
        command = ["fit", "classification", "backbone=lenet5", "in_chans=1", "image_size=16", "name=cut", *arguments]
        if signal_name == "SIGINT":
            assert main(command) == code
        else:
            with pytest.raises(SystemExit) as stop:
                main(command)
            assert stop.value.code == code
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores further Ctrl-C after a graceful shutdown
    assert "resume=runs/classification/cut" in capsys.readouterr().err
    assert read_task_file("runs/classification/cut/last.ckpt").epoch == 2


def test_every_number_of_steps_gives_a_one_cycle_schedule_that_runs_to_its_end():
    import torch

    from visionheads.runtime.module import one_cycle_warmup

    for steps in range(1, 60):  # 5 steps (160 images, batch 32, 1 epoch) divided by zero inside OneCycleLR
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=1e-3, total_steps=steps, pct_start=one_cycle_warmup(steps)
        )
        for _ in range(steps):
            optimizer.step()
            schedule.step()


def test_a_fit_of_exactly_five_steps_trains():
    history = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16).fit(
        "digits:train[:160]", val=False, epochs=1, batch_size=32, plots=False, progress=False
    )
    assert len(history.rows) == 1


def test_a_checkpoint_given_another_tasks_data_says_so_in_those_words(tmp_path, capsys):
    checkpoint = vh.Task("segmentation", backbone="simple_cnn", image_size=32).save(tmp_path / "seg.pt")
    with pytest.raises(vh.DataError, match="a segmentation task given classification data"):
        vh.Task.load(checkpoint).evaluate("digits:test")
    with pytest.raises(vh.DataError, match="a classification task given detection or segmentation data"):
        vh.Task("classification", backbone="lenet5", image_size=16).fit("shapes", epochs=1)
    assert main(["evaluate", str(checkpoint), "digits:test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "segmentation task given classification data" in err


def test_a_weights_file_of_python_objects_is_one_line_without_torchs_advice_to_unpickle_it(tmp_path):
    import pickle

    path = tmp_path / "objects.pt"
    path.write_bytes(pickle.dumps({"conv1.weight": print}))  # a callable: torch's weights_only refuses it
    with pytest.raises(vh.ConfigError) as caught:
        vh.Task("classification", backbone="lenet5", weights=path)
    message = str(caught.value)
    assert "holds Python objects" in message and len(message.splitlines()) == 1
    assert "weights_only" not in message and "will likely succeed" not in message


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


def test_one_sample_batches_never_reach_training():
    import numpy as np

    images, labels = np.random.default_rng(0).integers(0, 255, (33, 32, 32, 1), dtype=np.uint8), np.arange(33) % 2
    task = vh.Task("classification", backbone="resnet18", in_chans=1, image_size=32)  # BatchNorm on 1x1 maps
    loader = task.data_loader((images, labels), train=True, batch_size=32)
    assert [len(batch["label"]) for batch in loader] == [32]  # the 33rd sample's batch of one is dropped
    with pytest.raises(vh.DataError, match="1 training sample; training needs at least 2"):
        task.fit((images[:1], labels[:1]), val=False, epochs=1)


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
