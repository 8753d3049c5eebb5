"""Experiment trackers by name beside the run folder: an MLflow run against a local file store, read back with
MLflow's own client (parameters, a metric per epoch, the checkpoints and plots as artifacts), and a W&B run in
offline mode (its log and files on disk)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import visionheads as vh

mlflow = pytest.importorskip("mlflow")  # the [mlflow] extra; the dev install has it


def test_an_mlflow_run_holds_the_fits_parameters_metrics_per_epoch_and_files(tmp_path, monkeypatch):
    store = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for those who ask
    task = vh.Task("classification", backbone="lenet5", image_size=16, seed=0)
    history = task.fit("digits[:96]", "digits:val[:32]", epochs=3, batch_size=32, progress=False,
                       project=tmp_path / "runs", logger="mlflow")  # fmt: skip
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("classification")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == history.run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["backbone"] == "lenet5" and run.data.params["image_size"] == "16"
    ours = list(csv.DictReader((history.run_dir / "metrics.csv").open()))
    for name in ("train_loss", "val_accuracy"):
        logged = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in logged] == [1, 2, 3]
        assert [m.value for m in logged] == pytest.approx([float(row[name]) for row in ours], rel=1e-6)
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"best.pt", "last.ckpt", "config.yaml", "metrics.csv", "curves.png", "confusion_matrix.png"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "best.pt", str(tmp_path / "back"))
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    for back, kept in zip(vh.Task.load(local).predict(images), task.predict(images), strict=True):
        np.testing.assert_array_equal(back["probs"], kept["probs"])  # the weights fit kept


def test_a_tracker_that_is_not_installed_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    task = vh.Task("classification", backbone="lenet5", image_size=16)
    with pytest.raises(vh.ConfigError, match="logger='wandb' needs the wandb package: pip install wandb"):
        task.fit("digits[:64]", epochs=1, progress=False, plots=False, logger="wandb")


def test_a_wandb_run_in_offline_mode_holds_the_metrics_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    task = vh.Task("classification", backbone="lenet5", image_size=16, seed=0)
    history = task.fit("digits[:96]", "digits:val[:32]", epochs=2, batch_size=32, progress=False,
                       project=tmp_path / "runs", logger="wandb")  # fmt: skip
    (offline,) = (history.run_dir / "wandb").glob("offline-run-*")
    saved = {path.name for path in (offline / "files" / history.run_dir.name).iterdir()}
    assert {"best.pt", "last.ckpt", "metrics.csv", "curves.png", "config.yaml"} <= saved
    # The offline log (what `wandb sync` uploads) holds each epoch's values as JSON beside their names.
    log = next(offline.glob("run-*.wandb")).read_bytes()
    for row in csv.DictReader((history.run_dir / "metrics.csv").open()):
        for name in ("train_loss", "val_accuracy"):
            assert name.encode() in log and json.dumps(float(row[name])).encode() in log, (name, row[name])
