"""Data adapters: built-in digits splits, source specs, array checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

import visionheads as vh
from visionheads.data.boxes import box_pipeline
from visionheads.data.catalog import resolve_builtin
from visionheads.data.digits import digits_arrays
from visionheads.data.images import read_image
from visionheads.data.samples import as_image
from visionheads.data.transforms import eval_pipeline, train_pipeline


def test_digits_splits_are_stratified_disjoint_and_seeded():
    sizes = {split: len(digits_arrays(split)[1]) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 360
    for split in ("train", "test"):
        counts = np.bincount(digits_arrays(split)[1], minlength=10)
        assert counts.min() >= 0.8 * counts.max()  # stratified: every digit about equally often
    train = {img.tobytes() for img in digits_arrays("train")[0]}
    assert not train & {img.tobytes() for img in digits_arrays("test")[0]}
    np.testing.assert_array_equal(digits_arrays("test", seed=0)[1], digits_arrays("test", seed=0)[1])
    assert not np.array_equal(digits_arrays("test", seed=0)[1], digits_arrays("test", seed=1)[1])


def test_builtin_specs_select_splits_and_slices():
    source = resolve_builtin("digits:test[:50]", channels=3)
    assert len(source.dataset) == 50 and source.dataset[0]["image"].shape == (32, 32, 3)
    assert resolve_builtin("digits", channels=1).val == "digits:val"
    with pytest.raises(vh.DataError, match="unknown split"):
        resolve_builtin("digits:holdout", channels=1)
    with pytest.raises(vh.ConfigError, match="unknown dataset 'digit'; did you mean 'digits'"):
        resolve_builtin("digit", channels=1)


def test_image_checks_name_the_problem():
    assert as_image(np.zeros((4, 4)), "x").shape == (4, 4, 1)
    assert as_image(np.full((4, 4, 3), 0.5), "x").max() == 128
    with pytest.raises(vh.DataError, match="channels-first"):
        as_image(np.zeros((3, 32, 32), dtype=np.uint8), "img7")
    with pytest.raises(vh.DataError, match="NaN"):
        as_image(np.full((4, 4), np.nan), "img7")
    with pytest.raises(vh.DataError, match=r"img7: image values span \[-1, 2\]"):
        as_image(np.array([[-1.0, 2.0]]), "img7")


def test_unknown_path_is_named(tmp_path):
    task = vh.Task("classification", backbone="lenet5")
    with pytest.raises(vh.DataError, match="neither a built-in dataset"):
        task.fit(tmp_path / "missing", epochs=1)


def test_pipelines_take_read_only_arrays_without_a_warning(tmp_path):
    # Pillow's arrays, memory-mapped files and shared datasets are read-only; torch.from_numpy warns on each of them
    image = np.zeros((20, 24, 3), dtype=np.uint8)
    mask = np.zeros((20, 24), dtype=np.int64)
    image.flags.writeable = mask.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert eval_pipeline(20)(image=image[:, :20], mask=mask[:, :20])["image"].shape == (3, 20, 20)
        out = train_pipeline(16, flips=True, seed=0)(image=image, mask=mask)
        assert out["image"].shape == (3, 16, 16) and out["mask"].shape == (16, 16)
        boxes = box_pipeline(train=False)(image=image)
        assert boxes["image"].shape == (3, 20, 24)
        Image.fromarray(np.full((20, 24, 3), 90, dtype=np.uint8)).save(tmp_path / "a.png")
        decoded = read_image(tmp_path / "a.png", 3)  # Pillow's read-only view
        assert eval_pipeline(20)(image=decoded)["image"].shape == (3, 20, 20)
