"""Whole torchvision detectors by their own names, loaded offline from a state dict in torchvision's own layout
(here: randomly initialised ones, saved as torchvision saves them): the task's detections on real photos equal
torchvision's model with the same weights; with new classes every tensor but the predictors loads; the "coco" tag
without a network fails at once naming the file to pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_images
from torchvision.models import detection

import visionheads as vh

pytestmark = pytest.mark.detection
DETECTORS = ("fasterrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn_v2")
# Random heads score every class about 1/91: no threshold, so that the comparison compares boxes; 100 proposals
# instead of 1000 (the v2 box head's four convolutions per proposal are most of a forward pass)
OPEN = {"score_threshold": 0.0, "detections_per_image": 30, "min_size": 160, "max_size": 240, "proposals_test": 100}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos (a temple, a flower), 427x640 RGB: real photos that ship with a library."""
    return [np.array(image) for image in load_sample_images().images]  # writable: torch.from_numpy below


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, tuple[torch.nn.Module, Path]]:
    """Each detector built once, randomly initialised, and its state dict saved as torchvision saves its weights."""
    folder = tmp_path_factory.mktemp("torchvision")
    return {name: (_reference(name, folder / f"{name}.pth"), folder / f"{name}.pth") for name in DETECTORS}


def _reference(name: str, path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    build = getattr(detection, name)
    model = build(weights=None, weights_backbone=None, num_classes=91, box_score_thresh=0.0, box_detections_per_img=30,
                  min_size=160, max_size=240, rpn_post_nms_top_n_test=100).eval()  # fmt: skip
    torch.save(model.state_dict(), path)  # torchvision's own layout, as its weights files hold it
    return model


@pytest.mark.parametrize("name", DETECTORS)
def test_a_torchvision_state_dict_loads_and_detects_as_torchvision_does(name, photos, references, tmp_path):
    reference, weights = references[name]
    task = vh.Task("detection", model=name, weights=weights, **OPEN)
    assert task.class_names[:2] == ["background", "person"] and task.num_classes == 91  # COCO's, kept
    found = task.predict(photos)
    # torchvision's model gets the very tensors the task's pipeline makes (pixels times float32(1 / 255), which
    # differs from pixels / 255 in the last bit) and runs in the layout predict runs in (channels-last): a random
    # ResNet-50 amplifies either last-bit difference to 4e-3 px
    inputs = [task.model_inputs(torch.from_numpy(p).permute(2, 0, 1)[None])[0] for p in photos]
    reference.to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = reference(inputs)
    for ours, theirs in zip(found, expected, strict=True):
        assert len(ours["boxes"]) == len(theirs["boxes"]) > 0
        np.testing.assert_allclose(ours["boxes"], theirs["boxes"].numpy(), atol=1e-4)
        np.testing.assert_allclose(ours["scores"], theirs["scores"].numpy(), atol=1e-4)
        assert ours["label_ids"].tolist() == theirs["labels"].tolist()
        assert ours["category_ids"].tolist() == theirs["labels"].tolist()  # labels are COCO category ids
        if "masks" in theirs:
            assert (ours["masks"] == (theirs["masks"][:, 0] >= 0.5).numpy()).mean() > 0.9999
    loaded = vh.Task.load(task.save(tmp_path / "task.pt"))  # no weights needed: the file holds them all
    assert loaded.config == task.config
    for again, ours in zip(loaded.predict(photos[:1]), task.predict(photos[:1]), strict=True):  # same batch
        np.testing.assert_array_equal(again["boxes"], ours["boxes"])


def test_new_classes_replace_the_predictors_and_load_every_other_tensor(references, capsys):
    name = "maskrcnn_resnet50_fpn_v2"
    _, weights = references[name]
    saved = torch.load(weights, weights_only=True)
    task = vh.Task("detection", model=name, weights=weights, class_names=["background", "person"])
    ours = {key.removeprefix("model."): value for key, value in task.state_dict().items()}
    # the task's names for torchvision's: the trunk is the body, FPN, RPN and RoI heads the head
    renamed = {"body.body.body.": "backbone.body.", "head.fpn.": "backbone.fpn.", "head.rpn.": "rpn.",
               "head.roi_heads.": "roi_heads."}  # fmt: skip
    theirs = {}
    for key, value in ours.items():
        prefix = next(p for p in renamed if key.startswith(p))
        theirs[renamed[prefix] + key.removeprefix(prefix)] = value
    replaced = {
        key for key, value in theirs.items() if value.shape != saved[key].shape or not torch.equal(value, saved[key])
    }
    assert replaced == {"roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias",
                        "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias",
                        "roi_heads.mask_predictor.mask_fcn_logits.weight",
                        "roi_heads.mask_predictor.mask_fcn_logits.bias"}  # fmt: skip
    assert set(theirs) <= set(saved)
    assert "predictors made for 2 classes" in capsys.readouterr().err


def test_the_coco_tag_offline_names_the_file_to_pass_at_once():
    with pytest.raises(vh.ConfigError, match=r"fasterrcnn_resnet50_fpn_v2_coco-dd69338a\.pth"):
        vh.Task("detection", model="fasterrcnn_resnet50_fpn_v2", weights="coco")
    with pytest.raises(vh.ConfigError, match="unknown detector model 'yolo'"):
        vh.Task("detection", model="yolo")
