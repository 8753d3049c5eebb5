"""Every task's loss is safe under mixed precision: inside autocast (bf16, which this CPU runs), each loss term is
float32 and finite, and a fit in "bf16-mixed" learns. On GPUs fit picks bf16 or fp16 autocast (tests/test_engine.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import visionheads as vh

TINY_RCNN = {"fpn_channels": 16, "representation_size": 32, "proposals_train": 64, "proposals_test": 64,
             "rois_per_image": 32, "min_size": 64, "max_size": 64}  # fmt: skip
CASES = {
    "classification": ({"backbone": "lenet5", "in_chans": 1, "image_size": 16, "num_classes": 10}, "digits:train"),
    "regression": ({"backbone": "lenet5", "in_chans": 1, "image_size": 16}, "rotated-digits:train"),
    "segmentation": ({"backbone": "lenet5", "image_size": 32, "num_classes": 4}, "shapes:train"),
    "detection": ({"backbone": "simple_cnn", **TINY_RCNN}, "shapes:train"),
    "mask_rcnn": ({"backbone": "simple_cnn", "head": "mask_rcnn", **TINY_RCNN}, "shapes:train"),
    "autoencoder": ({"backbone": "lenet5", "in_chans": 1, "image_size": 16, "latent_dim": 8}, "digits:train"),
    "vae": ({"backbone": "lenet5", "head": "vae", "in_chans": 1, "image_size": 16, "latent_dim": 8}, "digits:train"),
    "siamese": ({"backbone": "lenet5", "in_chans": 1, "image_size": 16, "embedding_dim": 8}, "digits:train"),
}
TASK_OF = {"mask_rcnn": "detection", "vae": "autoencoder"}


def _batch(task: vh.Task, data: str, count: int) -> dict[str, Any]:
    source = task.source(f"{data}[:{count}]", fitting=True)
    batch = next(iter(task.data_loader(source, train=False, batch_size=count)))
    return batch | {"image": task.model_inputs(batch["image"])}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_loss_term_is_float32_and_finite_under_bf16_autocast(case):
    options, data = CASES[case]
    task = vh.Task(TASK_OF.get(case, case), **options).train()
    batch = _batch(task, data, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = task.training_losses(batch, 0)
        first = batch["image"][0].unsqueeze(0)  # detection batches are lists of images
        assert task.backbone(first)[-1].dtype == torch.bfloat16  # the model does run in bf16 here
    for name, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), (case, name, value)


def test_a_bf16_mixed_fit_learns(tmp_path):
    import lightning as L

    used = []

    class Precision(L.Callback):
        def on_train_start(self, trainer, module):
            used.append(trainer.precision)

    task = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=16)
    history = task.fit("digits:train[:384]", False, epochs=4, batch_size=32, lr=3e-3, precision="bf16-mixed",
                       accelerator="cpu", project=tmp_path, plots=False, progress=False,
                       callbacks=[Precision()])  # fmt: skip
    assert used == ["bf16-mixed"]
    assert history.rows[-1]["train_loss"] < 0.8 * history.rows[0]["train_loss"]
    assert task.evaluate("digits:test")["accuracy"] > 0.3  # 10 classes: chance is 0.1
