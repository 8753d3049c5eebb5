"""The classification task end to end: every backbone trains, it learns digits, bad data fails clearly."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import visionheads as vh
from visionheads.data.digits import digits_arrays

from contract import check_training_step, input_size, noise_images

pytestmark = pytest.mark.classification

FAST = {"plots": False, "batch_size": 8}


@pytest.mark.parametrize("head", vh.list_heads("classification")["classification"])
@pytest.mark.parametrize("backbone", vh.list_backbones())
def test_every_backbone_trains_a_step(backbone, head, bodies):
    body = bodies(backbone)
    size = input_size(body)
    task = vh.Task("classification", backbone=body, head=head, num_classes=10, image_size=size)
    samples = [{"image": image, "label": label} for image, label in zip(noise_images(2, size), [1, 7], strict=True)]
    values = check_training_step(task, samples)
    assert set(values) == {"accuracy", "macro_f1", "top5_accuracy"}


def test_fit_learns_digits_well_above_chance():
    task = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16, seed=0)
    history = task.fit("digits[:600]", "digits:val", epochs=4, batch_size=32, lr=3e-3, plots=False)
    losses = history["train_loss"]
    assert losses[-1] < 0.5 * losses[0]
    metrics = task.evaluate("digits:test")
    assert metrics["accuracy"] > 0.8  # chance is 0.1
    assert set(metrics) == {"loss", "accuracy", "macro_f1", "top5_accuracy"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert (history.run_dir / "best.pt").is_file() and (history.run_dir / "metrics.csv").is_file()


def test_top5_accuracy_is_its_own_after_a_first_batch_without_errors():
    # torchmetrics' compute groups once merged top-5's state with macro-F1's when a first batch had no top-1 error
    task = vh.Task("classification", backbone="simple_cnn", num_classes=10, image_size=32)
    metrics = task.new_metrics(None)
    labels = torch.arange(10)
    task.update_metrics(metrics, 5 * torch.eye(10), {"label": labels})  # all right
    second = torch.zeros(10, 10)
    second[:, 0], second[labels, (labels + 1) % 10] = 2.0, 1.0  # top-1 wrong but one (label 0), top-5 right for all
    task.update_metrics(metrics, second, {"label": (labels + 1) % 10})
    values = task.metric_values(metrics.compute())
    assert values["accuracy"] == pytest.approx(11 / 20)
    assert values["top5_accuracy"] == 1.0


def test_fit_on_arrays_infers_classes_and_writes_plots(tiny_arrays):
    images, labels = tiny_arrays
    task = vh.Task("classification", backbone="lenet5", image_size=32)
    history = task.fit((images, labels), epochs=2, batch_size=8)
    assert task.num_classes == 4 and task.class_names == ["0", "1", "2", "3"]
    assert len(history.rows) == 2 and history.monitor == "train_loss"
    assert (history.run_dir / "curves.png").stat().st_size > 1000
    assert (history.run_dir / "config.yaml").is_file()


@pytest.mark.smoke
def test_class_folders_give_class_names_and_predictions(tmp_path, class_folders):
    root = class_folders
    task = vh.Task("classification", backbone="lenet5", image_size=32)
    task.fit(root, root, epochs=1, **FAST)
    assert task.class_names == ["cat", "dog", "fox"]
    results = task.predict([root / "dog" / "0.png", root / "cat" / "1.png"])
    assert [r["label"] in task.class_names for r in results] == [True, True]
    assert all(abs(r["probs"].sum() - 1) < 1e-5 and r["score"] == r["probs"].max() for r in results)
    paths = task.plot(tmp_path / "figures", data=root)
    assert [p.name for p in paths] == ["curves.png", "confusion_matrix.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_corrupt_image_is_named(class_folders):
    root = class_folders
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(vh.DataError, match=r"broken\.jpg.*not a readable image"):
        vh.Task("classification", backbone="lenet5").fit(root, epochs=1, **FAST)


def test_empty_class_folder_is_named(class_folders):
    root = class_folders
    (root / "empty_class").mkdir()
    with pytest.raises(vh.DataError, match=r"empty_class.*holds no images"):
        vh.Task("classification", backbone="lenet5").fit(root, epochs=1, **FAST)


def test_non_image_file_is_named(class_folders):
    root = class_folders
    (root / "cat" / "notes.txt").write_text("not a picture")
    with pytest.raises(vh.DataError, match=r"notes\.txt.*not an image file"):
        vh.Task("classification", backbone="lenet5").fit(root, epochs=1, **FAST)


def test_num_classes_disagreeing_with_folders_is_a_config_error(class_folders):
    root = class_folders
    task = vh.Task("classification", backbone="lenet5", num_classes=5)
    with pytest.raises(vh.ConfigError, match=r"num_classes=5 but .* has 3 classes"):
        task.fit(root, epochs=1, **FAST)


def test_num_classes_below_the_labels_is_a_config_error(tiny_arrays):
    images, labels = tiny_arrays
    with pytest.raises(vh.ConfigError, match=r"num_classes=2 but arrays has 4 classes"):
        vh.Task("classification", backbone="lenet5", num_classes=2).fit((images, labels), epochs=1, **FAST)


def test_wrong_channel_count_in_a_dataset_names_the_sample(tiny_arrays):
    images, labels = tiny_arrays
    samples = [{"image": img[:, :, :1], "label": int(lab)} for img, lab in zip(images, labels, strict=False)]
    task = vh.Task("classification", backbone="lenet5", num_classes=4)
    with pytest.raises(vh.DataError, match=r"\[0\]\['image'\]: image has 1 channel\(s\) but the task expects 3"):
        task.fit(samples, epochs=1, **FAST)


def test_save_then_load_predicts_identically(tmp_path):
    images, labels = digits_arrays("val")
    task = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16)
    task.fit((images[:120], labels[:120]), epochs=1, **FAST)
    path = task.save(tmp_path / "model.pt")
    loaded = vh.Task.load(path)
    assert loaded.config == task.config
    batch = images[120:140]
    before = np.stack([r["probs"] for r in task.predict(batch)])
    after = np.stack([r["probs"] for r in loaded.predict(batch)])
    np.testing.assert_array_equal(before, after)


def test_loading_a_checkpoint_never_unpickles_objects(tmp_path, capsys):
    class Exploit:
        def __reduce__(self):
            return (print, ("code ran while loading",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as file:
        pickle.dump({"format": "visionheads-task", "config": Exploit()}, file)
    with pytest.raises(vh.ConfigError, match="not a readable visionheads checkpoint"):
        vh.Task.load(path)
    assert "code ran" not in capsys.readouterr().out


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    task = vh.Task("classification", backbone="lenet5", num_classes=3)
    path = task.save(tmp_path / "model.pt")
    original = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        task.save(path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


@pytest.mark.parametrize("strategy", ["freeze", "finetune", "features"])
def test_transfer_strategies_train_the_head(strategy, tmp_path, tiny_arrays):
    images, labels = tiny_arrays
    body = vh.create_backbone("simple_cnn")
    weights = tmp_path / "body.pt"
    torch.save(body.state_dict(), weights)
    task = vh.Task("classification", backbone="simple_cnn", weights=weights, num_classes=4, image_size=32)
    body_before = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in task.head.state_dict().items()}
    task.fit((images, labels), epochs=3, strategy=strategy, **FAST)
    body_changed = any(not torch.equal(v, task.backbone.state_dict()[k]) for k, v in body_before.items())
    head_changed = any(not torch.equal(v, task.head.state_dict()[k]) for k, v in head_before.items())
    assert head_changed
    assert body_changed == (strategy == "finetune")
    assert (task.history.run_dir / "metrics.csv").read_text().count("\n") == 4  # header + 3 epochs


def test_unknown_head_option_and_strategy_fail_clearly(tiny_arrays):
    with pytest.raises(vh.ConfigError, match=r"unknown head 'transformer'.*linear"):
        vh.Task("classification", head="transformer")
    with pytest.raises(vh.ConfigError, match=r"no option 'dropuot'; did you mean 'dropout'\?"):
        vh.Task("classification", dropuot=0.1)
    with pytest.raises(vh.ConfigError, match="unknown strategy"):
        vh.Task("classification", backbone="lenet5").fit(tiny_arrays, strategy="magic")
    with pytest.raises(vh.ConfigError, match=r"unknown task 'clasification'; did you mean 'classification'"):
        vh.Task("clasification")


def test_mlp_head_and_label_smoothing(tiny_arrays):
    task = vh.Task("classification", backbone="lenet5", head="mlp", hidden=32, label_smoothing=0.1, num_classes=4)
    history = task.fit(tiny_arrays, epochs=2, **FAST)
    assert task.head.classifier[0].out_features == 32
    spatial = vh.Task("classification", backbone="lenet5", pool_size=2, num_classes=4)
    assert spatial.head.classifier[1].in_features == 120 * 2 * 2  # 2x2 pooled cells of the 120-channel map
    assert spatial(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert np.isfinite(history["train_loss"]).all()


def test_grey_image_files_become_three_channels(tmp_path):
    root = tmp_path / "grey"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8), mode="L").save(root / name / f"{i}.png")
    task = vh.Task("classification", backbone="lenet5", image_size=16)
    task.fit(root, epochs=1, **FAST)
    assert task.predict(root / "a" / "0.png")[0]["label"] in ("a", "b")


def test_metrics_csv_has_one_row_per_epoch_and_early_stopping_stops():
    import csv

    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)
    history = task.fit("digits[:64]", "digits:val[:32]", epochs=6, lr=1e-9, patience=1, **FAST)
    assert len(history.rows) < 6  # a learning rate of 1e-9 cannot improve val_accuracy for long
    with open(history.run_dir / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == list(range(1, len(history.rows) + 1))  # epochs count from 1
    assert all(row["train_loss"] and row["val_accuracy"] for row in rows)


def test_class_names_alone_fix_the_number_of_classes_and_empty_data_is_named(tiny_arrays):
    task = vh.Task("classification", backbone="lenet5", class_names=["a", "b", "c", "d"])
    assert task.num_classes == 4 and task.head is not None
    with pytest.raises(vh.DataError, match="the dataset is empty"):
        task.evaluate((tiny_arrays[0][:0], tiny_arrays[1][:0]))


def test_fitting_on_other_class_names_than_the_tasks_is_a_config_error(class_folders):
    task = vh.Task("classification", backbone="lenet5", class_names=["ant", "bee", "cow"])
    with pytest.raises(vh.ConfigError, match=r"classes \['cat', 'dog', 'fox'\] differ from the task's \['ant'"):
        task.fit(class_folders, epochs=1, plots=False)
