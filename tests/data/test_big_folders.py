"""One bad file among thousands: fit refuses before the first epoch and names every unreadable image at once (a
truncated JPEG included, found without decoding the photos in full); predict gives a result for each readable
image and the file's DataError in place of each unreadable one; the command line says each and exits 1."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import visionheads as vh
from visionheads.cli import main

BROKEN = {"cat/0007.jpg": "truncated", "cat/0400.png": "junk", "dog/1501.jpg": "empty"}


def _folder(root, count: int = 2000, broken: dict[str, str] = BROKEN):
    """`count` small photos in two class folders (JPEG and PNG), those in `broken` broken as it says."""
    rng = np.random.default_rng(0)
    for index in range(count):
        name = f"{'cat' if index < count // 2 else 'dog'}/{index:04d}.{'png' if index % 2 == 0 else 'jpg'}"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        array = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG" if path.suffix == ".png" else "JPEG", quality=90)
        data = buffer.getvalue()
        kind = broken.get(name)
        if kind == "truncated":
            data = data[: len(data) * 2 // 3]  # the header intact, the compressed stream cut off
        elif kind == "junk":
            data = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8
        elif kind == "empty":
            data = b""
        path.write_bytes(data)
    return root


def test_fit_names_every_unreadable_image_of_a_big_folder_before_training(tmp_path):
    root = _folder(tmp_path / "photos")
    task = vh.Task("classification", backbone="lenet5", image_size=16)
    with pytest.raises(vh.DataError) as raised:
        task.fit(root, epochs=1, progress=False, plots=False, project=tmp_path / "runs")
    message = str(raised.value)
    assert message.startswith(f"{root}: 3 of 2000 image files cannot be read; remove or replace them")
    for name in BROKEN:
        assert str(root / name) in message
    assert not (tmp_path / "runs").exists()  # nothing trained, no run folder


def test_predict_over_a_big_folder_returns_each_readable_result_and_each_files_error(tmp_path, capsys):
    root = _folder(tmp_path / "photos")
    files = sorted(root.rglob("*.*"))
    task = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=2)
    results = task.predict(files, batch_size=256)
    assert len(results) == 2000
    errors = {str(files[i]): r for i, r in enumerate(results) if isinstance(r, vh.DataError)}
    assert sorted(errors) == sorted(str(root / name) for name in BROKEN)
    assert all(isinstance(r, dict) and 0 <= r["index"] < 2 for r in results if not isinstance(r, vh.DataError))
    good = [i for i, r in enumerate(results) if not isinstance(r, vh.DataError)][:5]
    alone = task.predict([files[i] for i in good])
    assert [r["index"] for r in alone] == [results[i]["index"] for i in good]  # each in its own place
    assert "predict: 3 of 2000 images could not be read" in capsys.readouterr().err
    with pytest.raises(vh.DataError, match="not a readable image"):  # nothing readable: nothing to return
        task.predict([root / "cat/0400.png"])


def test_cli_predict_writes_what_it_can_says_each_error_and_exits_1(tmp_path, capsys):
    root = _folder(tmp_path / "photos", count=8, broken={"cat/0001.jpg": "truncated"})
    task = vh.Task("classification", backbone="lenet5", image_size=16, num_classes=2)
    checkpoint = task.save(tmp_path / "model.pt")
    files = [str(root / "cat/0002.png"), str(root / "cat/0001.jpg"), str(root / "dog/0005.jpg")]
    assert main(["predict", str(checkpoint), *files]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(files[0] + ": {'label'") and lines[2].startswith(files[2] + ": {'label'")
    assert lines[1].startswith(files[1] + ": error: ") and "truncated" in lines[1].lower()
