"""Shared fixtures: every test runs in its own folder with its own caches, and never needs the network."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

# Where PYTHONDONTWRITEBYTECODE is set and packages were installed with --no-compile (the README's command), every
# interpreter compiles torch and Lightning from source again (~20 s on 2 cores). Let this one write the bytecode, so
# the tests that start interpreters (the console script, torchrun, the import checks) read it instead.
sys.dont_write_bytecode = False

# Before torch, timm or huggingface_hub are imported (they read these at import): weights caches of the test session
# only, so an offline test cannot pass or fail because of what this machine happens to have downloaded.
_CACHES = tempfile.mkdtemp(prefix="visionheads-test-caches-")
atexit.register(shutil.rmtree, _CACHES, ignore_errors=True)
for _variable in ("HF_HOME", "TORCH_HOME", "VISIONHEADS_HOME"):
    os.environ[_variable] = os.path.join(_CACHES, _variable.lower())
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["VISIONHEADS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import visionheads as vh  # noqa: E402

# Under pytest-xdist (pyproject's addopts) each worker takes one core: two workers of two threads each on two cores
# made tiny nets about 10x slower (the threads' barrier waits; see one_thread below).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(1 if _WORKERS > 1 else min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def bodies():
    """`bodies(name)`: one 3-channel backbone per registry name, built once per session (the contract tests share
    them across heads and tasks: building resnet50 or vgg16 for each of ~200 tests would cost minutes)."""
    built: dict[str, vh.backbones.Backbone] = {}

    def get(name: str) -> vh.backbones.Backbone:
        if name not in built:
            built[name] = vh.create_backbone(name)
        return built[name]

    return get


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


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests: tiny nets gain nothing from a second, and on a shared machine whose
    other core is busy the threads' barrier waits made training about 10x slower (0.7 s vs 9.4 s per epoch of 320
    images; tests/test_adversarial.py's fit: 114 s with two threads, 7 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
