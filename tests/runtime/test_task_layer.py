"""The task layer's contract: one config as the single source of a task's arguments, checkpoints with a format
version, parameter groups by identity, fit's arguments declared once, and a model that exports without a Trainer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import visionheads as vh
from visionheads.runtime.checkpoint import read_task_file


def _segmenter() -> vh.Task:
    return vh.Task("segmentation", backbone="lenet5", head="fpn", num_classes=3, pyramid_channels=32, image_size=32)


def test_the_config_rebuilds_the_task_and_is_what_checkpoints_hold(tmp_path):
    task = _segmenter()
    config = task.config
    assert dataclasses.is_dataclass(config) and config.head_options["pyramid_channels"] == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 4  # type: ignore[misc]
    rebuilt = vh.Task("segmentation", **config.arguments())
    assert rebuilt.config == config
    assert dict(task.lightning_module().hparams) == {"name": "segmentation", **config.arguments()}
    saved = read_task_file(task.save(tmp_path / "seg.pt"))
    assert saved.task == "segmentation" and saved.arguments == config.arguments() and saved.version == 2


def test_a_version_1_checkpoint_still_loads(tmp_path):
    task = vh.Task("classification", backbone="lenet5", num_classes=3, image_size=32)
    state = {key.replace("model.body.", "backbone.").replace("model.head.", "head."): value
             for key, value in task.state_dict().items()}  # fmt: skip
    options = {"dropout": 0.0, "hidden": 256, "pool_size": 1, "label_smoothing": 0.0, "hflip": None}  # every head's
    config = {"task": "classification", "backbone": "lenet5", "head": "linear", "in_chans": 3, "image_size": 32,
              "num_classes": 3, "class_names": ["a", "b", "c"], "seed": 0, "mean": [0.5] * 3, "std": [0.5] * 3,
              "options": options}  # fmt: skip
    torch.save({"format": "visionheads-task", "version": 1, "config": config, "state_dict": state}, tmp_path / "v1.pt")
    loaded = vh.Task.load(tmp_path / "v1.pt")
    assert loaded.class_names == ["a", "b", "c"]
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    expected = np.stack([r["probs"] for r in task.predict(images)])
    np.testing.assert_allclose(np.stack([r["probs"] for r in loaded.predict(images)]), expected, atol=1e-6)


def test_a_newer_checkpoint_or_another_task_is_refused_clearly(tmp_path):
    task = vh.Task("classification", backbone="lenet5", num_classes=3)
    payload = torch.load(task.save(tmp_path / "model.pt"), weights_only=True)
    payload["visionheads"]["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(vh.ConfigError, match="format 99 is newer than this visionheads reads"):
        vh.Task.load(tmp_path / "future.pt")
    segmenter = _segmenter()
    with pytest.raises(vh.ConfigError, match="a classification checkpoint, given to a segmentation task"):
        segmenter.load_weights(tmp_path / "model.pt")


def test_parameter_groups_hold_the_body_then_everything_else_once():
    task = _segmenter()
    body, rest = vh.TaskModule(task, vh.TrainingPlan(strategy="finetune")).parameter_groups()
    assert {id(p) for p in body["params"]} == {id(p) for p in task.backbone.parameters()}
    grouped = [id(p) for group in (body, rest) for p in group["params"]]
    assert len(grouped) == len(set(grouped)) == len(list(task.parameters()))  # each parameter in exactly one group
    assert body["lr"] == pytest.approx(0.1 * rest["lr"])
    (head,) = vh.TaskModule(task, vh.TrainingPlan(strategy="freeze")).parameter_groups()
    assert {id(p) for p in head["params"]} == {id(p) for p in task.head.parameters()}


def test_the_model_traces_and_exports_without_a_trainer():
    task = vh.Task("classification", backbone="simple_cnn", num_classes=4, image_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    expected = task(images)
    torch.testing.assert_close(torch.jit.trace(task, images)(images), expected)
    exported = torch.export.export(task, (images,))
    torch.testing.assert_close(exported.module()(images), expected)


def test_fit_arguments_are_checked_with_suggestions_and_trainer_arguments_pass_through():
    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)
    with pytest.raises(vh.ConfigError, match="fit has no argument 'epocs'; did you mean 'epochs'"):
        task.fit("digits[:64]", epocs=3)
    with pytest.raises(vh.ConfigError, match="epochs must be a whole number >= 1"):
        task.fit("digits[:64]", epochs=0)
    history = task.fit("digits[:64]", val=False, epochs=2, batch_size=16, limit_train_batches=2, plots=False)
    assert [row["epoch"] for row in history.rows] == [1, 2]  # limit_train_batches reached lightning.Trainer


@pytest.mark.parametrize(("schedule", "shape"), [("constant", "flat"), ("cosine", "falls"), ("onecycle", "rises")])
def test_the_learning_rate_follows_the_schedule_asked(schedule, shape):
    import lightning as L

    rates: list[float] = []

    class RecordRate(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)
    task.fit("digits[:64]", val=False, epochs=2, batch_size=16, lr=0.01, schedule=schedule, plots=False,
             callbacks=(RecordRate(),))  # fmt: skip
    assert len(rates) == 8 and rates[0] <= 0.01
    if shape == "flat":
        assert rates == [0.01] * 8
    elif shape == "falls":
        assert rates[0] == 0.01 and all(a > b for a, b in zip(rates, rates[1:], strict=False)) and rates[-1] < 0.001
    else:  # warms up to the peak, then anneals
        assert rates[0] < rates[1] and rates[-1] < rates[2]
    with pytest.raises(vh.ConfigError, match="unknown schedule 'linear'"):
        task.fit("digits[:64]", schedule="linear")


def test_building_a_task_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = vh.Task("classification", backbone="lenet5", num_classes=3, seed=5)
    assert torch.equal(torch.rand(3), expected)
    second = vh.Task("classification", backbone="lenet5", num_classes=3, seed=5)
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )


def test_a_task_trains_under_a_trainer_the_user_brings_and_its_checkpoint_loads_back(tmp_path):
    import lightning as L

    task = vh.Task("segmentation", backbone="lenet5", num_classes=4, image_size=32)
    train = task.data_loader("shapes[:16]", train=True, batch_size=8)
    val = task.data_loader("shapes:val[:8]", train=False, batch_size=8)
    module = task.lightning_module(lr=3e-3)
    assert isinstance(module, L.LightningModule) and module.model is task.model  # it trains the task's own model
    before = {key: value.clone() for key, value in task.state_dict().items()}
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, train, val)
    assert {"train_loss", "train_loss_cross_entropy", "val_loss", "val_miou"} <= set(trainer.callback_metrics)
    assert trainer.global_step == 2 * 2
    assert any(not torch.equal(before[key], value) for key, value in task.state_dict().items())  # the task learnt
    trainer.save_checkpoint(tmp_path / "mine.ckpt")
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    expected = task.predict(images)
    for loaded in (
        vh.Task.load(tmp_path / "mine.ckpt"),
        vh.TaskModule.load_from_checkpoint(tmp_path / "mine.ckpt").task,
    ):
        assert loaded.config == task.config
        assert all(np.array_equal(a, b) for a, b in zip(loaded.predict(images), expected, strict=True))
    with pytest.raises(vh.ConfigError, match="lightning_module has no argument 'learning_rate'"):
        task.lightning_module(learning_rate=1e-3)


def test_standardize_images_makes_each_images_colour_scale_and_offset_irrelevant(tmp_path):
    x = torch.randn(4, 3, 16, 16)
    recoloured = x * torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1, 1) + torch.tensor([1.0, -2.0, 0.3]).view(1, 3, 1, 1)
    kept = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=3, standardize_images=True).eval()
    plain = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=3).eval()
    with torch.no_grad():
        assert torch.allclose(kept(x), kept(recoloured), atol=1e-3)
        assert not torch.allclose(plain(x), plain(recoloured), atol=1e-2)
        loaded = vh.Task.load(kept.save(tmp_path / "kept.pt")).eval()
        assert loaded.config.standardize_images and torch.allclose(loaded(recoloured), kept(x), atol=1e-3)
    # The statistics are constants to the gradient: a pixel's gradient comes through its own receptive field only.
    image = x[:1].clone().requires_grad_(True)
    kept.backbone(image)[0][0, :, 0, 0].sum().backward()  # the first stage's top-left cell
    reached = image.grad.abs().sum(dim=(0, 1)) > 0
    assert reached[0, 0] and not reached[8:, 8:].any()
    with pytest.raises(vh.ConfigError, match="standardize_images must be True or False"):
        vh.Task("classification", backbone="lenet5", num_classes=3, standardize_images="yes")


def test_pipelines_give_uint8_and_model_inputs_normalises_batches_as_albumentations_would():
    import albumentations as A

    task = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=3,
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # fmt: skip
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    pipeline = task.eval_transform()
    batch = torch.stack([pipeline(image=image)["image"] for image in images])
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 16, 16)
    normalise = A.Normalize(mean=task.config.mean, std=task.config.std)
    expected = torch.stack([torch.from_numpy(normalise(image=image)["image"]).permute(2, 0, 1) for image in images])
    inputs = task.model_inputs(batch)
    assert inputs.dtype == torch.float32 and torch.allclose(inputs, expected, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(task.model_inputs(list(batch)), expected, strict=True))
    assert task.model_inputs(expected) is expected  # float images are taken as normalised already
