"""Shared fixtures: every test runs in its own folder, so run folders never mix."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("VISIONHEADS_OFFLINE", "1")  # a test never needs the network
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True, scope="session")
def _data_home(tmp_path_factory):
    # Built-in data made on first use (shapes) goes to a cache of the test session, never the user's.
    os.environ["VISIONHEADS_HOME"] = str(tmp_path_factory.mktemp("visionheads_home"))
    yield


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def tiny_arrays():
    """16 random 3-channel 32x32 images with labels 0..3, seeded."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(16, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(16) % 4
    return images, labels


@pytest.fixture
def class_folders(tmp_path):
    """A tiny ImageFolder tree (cat, dog, fox; 4 seeded noise PNGs each); returns its root."""
    root = tmp_path / "folders"
    rng = np.random.default_rng(1)
    for name in ("cat", "dog", "fox"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root
