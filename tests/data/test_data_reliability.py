"""Every bad input to the data adapters is one clear DataError/ConfigError (part of the reliability issue): malformed
COCO annotations, empty and oversized images, ambiguous arrays; what an adapter leaves out is said once. The
hypothesis tests feed random bytes, JSON and arrays and accept only a valid sample or one of our errors."""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import visionheads as vh
from visionheads.data import COCOSubset
from visionheads.data.catalog import Source
from visionheads.data.folders import ClassFolders
from visionheads.data.images import MAX_PIXELS_VARIABLE, check_image_file, read_image
from visionheads.data.masks import MaskFolders
from visionheads.data.samples import ArraySamples, as_image, require_keys
from visionheads.data.sources import resolve_source
from visionheads.runtime.inference import image_arrays

OURS = (vh.DataError, vh.ConfigError)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ----- helpers ---------------------------------------------------------------------------------------------------
def write_coco(root: Path, annotations: list[dict], *, count: int = 2, categories: list[dict] | None = None) -> Path:
    """`count` 40x30 PNGs (ids 1..count) beside annotations.json, categories cat (7) and dog (9)."""
    root.mkdir(parents=True, exist_ok=True)
    images = []
    for image_id in range(1, count + 1):
        Image.fromarray(np.full((30, 40, 3), 90, dtype=np.uint8)).save(root / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 40, "height": 30})
    for number, annotation in enumerate(annotations, start=1):
        annotation.setdefault("id", number)
    categories = categories or [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def square(image_id: int, category_id: int, x: float, y: float, side: float, **extra) -> dict:
    polygon = [x, y, x + side, y, x + side, y + side, x, y + side]
    return {"image_id": image_id, "category_id": category_id, "bbox": [x, y, side, side],
            "segmentation": [polygon], "area": side * side, "iscrowd": 0, **extra}  # fmt: skip


def rle_of(pixels: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major run lengths, zeros first) of a 0/1 mask."""
    flat = pixels.flatten(order="F")
    counts = np.diff([0, *(np.flatnonzero(np.diff(flat)) + 1), flat.size]).tolist()  # the length of each run
    return {"size": list(pixels.shape), "counts": [0, *counts] if flat[0] else counts}


def png_header(width: int, height: int, data: bytes = b"") -> bytes:
    """A PNG whose header says width x height (RGB, 8 bit) followed by `data` as its only IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_detection_sample(sample: dict, height: int, width: int, classes: int) -> None:
    """A COCOSubset sample as the docstring promises it (the only other outcome allowed is a DataError)."""
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (height, width, 3)
    boxes, labels, masks = sample["boxes"], sample["labels"], sample["masks"]
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) and np.isfinite(boxes).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert labels.dtype == np.int64 and ((labels >= 1) & (labels < classes)).all()
    assert masks.dtype == np.uint8 and masks.shape == (len(labels), height, width)
    assert sample["mask"].dtype == np.int64 and sample["mask"].shape == (height, width)
    assert isinstance(sample["image_id"], int)


# ----- 1. COCO annotations ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"category_id": 8}, r"annotation 1 \(image 1\) has category_id 8, which is not among the categories \[7, 9\]"),
        ({"category_id": "cat"}, r"annotation 1 \(image 1\) has category_id 'cat'"),
        ({"image_id": 5}, r"annotation 1 has image_id 5, which no image of the file has"),
        ({"image_id": [1]}, r"annotation 1 has image_id \[1\]"),
        ({"bbox": [1, 2, 3]}, r"annotation 1 \(image 1\): bbox \[1, 2, 3\] is not 4 numbers"),
        ({"iscrowd": "yes"}, r"annotation 1 \(image 1\): iscrowd 'yes'; give 0 or 1"),
        ({"id": "a"}, r"annotations\[0\] has id 'a'; COCO ids are whole numbers"),
    ],
    ids=str,
)
def test_unknown_ids_and_malformed_fields_of_an_annotation_are_data_errors_naming_it(tmp_path, change, message):
    path = write_coco(tmp_path, [square(1, 7, 2, 3, 10) | change, square(2, 9, 0, 0, 5)])
    with pytest.raises(vh.DataError, match=message) as raised:
        COCOSubset(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([[2, 3, 12, 13]], r"segmentation\[0\]: a polygon of 4 coordinate\(s\)"),  # pycocotools: a bbox
        ([[2, 3, 12, 3, 12, 13, 2]], r"a polygon of 7 coordinate\(s\)"),  # pycocotools: drops the last one
        ([[2, 3, 12, 3]], r"a polygon of 4 coordinate"),
        ([[2, 3]], r"a polygon of 2 coordinate"),
        ([[]], r"a polygon of 0 coordinate"),
        ([["2", 3, 12, 3, 12, 13]], r"a flat list of numbers"),
        ([[2, 3, None, 3, 12, 13]], r"a flat list of numbers"),
        ([2, 3, 12, 3, 12, 13], r"a flat list of numbers"),  # one polygon without its outer list
        ([[2, 3, math.nan, 3, 12, 13]], "far outside the 40x30 image"),  # pycocotools: runs out of memory
        ([[2, 3, 1e12, 3, 12, 13]], "far outside the 40x30 image"),
        ("polygon", r"segmentation is a str; give polygons"),
        ({"size": [30, 40], "counts": [5, 5]}, r"the runs cover 10 pixels, but the 40x30 image has 1200"),
        ({"size": [30, 40], "counts": ""}, r"the runs cover 0 pixels"),  # pycocotools: uninitialised memory
        ({"size": [30, 40], "counts": [-5, 1205]}, r"counts \[-5, 1205\] are not run lengths"),
        ({"size": [30, 40], "counts": [1.5, 1198.5]}, r"are not run lengths"),
        ({"size": [30, 40], "counts": "garbage!!"}, r"counts 'garbage!!' are not run lengths"),
        ({"size": [30, 40], "counts": "\x00\x00"}, r"are not run lengths"),
        ({"size": [20, 20], "counts": [400]}, r"size \[20, 20\] is not the image's \[height, width\] \[30, 40\]"),
        ({"size": ["a", 40], "counts": [1200]}, r"size \['a', 40\]"),
        ({"counts": [1200]}, r"size None"),
        ({"size": [30, 40]}, r"counts is a NoneType"),
    ],
    ids=str,
)
def test_malformed_segmentations_are_data_errors_naming_the_annotation_not_pycocotools_crashes(
    tmp_path, segmentation, message
):
    path = write_coco(tmp_path, [square(1, 9, 0, 0, 5), square(1, 7, 2, 3, 10) | {"segmentation": segmentation}])
    dataset = COCOSubset(path)  # the file's structure is fine: the masks are checked as each sample is read
    with pytest.raises(vh.DataError, match=message) as raised:
        dataset[0]
    assert f"{path}: annotation 2 (image 1)" in str(raised.value)


def test_valid_polygons_and_rle_still_read_exactly_as_pycocotools_draws_them(tmp_path):
    pixels = np.zeros((30, 40), dtype=np.uint8)
    pixels[4:9, 20:31] = 1
    from pycocotools import mask as mask_utils

    compressed = mask_utils.encode(np.asfortranarray(pixels))
    compressed = {"size": [30, 40], "counts": compressed["counts"].decode("ascii")}
    triangle = {"image_id": 1, "category_id": 7, "bbox": [1, 1, 9, 9], "segmentation": [[1, 1, 10, 1, 1, 10]]}
    annotations = [square(1, 9, 2, 3, 10), triangle, {"image_id": 1, "category_id": 7, "bbox": [20, 4, 11, 5],
                   "segmentation": rle_of(pixels)}, {"image_id": 1, "category_id": 9, "bbox": [20, 4, 11, 5],
                   "segmentation": compressed}]  # fmt: skip
    path = write_coco(tmp_path, annotations)
    dataset = COCOSubset(path)
    sample = dataset[0]
    for index, annotation in enumerate(dataset.coco.imgToAnns[1]):
        np.testing.assert_array_equal(sample["masks"][index], dataset.coco.annToMask(annotation))
    np.testing.assert_array_equal(sample["masks"][2], pixels)
    np.testing.assert_array_equal(sample["masks"][3], pixels)


@pytest.mark.parametrize(
    ("bbox", "form"),
    [
        ([20, 4, 0, 5], "polygon"),
        ([20, 4, 11, -5], "polygon"),
        ([20, 4, 11, 1e-60], "polygon"),  # found by hypothesis: positive, but zero in the float32 sample
        ([40, 4, 0.5, 5], "rle"),  # nothing left once clipped to the 40-wide image
        ([0, 0, 0, 0], "rle"),
        ([20, 4, math.nan, 5], "rle"),
    ],
    ids=str,
)
def test_a_box_without_size_is_taken_from_a_valid_mask_not_dropped(tmp_path, bbox, form):
    pixels = np.zeros((30, 40), dtype=np.uint8)
    pixels[4:9, 20:31] = 1  # x 20..31, y 4..9
    segmentation = [[20, 4, 31, 4, 31, 9, 20, 9]] if form == "polygon" else rle_of(pixels)
    flat = {"image_id": 1, "category_id": 7, "bbox": bbox, "segmentation": segmentation}
    sample = COCOSubset(write_coco(tmp_path / "a", [flat, square(1, 9, 2, 15, 10)]))[0]
    assert sample["labels"].tolist() == [1, 2]  # kept, in file order
    assert sample["boxes"][0].tolist() == [20.0, 4.0, 31.0, 9.0]
    assert sample["masks"][0].sum() > 0 and sample["mask"][6, 25] == 1
    # Without a mask to take a box from, or with an empty one, the annotation cannot be a target: one clear error.
    box_only = {"image_id": 1, "category_id": 7, "bbox": bbox}
    with pytest.raises(vh.DataError, match=r"annotation 1 \(image 1\): bbox .* has no size and no mask"):
        COCOSubset(write_coco(tmp_path / "b", [box_only]))[0]
    empty = flat | {"segmentation": [[50, 50, 60, 50, 60, 55]]}  # wholly outside the image: no pixels
    with pytest.raises(vh.DataError, match=r"has no size and no pixels in its mask to take one from \(in the 40x30"):
        COCOSubset(write_coco(tmp_path / "c", [empty]))[0]


def test_a_box_only_annotation_thinner_than_a_pixel_still_marks_a_pixel(tmp_path):
    thin = {"image_id": 1, "category_id": 7, "bbox": [10, 5, 0.3, 4]}
    sample = COCOSubset(write_coco(tmp_path, [thin]))[0]
    assert sample["masks"][0].sum() == 4 and (sample["mask"][5:9, 10] == 1).all()


def test_what_a_coco_subset_leaves_out_is_counted_and_fit_prints_it_once_per_reason(tmp_path, monkeypatch, capsys):
    annotations = [
        square(1, 7, 2, 3, 10), square(1, 9, 20, 3, 5), square(1, 7, 20, 15, 8, iscrowd=1),  # image 1: cat, dog, crowd
        square(2, 7, 0, 0, 5, iscrowd=1),  # image 2: only a crowd region
        square(3, 9, 0, 0, 5),  # image 3: a dog only
        square(4, 7, 1, 1, 5), square(5, 7, 1, 1, 5),  # images 4 and 5: one cat each
    ]  # fmt: skip
    path = write_coco(tmp_path, annotations, count=6)  # image 6: no annotation at all
    cats = COCOSubset(path, categories=["cat"], max_images=2)
    assert cats.image_ids == [1, 4]
    assert cats.left_out == {
        "images with only crowd regions of the chosen categories left out": 1,
        "images without an object of the chosen categories left out (negatives=True keeps them)": 2,
        "images beyond max_images=2 left out": 1,
        "annotations of categories not chosen left out (their objects are background here)": 1,
        "crowd annotations left out (iscrowd=1: ignore regions, not objects; include_crowd=True)": 1,
    }
    assert COCOSubset(path, negatives=True, include_crowd=True).left_out == {}
    source = resolve_source({"coco": str(path), "categories": ["cat"]}, channels=3, target_key="mask", from_path=None)
    assert source.left_out["crowd annotations left out (iscrowd=1: ignore regions, not objects; include_crowd=True)"]
    assert Source(ArraySamples(np.zeros((2, 4, 4, 3), np.uint8)), "arrays").left_out == {}

    # fit says it on stderr, one line per reason, for the train and the val data, before it trains.
    monkeypatch.setattr("visionheads.runtime.fitting.new_run_dir", _stop)
    task = vh.Task("segmentation", backbone="lenet5", image_size=32)
    train, val = {"coco": str(path), "categories": ["cat"]}, {"coco": str(path), "categories": ["cat"], "max_images": 1}
    with pytest.raises(_Stopped):
        task.fit(train, val, epochs=1)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("coco:")]
    train_left_out = COCOSubset(path, categories=["cat"]).left_out
    val_left_out = COCOSubset(path, categories=["cat"], max_images=1).left_out
    assert lines == [f"coco:{path}:cat: {count} {reason}" for reason, count in train_left_out.items()] + [
        f"coco:{path}:cat[:1]: {count} {reason}" for reason, count in val_left_out.items()
    ]
    assert f"coco:{path}:cat: 1 crowd annotations left out (iscrowd=1: ignore regions, not objects; " in lines[3]
    assert len(lines) == 4 + 5  # the val part also has images beyond max_images


class _Stopped(Exception):
    pass


def _stop(*arguments):
    raise _Stopped


# ----- 2. images: empty, undecodable, too large ------------------------------------------------------------------
def test_empty_images_as_arrays_or_files_are_data_errors_naming_them(tmp_path):
    task = vh.Task("classification", backbone="lenet5", num_classes=2, image_size=32)
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 7, 3), np.uint8), np.zeros((5, 0), np.float32)):
        with pytest.raises(vh.DataError, match=r"images\[0\]: image of shape .* is empty"):
            task.predict(empty)
    with pytest.raises(vh.DataError, match=r"arrays\[0\]\['image'\]: image of shape \(0, 4, 3\) is empty"):
        task.fit(([np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)], np.array([0, 1])), epochs=1)
    for name, data in (("zero.png", png_header(0, 0)), ("flat.png", png_header(0, 12)), ("empty.png", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(vh.DataError, match=f"{name}: not a readable image") as raised:
            task.predict(str(tmp_path / name))
        assert str(tmp_path) in str(raised.value)


def test_decompression_bombs_are_data_errors_that_say_the_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))  # 10^10 pixels announced in 70 bytes
    for read in (lambda p: read_image(p, 3), check_image_file):
        with pytest.raises(vh.DataError, match=r"bomb.png: image too large \(10,000,000,000 pixels\); the limit is "
                           rf"89,478,485 pixels against decompression bombs.*set the environment variable "
                           rf"{MAX_PIXELS_VARIABLE}"):  # fmt: skip
            read(bomb)
    picture = tmp_path / "picture.png"
    picture.write_bytes(png_bytes(np.zeros((20, 30, 3), np.uint8)))
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "500")  # our limit decides, not PIL's warning
    with pytest.raises(vh.DataError, match=r"picture.png: image too large \(30x20 = 600 pixels\); the limit is 500"):
        read_image(picture, 3)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "600")
    assert read_image(picture, 1).shape == (20, 30, 1)
    # A limit raised above PIL's own lets a file through that PIL would refuse at open (twice its limit).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    large = tmp_path / "large.png"
    large.write_bytes(png_header(50, 50))  # 2,500 pixels announced, no pixel data
    with pytest.raises(vh.DataError, match=r"large.png: image too large \(2,500 pixels\); the limit is 600"):
        read_image(large, 3)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "3000")
    with pytest.raises(vh.DataError, match=r"large.png: cannot decode image"):
        read_image(large, 3)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "lots")
    with pytest.raises(vh.ConfigError, match=f"{MAX_PIXELS_VARIABLE}='lots'; give a whole number of pixels"):
        read_image(picture, 3)


# ----- 3. ambiguous arrays ---------------------------------------------------------------------------------------
def test_arrays_whose_layout_disagrees_with_the_task_channels_say_the_expected_layouts():
    colour = vh.Task("classification", backbone="lenet5", num_classes=2, image_size=32)
    grey = vh.Task("classification", backbone="lenet5", num_classes=2, image_size=32, in_chans=1)
    first = r"shape \(3, 16, 16\) reads as 3 greyscale image\(s\) NxHxW, but the task expects 3 channel\(s\); "
    with pytest.raises(vh.DataError, match=first + "give one image as HxWx3, a batch as NxHxWx3; a channels-first"):
        colour.predict(np.zeros((3, 16, 16), np.uint8))
    last = r"shape \(16, 16, 3\) reads as one HxWxC image with 3 channel\(s\), but the task expects 1 channel\(s\); "
    with pytest.raises(vh.DataError, match=last + r"give one image as HxW \(or HxWx1\), a batch as NxHxW"):
        grey.predict(np.zeros((16, 16, 3), np.uint8))
    batch = r"images of shape \(5, 16, 16\) read as 5 greyscale images \(NxHxW\), but the task expects 3 channels; "
    with pytest.raises(vh.DataError, match=batch + "give one image as HxWx3, a batch as NxHxWx3"):
        colour.fit((np.zeros((5, 16, 16), np.uint8), np.arange(5) % 2), epochs=1)
    # What fits the task still reads as before.
    assert len(grey.predict(np.zeros((3, 16, 16), np.uint8))) == 3  # three greyscale images
    assert len(colour.predict(np.zeros((16, 16, 3), np.uint8))) == 1
    assert len(colour.predict(np.zeros((2, 16, 16, 3), np.uint8))) == 2


# ----- 4. property-based: random bytes, JSON and arrays give a valid sample or our error -------------------------
_VALID_PNG = png_bytes(np.arange(8 * 6 * 3, dtype=np.uint8).reshape(6, 8, 3))
_HEADERS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"GIF89a", b"BM", b"II*\x00", b"P6\n", b"RIFF"]
image_bytes = st.one_of(
    st.binary(max_size=64),
    st.builds(bytes.__add__, st.sampled_from(_HEADERS), st.binary(max_size=200)),
    st.integers(0, len(_VALID_PNG)).map(lambda n: _VALID_PNG[:n]),  # truncated
    st.tuples(st.integers(8, len(_VALID_PNG) - 1), st.binary(min_size=1, max_size=6)).map(
        lambda cut: _VALID_PNG[: cut[0]] + cut[1] + _VALID_PNG[cut[0] + len(cut[1]) :]
    ),  # a few bytes overwritten
    st.builds(png_header, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.binary(max_size=32)),
)


@FUZZ
@given(data=image_bytes, suffix=st.sampled_from([".png", ".jpg", ".gif"]), channels=st.sampled_from([1, 3]))
def test_random_bytes_as_image_files_give_an_image_or_a_data_error(
    tmp_path_factory, monkeypatch, data, suffix, channels
):
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "100000")  # a header may announce any size: decode little
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    for folder in ("classes/one", "images", "masks"):
        (root / folder).mkdir(parents=True)
    path = root / "images" / f"x{suffix}"
    for copy in (path, root / "classes" / "one" / path.name, root / "masks" / "x.png"):
        copy.write_bytes(data)
    readers = [
        lambda: read_image(path, channels),
        lambda: ClassFolders(root / "classes", channels=channels)[0]["image"],
        lambda: MaskFolders(root, channels=channels)[0]["mask"],
    ]
    for read in readers:
        try:
            array = read()
        except vh.DataError as error:
            event(f"refused: {str(error).partition(': ')[2][:25]}")
            continue
        event("read")
        assert array.dtype in (np.uint8, np.int64) and array.ndim in (2, 3) and array.size > 0
        if array.ndim == 3:
            assert array.dtype == np.uint8 and array.shape[2] == channels


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.floats(allow_nan=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_IMAGES = {1: ("a.png", 8, 6), 2: ("b.png", 5, 5)}  # id: (file, width, height), written by the test


def mostly(usual: st.SearchStrategy, rarely: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` nine times in ten, else `rarely`."""
    return st.integers(0, 9).flatmap(lambda k: rarely if k == 0 else usual)


coordinates = mostly(st.integers(-1, 9) | st.floats(-1, 9), st.sampled_from([math.nan, math.inf, 1e30, -50, True, "4"]))


@st.composite
def rles(draw, height: int, width: int) -> dict:
    """RLE of the image's size, mostly valid: runs that may not cover the image, negative runs, a mangled string."""
    runs = draw(st.lists(st.integers(0, height * width), min_size=1, max_size=6))
    if draw(st.booleans()):  # make them cover the image exactly, as a valid RLE does
        runs = [*runs[:-1], height * width - sum(runs[:-1])]
    form = draw(st.sampled_from(["list", "string", "mangled"]))
    if form == "list":
        return {"size": [height, width], "counts": runs}
    from pycocotools import mask as mask_utils

    pixels = np.zeros(height * width, np.uint8)
    pixels[draw(st.lists(st.integers(0, height * width - 1), max_size=8))] = 1
    text = mask_utils.encode(np.asfortranarray(pixels.reshape(width, height).T))["counts"].decode("ascii")
    if form == "mangled":
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(alphabet="0123456789:;<=>?@AOPQ_`ao\x00", max_size=3)) + text[cut + 1 :]
    return {"size": draw(st.sampled_from([[height, width], [width, height], [height, width + 1]])), "counts": text}


@st.composite
def near_valid_coco(draw) -> dict:
    """A COCO file of 2 images and 2 categories with up to 5 annotations, then up to 2 fields set to any JSON."""
    images = [{"id": i, "file_name": name, "width": w, "height": h} for i, (name, w, h) in _IMAGES.items()]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    annotations = []
    for number in range(1, draw(st.integers(0, 5)) + 1):
        image_id = draw(st.sampled_from([1, 2]))
        _, width, height = _IMAGES[image_id]
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        bbox = draw(mostly(st.just([x, y, width - x, height - y]), st.lists(coordinates, min_size=4, max_size=4)))
        annotation = {"id": number, "image_id": image_id, "category_id": draw(st.sampled_from([1, 2])), "bbox": bbox}
        annotation["iscrowd"] = draw(st.sampled_from([0, 0, 0, 1]))
        polygons = st.lists(st.lists(coordinates, max_size=10), max_size=2)
        segmentation = draw(st.none() | polygons | rles(height, width))
        if segmentation is not None:
            annotation["segmentation"] = segmentation
        annotations.append(annotation)
    payload = {"images": images, "annotations": annotations, "categories": categories}
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        entries = payload[draw(st.sampled_from(sorted(payload)))]
        if entries:
            entry = draw(st.sampled_from(entries))
            entry[draw(st.sampled_from([*sorted(entry), "extra"]))] = draw(json_values)
    return payload


any_json = json_values | st.dictionaries(
    st.sampled_from(["images", "annotations", "categories"]), st.lists(json_values, max_size=3) | json_values
)
subset_options = st.fixed_dictionaries(
    {}, optional={"include_crowd": st.booleans(), "negatives": st.booleans(), "categories": st.just(["cat"])}
)


@FUZZ
@given(payload=any_json, options=subset_options)
def test_random_json_as_a_coco_file_is_a_data_error_or_valid_samples(tmp_path_factory, payload, options):
    read_coco_payload(Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())), payload, options)


@FUZZ
@given(payload=near_valid_coco(), options=subset_options)
def test_near_valid_coco_files_give_valid_samples_or_a_data_error(tmp_path_factory, payload, options):
    read_coco_payload(Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())), payload, options)


def read_coco_payload(root: Path, payload: object, options: dict) -> None:
    """Write `payload` as a COCO file beside the images of _IMAGES; every sample must be valid or a DataError."""
    for image_id, (name, width, height) in _IMAGES.items():
        Image.fromarray(np.full((height, width, 3), 40 * image_id, np.uint8)).save(root / name)
    path = root / "annotations.json"
    path.write_text(json.dumps(payload))
    try:
        dataset = COCOSubset(path, **options)
    except vh.DataError as error:
        event(f"file refused: {str(error).partition(': ')[2][:25]}")
        return
    for index in range(len(dataset)):
        try:
            sample = dataset[index]
        except vh.DataError as error:
            event(f"sample refused: {str(error).rpartition(': ')[2][:25]}")
            continue
        event(f"sample with {len(sample['labels'])} object(s)")
        info = dataset.coco.imgs[dataset.image_ids[index]]
        assert_detection_sample(sample, info["height"], info["width"], len(dataset.class_names))


dtypes = st.sampled_from([np.uint8, np.int16, np.int64, np.uint64, np.float16, np.float32, np.float64, np.bool_,
                          np.complex64, np.dtype("U2"), np.dtype("M8[s]")])  # fmt: skip
shapes = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5)
arrays = dtypes.flatmap(lambda dtype: hnp.arrays(dtype, shapes))
label_arrays = hnp.arrays(
    st.sampled_from([np.int64, np.int8, np.float64, np.bool_, np.dtype("U1")]),
    hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5),
)


@pytest.fixture(scope="module")
def tasks():
    return {c: vh.Task("classification", backbone="lenet5", num_classes=4, image_size=32, in_chans=c) for c in (1, 3)}


@FUZZ
@given(images=arrays, labels=label_arrays | st.lists(st.integers(-2, 5), max_size=5), channels=st.sampled_from([1, 3]))
def test_random_arrays_as_images_or_data_give_valid_samples_or_a_data_error(tasks, images, labels, channels):
    task = tasks[channels]
    try:
        checked = image_arrays(images, task.config.in_chans)
    except OURS:
        pass
    else:
        for array in checked:
            assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == channels and array.size > 0
    try:
        image = as_image(images, "x", channels=channels)
    except vh.DataError:
        pass
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == channels and image.size > 0
    try:
        source = resolve_source((images, labels), channels=channels, target_key="label", from_path=None)
        samples = [require_keys(source.dataset[i], ("image", "label"), "x") for i in range(len(source.dataset))]
        for sample in samples:
            image = as_image(sample["image"], "x", channels=channels)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == channels and image.size > 0
            assert isinstance(sample["label"], int)
        if samples:
            task.source((images, labels))  # the task's own checks of the same data: also only our errors
    except OURS:
        pass


def test_a_coco_file_without_area_or_iscrowd_still_evaluates(tmp_path):
    import json

    from pycocotools.cocoeval import COCOeval

    from visionheads.data.coco import _read_coco

    square = [[10, 10, 30, 10, 30, 30, 10, 30]]  # 20 x 20
    payload = {
        "images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "segmentation": square},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 40, 10, 5]},
        ],  # fmt: skip
    }
    path = tmp_path / "no_area.json"
    path.write_text(json.dumps(payload))
    truth = _read_coco(path)
    assert [(a["area"], a["iscrowd"]) for a in truth.dataset["annotations"]] == [(400.0, 0), (50.0, 0)]
    results = truth.loadRes([{"image_id": 1, "category_id": 1, "bbox": a["bbox"], "score": 1.0}
                             for a in payload["annotations"]])  # fmt: skip
    evaluation = COCOeval(truth, results, "bbox")  # a KeyError: 'area' inside pycocotools before
    evaluation.evaluate()
    evaluation.accumulate()
    assert evaluation.eval["precision"].max() == 1.0
