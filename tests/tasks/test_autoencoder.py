"""The autoencoder task: conv/denoising/vae heads over every backbone, reconstruction metrics, codes, anomaly
scores, samples, plots, and its body reused by a classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import visionheads as vh
from visionheads.data.catalog import resolve_builtin
from visionheads.data.digits import digits

from contract import check_training_step, input_size, noise_images

pytestmark = pytest.mark.autoencoder

SIDE = 16  # digits at 16 px: LeNet-5's deepest map is 2x2
FAST = {"batch_size": 32, "lr": 0.02, "plots": False, "progress": False, "val": False}


def _digit_arrays(split: str, count: int | None = None) -> np.ndarray:
    """Built-in digits of `split` as an (N, 32, 32, 1) uint8 array (the first `count`)."""
    samples = digits(split)
    count = len(samples) if count is None else count
    return np.stack([samples[i]["image"] for i in range(count)])


def _psnr_of_mean_image(train: np.ndarray, test: np.ndarray) -> float:
    """PSNR (dB) of always answering the mean training image, at SIDE px: what a model must beat."""
    resize = lambda x: torch.nn.functional.interpolate(  # noqa: E731
        torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, size=(SIDE, SIDE), mode="bilinear"
    )
    mean = resize(train).mean(dim=0, keepdim=True)
    return float(10 * torch.log10(1 / (resize(test) - mean).square().mean()))


@pytest.fixture(scope="module")
def trained():
    """A `conv` autoencoder fitted on digits (latent 16, 16 px, 6 epochs), with its history; shared by tests that
    only read it."""
    task = vh.Task("autoencoder", backbone="lenet5", in_chans=1, image_size=SIDE, latent_dim=16, seed=0)
    history = task.fit(_digit_arrays("train"), epochs=6, **FAST)
    return task, history


@pytest.mark.parametrize("backbone", vh.list_backbones())
def test_every_backbone_trains_a_step(backbone, bodies):
    body = bodies(backbone)
    size = input_size(body)
    task = vh.Task("autoencoder", backbone=body, image_size=size, latent_dim=8)
    values = check_training_step(task, [{"image": image} for image in noise_images(2, size)])
    assert {"mse", "psnr", "ssim"} == set(values)
    assert task(torch.randn(2, 3, size, size)).shape == (2, 3, size, size)
    assert task.encode(noise_images(3, size)).shape == (3, 8)


@pytest.mark.parametrize("head", vh.list_heads("autoencoder")["autoencoder"])
def test_every_head_trains_a_step(head):
    task = vh.Task("autoencoder", backbone="lenet5", head=head, image_size=32, latent_dim=4)
    values = check_training_step(task, [{"image": image} for image in noise_images(2, 32)])
    extra = {"conv": set(), "denoising": {"psnr_noisy"}, "vae": {"elbo"}}[head]
    assert {"mse", "psnr", "ssim"} | extra == set(values)
    losses = task.training_losses({"image": torch.randn(2, 3, 32, 32)}, 0)
    assert set(losses) == ({"reconstruction", "kl"} if head == "vae" else {"reconstruction"})


def test_the_bottleneck_is_latent_dim_numbers_and_grid_follows_the_image_size():
    small = vh.Task("autoencoder", backbone="simple_cnn", image_size=32, latent_dim=5)
    assert small.head.bottleneck.out_features == 5
    assert small.head.decoder.grid == 2  # 32 px through stride 16
    assert vh.Task("autoencoder", backbone="simple_cnn", image_size=64).head.decoder.grid == 4
    assert vh.Task("autoencoder", backbone="simple_cnn", image_size=64, grid=1).head.decoder.grid == 1
    with torch.no_grad():
        small.eval()
        assert small.encode(noise_images(2, 48)).shape == (2, 5)  # any size in: resized to the task's


def test_bad_options_are_config_errors():
    with pytest.raises(vh.ConfigError, match="loss='l1'"):
        vh.Task("autoencoder", loss="l1")
    with pytest.raises(vh.ConfigError, match="noise='speckle'"):
        vh.Task("autoencoder", head="denoising", noise="speckle")
    with pytest.raises(vh.ConfigError, match="head='vae'"):
        vh.Task("autoencoder", backbone="lenet5").sample(2)


def test_fit_learns_to_reconstruct_digits(trained):
    task, history = trained
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    test = _digit_arrays("test")
    metrics = task.evaluate(test)
    assert {"loss", "mse", "psnr", "ssim"} == set(metrics)
    # Answering the mean digit scores ~12 dB here; a 16-number code must do far better.
    assert metrics["psnr"] > _psnr_of_mean_image(_digit_arrays("train"), test) + 6
    assert metrics["ssim"] > 0.6


def test_predict_gives_reconstructions_at_each_image_size_and_load_keeps_them(trained, tmp_path):
    task, _ = trained
    images = [_digit_arrays("test", 1)[0], np.zeros((20, 28, 1), dtype=np.uint8)]
    rebuilt = task.predict(images)
    assert [r.shape for r in rebuilt] == [(32, 32, 1), (20, 28, 1)]
    assert all(r.dtype == np.uint8 for r in rebuilt)
    error = np.abs(rebuilt[0].astype(float) - images[0].astype(float)).mean()
    assert error < 0.5 * np.abs(images[0].astype(float) - images[0].mean()).mean()  # closer than a flat guess
    loaded = vh.Task.load(task.save(tmp_path / "ae.pt"))
    assert all((a == b).all() for a, b in zip(loaded.predict(images), rebuilt, strict=True))
    assert np.allclose(loaded.encode(images), task.encode(images), atol=1e-5)


def test_anomaly_scores_rank_non_digits_above_digits(trained):
    task, _ = trained
    digit_images = list(_digit_arrays("test", 100))
    noise = [image[..., :1] for image in noise_images(50, 32, seed=3)]
    shapes = resolve_builtin("shapes:test", 1).dataset
    crops = [shapes[i]["image"][:96, :96] for i in range(50)]  # whole scenes of coloured shapes, cropped square
    scores = task.anomaly_scores(digit_images + noise + crops)
    is_unusual = np.r_[np.zeros(len(digit_images)), np.ones(len(noise) + len(crops))]
    assert roc_auc_score(is_unusual, scores) >= 0.95


def test_denoising_raises_psnr_of_noisy_inputs():
    task = vh.Task("autoencoder", backbone="lenet5", head="denoising", in_chans=1, image_size=SIDE,
                   latent_dim=16, noise_level=0.2, seed=0)  # fmt: skip
    task.fit(_digit_arrays("train"), epochs=6, **FAST)
    metrics = task.evaluate(_digit_arrays("test"))
    assert metrics["psnr"] > metrics["psnr_noisy"] + 3
    again = task.evaluate(_digit_arrays("test"))
    assert again["psnr_noisy"] == metrics["psnr_noisy"]  # the same noise on every evaluation


@pytest.mark.parametrize("noise", ["salt_pepper", "mask"])
def test_every_noise_corrupts_the_share_asked(noise):
    task = vh.Task("autoencoder", backbone="lenet5", head="denoising", noise=noise, noise_level=0.3)
    clean = torch.full((4, 3, 32, 32), 0.5)
    changed = (task.corrupted(clean, list(range(len(clean)))) != clean).float().mean()
    assert changed == pytest.approx(0.3, abs=0.02)


@pytest.mark.smoke
def test_vae_samples_interpolates_and_reports_elbo():
    task = vh.Task("autoencoder", backbone="lenet5", head="vae", in_chans=1, image_size=SIDE, latent_dim=8,
                   kl_warmup_epochs=2, seed=0)  # fmt: skip
    history = task.fit(_digit_arrays("train", 512), epochs=3, **FAST)
    assert history["train_loss_kl"][-1] > 0 and history["train_loss_reconstruction"][-1] > 0  # each term logged
    metrics = task.evaluate(_digit_arrays("test", 128))
    assert np.isfinite(metrics["elbo"]) and metrics["elbo"] < 0  # nats per image, a Bernoulli likelihood
    samples = task.sample(6)
    assert len(samples) == 6 and all(s.shape == (SIDE, SIDE, 1) and s.dtype == np.uint8 for s in samples)
    assert np.stack(samples).std() > 5  # not one flat image
    a, b = _digit_arrays("test", 2)
    strip = task.interpolate(a, b, steps=5)
    assert len(strip) == 5 and strip[0].shape == (SIDE, SIDE, 1)
    assert not (strip[0] == strip[-1]).all()


@pytest.mark.parametrize("head", vh.list_heads("autoencoder")["autoencoder"])
def test_plots_show_originals_and_reconstructions(head, tmp_path):
    task = vh.Task("autoencoder", backbone="lenet5", head=head, in_chans=1, image_size=32, latent_dim=2)
    names = {path.name for path in task.plot(tmp_path, data="digits:test")}
    expected = {"conv": {"reconstructions.png"}, "denoising": {"denoised.png"},
                "vae": {"reconstructions.png", "samples.png", "interpolation.png", "latent_map.png"}}[head]  # fmt: skip
    assert expected <= names
    assert all((tmp_path / name).stat().st_size > 1000 for name in expected)


@pytest.mark.parametrize("backbone", ["lenet5", "resnet18", "alexnet"])  # local, timm and torchvision entries
def test_a_saved_task_file_gives_its_body_as_weights(backbone, tmp_path):
    ae = vh.Task("autoencoder", backbone=backbone, image_size=64, latent_dim=4, seed=3)
    path = ae.save(tmp_path / "ae.pt")
    classifier = vh.Task("classification", backbone=backbone, weights=path, num_classes=3, image_size=64)
    saved, loaded = ae.backbone.body.state_dict(), classifier.backbone.body.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_the_trained_body_starts_a_classifier(trained, tmp_path):
    task, _ = trained
    body_state = {k: v.clone() for k, v in task.backbone.body.state_dict().items()}
    from_object = vh.Task("classification", backbone=task.backbone, num_classes=10, in_chans=1, image_size=SIDE)
    path = task.save(tmp_path / "ae.pt")
    from_file = vh.Task("classification", backbone="lenet5", weights=path, num_classes=10, in_chans=1,
                        image_size=SIDE)  # fmt: skip
    for classifier in (from_object, from_file):
        state = classifier.backbone.body.state_dict()
        assert all(torch.equal(state[k], v) for k, v in body_state.items())


def test_cli_predict_writes_reconstructions_as_pngs(trained, tmp_path, capsys):
    from PIL import Image

    from visionheads.cli import main

    task, _ = trained
    image = tmp_path / "three.png"
    Image.fromarray(_digit_arrays("test", 1)[0][..., 0]).save(image)
    assert main(["predict", str(task.save(tmp_path / "ae.pt")), str(image), "--out", str(tmp_path / "out")]) == 0
    assert "image saved to" in capsys.readouterr().out
    written = np.asarray(Image.open(tmp_path / "out" / "three_autoencoder.png"))
    assert written.shape == (32, 32) and written.dtype == np.uint8
