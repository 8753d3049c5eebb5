"""The regression task: angles on the unit circle, circular metrics, rotation and MNIST adapters, errors."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import visionheads as vh
from visionheads.data.digits import digits_arrays

from contract import check_training_step, input_size, noise_images

pytestmark = pytest.mark.regression

REPO = Path(__file__).resolve().parents[2]
FAST = {"plots": False, "batch_size": 8}


def test_angle_head_decodes_cos_sin_with_atan2():
    task = vh.Task("regression", backbone="lenet5", in_chans=1)
    radians = np.deg2rad([179.0, -179.0, 30.0])
    outputs = torch.tensor(np.stack([np.cos(radians), np.sin(radians)], axis=1), dtype=torch.float32)
    assert task.decode(outputs, [(32, 32)] * 3) == pytest.approx([179.0, -179.0, 30.0], abs=1e-4)


def test_rotation_leaves_no_angle_dependent_blur():
    # A 1x bilinear rotation blurs by an amount that tells the angle; networks read it instead of the shape.
    rng = np.random.default_rng(0)
    digits = []  # MNIST-like: anti-aliased strokes on black, clear of the border
    for _ in range(30):
        canvas = np.zeros((32, 32), np.uint8)
        for _ in range(3):
            start, end = rng.integers(8, 24, 2), rng.integers(8, 24, 2)
            cv2.line(canvas, tuple(map(int, start)), tuple(map(int, end)), 255, 2, cv2.LINE_AA)
        digits.append(canvas[:, :, None])

    def sharpness_spread(rotate):
        sharpness = [np.mean([cv2.Laplacian(rotate(d, a), cv2.CV_32F).var() for d in digits]) for a in (0, 3, 20, 45)]
        return max(sharpness) / min(sharpness)

    def rotate_at_1x(image, degrees):
        matrix = cv2.getRotationMatrix2D((15.5, 15.5), degrees, 1.0)
        return cv2.warpAffine(image, matrix, (32, 32), flags=cv2.INTER_LINEAR)

    assert sharpness_spread(rotate_at_1x) > 2  # the check can tell the difference
    assert sharpness_spread(vh.data.rotate_image) < 1.3  # 1x bilinear: 2.3
    rotated = vh.data.rotate_image(digits[0], 90.0)
    np.testing.assert_allclose(rotated[4:-4, 4:-4, 0], np.rot90(digits[0][:, :, 0])[4:-4, 4:-4], atol=40)


def test_rotated_adapter_fixes_angles_per_seed_and_resamples_for_training():
    base = vh.data.ArraySamples(digits_arrays("test")[0][:10, :, :, None], label=np.arange(10))
    fixed = vh.data.Rotated(base, degrees=30, seed=3)
    assert [fixed[i]["angle"] for i in range(10)] == [fixed[i]["angle"] for i in range(10)]
    assert all(abs(fixed[i]["angle"]) <= 30 for i in range(10))
    assert fixed[0]["angle"] != vh.data.Rotated(base, degrees=30, seed=4)[0]["angle"]
    fresh = vh.data.Rotated(base, degrees=30, seed=3, resample=True)
    first = fresh[0]["angle"]
    assert fresh[0]["angle"] == first  # within an epoch a sample keeps its angle
    fresh.set_epoch(1)
    assert fresh[0]["angle"] != first  # each training epoch draws new ones
    fresh.set_epoch(0)
    assert fresh[0]["angle"] == first  # ... reproducibly (a resumed fit sees the same angles)
    assert fresh[0]["image"].shape == base[0]["image"].shape
    subset = torch.utils.data.Subset(fixed, [2, 5])
    assert subset[1]["angle"] == fixed[5]["angle"]


def test_rotated_digits_builtin_splits_and_range():
    from visionheads.data.catalog import resolve_builtin

    test = resolve_builtin("rotated-digits:test", channels=1)
    angles = [test.dataset[i]["angle"] for i in range(len(test.dataset))]
    assert len(angles) == 360 and max(np.abs(angles)) <= 45 and np.std(angles) > 20
    assert angles == [test.dataset[i]["angle"] for i in range(360)]  # val/test angles are fixed
    narrow = resolve_builtin("rotated-digits:val:20", channels=1)
    assert max(abs(narrow.dataset[i]["angle"]) for i in range(50)) <= 20


def test_fit_learns_angles_from_scratch():
    task = vh.Task("regression", backbone="simple_cnn", in_chans=1, image_size=24, seed=0)
    history = task.fit("rotated-digits[:600]", "rotated-digits:val[:200]", epochs=6, batch_size=32, lr=3e-3,
                       plots=False)  # fmt: skip
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    metrics = task.evaluate("rotated-digits:test")
    assert set(metrics) == {"loss", "rmse", "mae", "within_5", "within_10"}
    assert metrics["rmse"] < 15  # a constant 0° guess scores 26° RMSE on ±45°
    assert metrics["within_10"] > 0.5


def test_angle_head_keeps_a_grid_and_an_optional_hidden_layer():
    from visionheads.heads import AngleHead, PooledLinear

    features = [torch.randn(2, 8, 12, 12), torch.randn(2, 16, 6, 6)]
    plain = AngleHead([8, 16], [2, 4], 2)
    assert plain.classifier[-1].in_features == 16 and plain(features).shape == (2, 2)
    # the default has PooledLinear's layers and keys, so that angle checkpoints saved before it still load
    assert plain.state_dict().keys() == PooledLinear([8, 16], [2, 4], 2).state_dict().keys()
    grid = AngleHead([8, 16], [2, 4], 2, pool_size=3, hidden=32)
    assert grid.classifier[0].in_features == 16 * 9 and grid.classifier[0].out_features == 32
    assert grid(features).shape == (2, 2)
    task = vh.Task("regression", backbone="lenet5", in_chans=1, pool_size=2, hidden=8)
    assert task.head.classifier[0].in_features == 120 * 4


def test_angle_loss_is_smooth_l1_by_default_and_mse_on_request():
    batch = {"target": torch.zeros(1, 1)}

    def ratio(task: vh.Task) -> float:  # the loss at a 20° error over that at 10°
        at = [torch.deg2rad(torch.tensor(float(d))) for d in (0, 10, 20)]
        losses = [task.losses(torch.stack([r.cos(), r.sin()])[None], batch)[task.config.loss].item() for r in at]
        assert losses[0] == pytest.approx(0, abs=1e-7)
        return losses[2] / losses[1]

    assert 2.2 < ratio(vh.Task("regression", backbone="lenet5", in_chans=1)) < 2.8  # mostly linear beyond 6°
    assert 3.9 < ratio(vh.Task("regression", backbone="lenet5", in_chans=1, loss="mse")) < 4.0  # quadratic
    with pytest.raises(vh.ConfigError, match=r"loss='l3'; use one of \('smooth_l1', 'mse'\)"):
        vh.Task("regression", backbone="lenet5", loss="l3")


def test_jitter_false_trains_on_the_images_as_given():
    image = digits_arrays("test")[0][0]

    def outputs(task: vh.Task) -> list[torch.Tensor]:
        pipeline = task.train_transform(None)  # the regression pipelines need no data
        return [pipeline(image=image)["image"] for _ in range(20)]

    plain = outputs(vh.Task("regression", backbone="lenet5", in_chans=1, image_size=24, jitter=False))
    assert all(torch.equal(plain[0], other) for other in plain)
    jittered = outputs(vh.Task("regression", backbone="lenet5", in_chans=1, image_size=24))
    assert any(not torch.equal(plain[0], other) for other in jittered)


@pytest.mark.smoke
def test_predict_and_derotate_and_plots(tmp_path):
    task = vh.Task("regression", backbone="lenet5", in_chans=1, image_size=24)
    task.fit("rotated-digits[:64]", "rotated-digits:val[:32]", epochs=1, **FAST)
    images = digits_arrays("test")[0][:4]
    angles = task.predict(images)
    assert len(angles) == 4 and all(isinstance(a, float) and -180 <= a <= 180 for a in angles)
    upright = task.derotate(images)
    assert [u.shape for u in upright] == [(32, 32, 1)] * 4
    names = [p.name for p in task.plot(tmp_path, data="rotated-digits:test[:32]")]
    assert names == ["curves.png", "predicted_vs_true.png", "derotated.png"]


def test_features_strategy_draws_the_derotation_grid_of_its_val_data():
    task = vh.Task("regression", backbone="lenet5", in_chans=1, image_size=24)
    history = task.fit("rotated-digits[:64]", "rotated-digits:val[:32]", epochs=2, strategy="features",
                       batch_size=8)  # fmt: skip
    assert {p.name for p in history.run_dir.iterdir()} >= {"predicted_vs_true.png", "derotated.png"}


def test_data_without_angles_is_rotated_by_the_task(tiny_arrays):
    images, labels = tiny_arrays
    task = vh.Task("regression", backbone="lenet5", degrees=30)
    history = task.fit((images, labels), epochs=1, **FAST)
    assert np.isfinite(history["train_loss"]).all()
    assert "rmse" in task.evaluate((images, labels))


def test_linear_head_regresses_any_float_vector(tiny_arrays):
    images, _ = tiny_arrays
    targets = np.stack([images.mean(axis=(1, 2, 3)), images[:, :, :, 0].std(axis=(1, 2))], axis=1)
    task = vh.Task("regression", backbone="lenet5", head="linear", target_key="value", target_dim=2)
    task.fit({"image": images, "value": targets}, epochs=2, **FAST)
    mean, std = task.config.target_scale
    assert mean == pytest.approx(targets.mean(axis=0).tolist())
    predictions = task.predict(images[:3])
    assert all(p.shape == (2,) for p in predictions)
    assert set(task.evaluate({"image": images, "value": targets})) == {"loss", "rmse", "mae"}


@pytest.mark.parametrize("head", [head for head in vh.list_heads("regression")["regression"] if head != "angle"])
def test_every_value_head_learns_a_float_target(head):
    # The target is each image's brightness, which a mean over pixels gives: any head that learns gets it closely.
    rng = np.random.default_rng(0)
    levels = rng.uniform(40, 200, 160)
    images = (levels[:, None, None, None] + rng.normal(0, 8, (160, 16, 16, 1))).clip(0, 255).astype(np.uint8)
    task = vh.Task("regression", backbone="lenet5", head=head, in_chans=1, image_size=16, target_key="value")
    task.fit({"image": images[:128], "value": levels[:128]}, epochs=12, batch_size=16, lr=3e-3, plots=False)
    rmse = task.evaluate({"image": images[128:], "value": levels[128:]})["rmse"]
    assert rmse < 0.1 * levels[128:].std()  # a constant guess scores the std (47 grey levels); one epoch: 9-10


def test_save_load_keeps_the_target_scale(tmp_path, tiny_arrays):
    images, _ = tiny_arrays
    values = images.mean(axis=(1, 2, 3))
    task = vh.Task("regression", backbone="lenet5", head="linear", target_key="value")
    task.fit({"image": images, "value": values}, epochs=1, **FAST)
    loaded = vh.Task.load(task.save(tmp_path / "r.pt"))
    assert loaded.predict(images[:4]) == task.predict(images[:4])


@pytest.mark.parametrize("head", vh.list_heads("regression")["regression"])
@pytest.mark.parametrize("backbone", vh.list_backbones())
def test_every_backbone_trains_a_step(backbone, head, bodies):
    body = bodies(backbone)
    size = input_size(body)
    task = vh.Task("regression", backbone=body, head=head, target_scale=[[0.0], [45.0]], image_size=size)
    samples = [
        {"image": image, "angle": angle} for image, angle in zip(noise_images(2, size), [10.0, -30.0], strict=True)
    ]
    values = check_training_step(task, samples)
    assert set(values) == {"rmse", "mae", "within_5", "within_10"}


def _angle_samples(angles, channels=1):
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 255, (16, 16, channels), dtype=np.uint8), "angle": a} for a in angles]


def test_angle_outside_the_declared_range_is_named():
    task = vh.Task("regression", backbone="lenet5", in_chans=1, degrees=45)
    with pytest.raises(vh.DataError, match=r"\[1\]\['angle'\]: \[60.0\] is outside the declared range ±45°"):
        task.evaluate(_angle_samples([10.0, 60.0]))


def test_nan_target_is_named():
    task = vh.Task("regression", backbone="lenet5", in_chans=1)
    with pytest.raises(vh.DataError, match=r"\[0\]\['angle'\]: target is NaN"):
        task.fit(_angle_samples([float("nan"), 1.0]), epochs=1, **FAST)


def test_wrong_channel_count_is_named():
    task = vh.Task("regression", backbone="lenet5", in_chans=1)
    with pytest.raises(vh.DataError, match=r"image has 3 channel\(s\) but the task expects 1"):
        task.fit(_angle_samples([1.0, 2.0], channels=3), epochs=1, **FAST)


def _write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_adapter_reads_the_test_split_alone(tmp_path, layout, gz):
    folder = tmp_path / "mnist" if layout == "flat" else tmp_path / "mnist" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 255, (12, 28, 28))
    _write_idx(folder / "t10k-images-idx3-ubyte", images, gz)
    _write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(12) % 10, gz)
    mnist = vh.data.MNIST(tmp_path / "mnist", split="test")
    assert len(mnist) == 12 and mnist[3]["label"] == 3
    np.testing.assert_array_equal(mnist[5]["image"][:, :, 0], images[5])
    task = vh.Task("regression", backbone="lenet5", in_chans=1, image_size=28)
    spec = f"mnist:{tmp_path / 'mnist'}:test"
    history = task.fit(f"{spec}[:8]", f"{spec}[8:]", epochs=1, **FAST)
    assert "val_rmse" in history.rows[0]


def test_mnist_without_files_says_where_to_put_them(tmp_path):
    with pytest.raises(vh.DataError, match=r"t10k-images-idx3-ubyte\[.gz\].*MNIST/raw"):
        vh.data.MNIST(tmp_path, split="test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03junk")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(vh.DataError, match="truncated|bad header"):
        vh.data.MNIST(tmp_path, split="test")


def test_mnist_prepare_script_writes_idx_files_the_adapter_reads(tmp_path):
    spec = importlib.util.spec_from_file_location("prepare", REPO / "datasets" / "mnist" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    rows = np.random.default_rng(1).integers(0, 256, (5, 785)).astype(np.uint8)
    rows[:, 0] = [3, 1, 4, 1, 5]
    for name, content in prepare.idx_files(rows, "t10k").items():
        (tmp_path / name).write_bytes(content)
    mnist = vh.data.MNIST(tmp_path, split="test")
    assert [mnist[i]["label"] for i in range(5)] == [3, 1, 4, 1, 5]
    np.testing.assert_array_equal(mnist[2]["image"][:, :, 0], rows[2, 1:].reshape(28, 28))


def test_training_augmentation_never_moves_pixels():
    # Rotation is the target: a geometric jitter (even a shift or rescale) would blur what the angle is read from.
    task = vh.Task("regression", backbone="lenet5", in_chans=1, image_size=32)
    image = digits_arrays("train")[0][7][:, :, None]
    reference = task.eval_transform()(image=image)["image"].flatten().numpy()
    source = vh.data.Source(None, "digits", flips_ok=False)

    def lowest_correlation(pipeline):
        outputs = [pipeline(image=image)["image"].flatten().numpy() for _ in range(20)]
        return min(np.corrcoef(reference, output)[0, 1] for output in outputs)

    # brightness/contrast map values affinely (up to clipping at 255); any shift, scale or rotation decorrelates
    assert lowest_correlation(task.train_transform(source)) > 0.98
    classifier = vh.Task("classification", backbone="lenet5", in_chans=1, image_size=32, num_classes=10)
    assert lowest_correlation(classifier.train_transform(source)) < 0.95  # the check can tell the difference
