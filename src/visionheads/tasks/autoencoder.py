"""Autoencoders: reconstruct the image itself through a bottleneck of `latent_dim` numbers (plain, denoising,
variational); MSE or BCE (+ KL); MSE, PSNR, SSIM; codes, anomaly scores, samples and interpolations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from visionheads.backbones import Backbone
from visionheads.data.catalog import Source
from visionheads.data.coco import coco_at
from visionheads.data.folders import ClassFolders
from visionheads.data.pipeline import derived_seed
from visionheads.data.transforms import eval_pipeline, train_pipeline
from visionheads.errors import ConfigError, one_of
from visionheads.heads import AutoencoderHead, DenoisingHead, VAEHead
from visionheads.heads.autoencoder import DEFAULT_NOISE, DEFAULT_NOISE_LEVEL
from visionheads.runtime.export import ExportGraph
from visionheads.runtime.inference import image_batches
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import register_task
from visionheads.tasks.base import Task
from visionheads.tasks.config import TaskConfig

LOSSES = ("mse", "bce")


@dataclass(frozen=True)
class AutoencoderConfig(TaskConfig):
    """Autoencoder arguments: those of every task, plus these (the bottleneck, noise and KL options sit with the
    heads: `latent_dim`, `grid`; `noise`, `noise_level` for `denoising`; `kl_weight`, `kl_warmup_epochs` for `vae`)."""

    loss: str = "mse"  # reconstruction term: "mse" on pixels in [0, 1], or "bce" (Bernoulli likelihood)
    augment: bool = False  # jitter training images (affine, flips where allowed, colour); off, measured better

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("loss", self.loss, LOSSES)


@register_task
class AutoencoderTask(Task):
    """`Task("autoencoder", backbone=..., head="conv"|"denoising"|"vae", latent_dim=32)`: images back from a code."""

    name = "autoencoder"
    config_type = AutoencoderConfig
    monitor = ("val_psnr", "max")
    # 1. heads: the body's deepest map -> latent_dim numbers -> a decoder mirroring the body -> logits per pixel
    heads = {"conv": AutoencoderHead, "denoising": DenoisingHead, "vae": VAEHead}
    default_head = "conv"
    export_parts = ("reconstruct", "encode", "decode")

    def head_outputs(self) -> int:
        return self.config.in_chans

    def head_arguments(self, body: Backbone) -> dict[str, Any]:
        options = super().head_arguments(body)
        if not isinstance(self.config.image_size, int):
            raise ConfigError(
                f"image_size={list(self.config.image_size)}: the autoencoder's decoder draws square images; "
                "pass one side"
            )
        if options.get("grid") is None:  # the deepest map's size at the task's image size: nothing pooled away
            options["grid"] = max(1, math.ceil(self.config.image_size / body.strides[-1]))
        return options

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float normalised, (B, C, H, W). Returns: reconstruction logits (B, C, H, W) (vae: from the mean)."""
        return self._resized(self._head_outputs(images)[0], images)

    @property
    def variational(self) -> bool:
        """Whether the head is the VAE."""
        return self.config.head == "vae"

    @property
    def denoising(self) -> bool:
        """Whether the head is trained on corrupted inputs."""
        return self.config.head == "denoising"

    # 2. data: any images; labels, if any, are ignored
    def sample_keys(self) -> tuple[str, ...]:
        return ("image",)

    def source_from_path(self, path: Path, channels: int) -> Source:
        dataset: Any = coco_at(path, channels)
        if dataset is None:
            dataset = ClassFolders(path, channels=channels)
        return Source(dataset, str(path), class_names=dataset.class_names)

    def train_transform(self, source: Source) -> Any:
        # Off by default: on digits, jitter cost 2.4 dB of test PSNR after 15 epochs (21.9 against 24.3 dB).
        if not self.config.augment:
            return self.eval_transform()
        return train_pipeline(self.config.image_size, flips=source.flips_ok)

    def eval_transform(self) -> Any:
        return eval_pipeline(self.config.image_size)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        # The target is this image; its index seeds the noise it is judged on (denoising).
        return {"image": pipeline(image=sample["image"])["image"], "index": torch.tensor(int(sample["index"]))}

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, C, H, W) back to pixels in [0, 1]."""
        mean, std = self.input_statistics(images.device)
        return (images.float() * std + mean).clamp(0.0, 1.0)

    def normalised(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (B, C, H, W) to the model's input."""
        mean, std = self.input_statistics(pixels.device)
        return (pixels - mean) / std

    def corrupted(self, pixels: torch.Tensor, seeds: list[int] | None = None) -> torch.Tensor:
        """Pixels (B, C, H, W) with the denoising head's noise: gaussian (σ), salt-and-pepper or masking (a share of
        pixels). `seeds`: one per image, whose noise is then the same wherever and with whatever else it is drawn
        (None: from torch's random state, as in training)."""
        head = self.head  # a plain or VAE head has no noise of its own: the denoising defaults then
        noise, level = (head.noise, head.noise_level) if self.denoising else (DEFAULT_NOISE, DEFAULT_NOISE_LEVEL)
        if noise == "gaussian":
            return (pixels + level * _draws(torch.randn, pixels, seeds)).clamp(0.0, 1.0)
        draw = _draws(torch.rand, pixels, seeds)
        if noise == "salt_pepper":
            salt = _draws(torch.rand, pixels, None if seeds is None else [seed + 1 for seed in seeds]) < 0.5
            return torch.where(draw < level, salt.to(pixels.dtype), pixels)
        return torch.where(draw < level, torch.zeros_like(pixels), pixels)  # mask

    def _head_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        outputs = self.model(images)
        return outputs if self.variational else (outputs, None, None)

    @staticmethod
    def _resized(logits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] != like.shape[-2:]:  # bodies whose strides don't tile the input exactly
            logits = F.interpolate(logits, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def _run(self, images: torch.Tensor, seeds: list[int] | None, *, corrupt: bool) -> dict[str, Any]:
        clean = self.pixels(images)
        noisy = self.corrupted(clean, seeds) if corrupt else None
        inputs = self.normalised(noisy) if noisy is not None else images
        logits, mean, log_variance = self._head_outputs(inputs)
        return {"logits": self._resized(logits, inputs), "clean": clean, "noisy": noisy, "mean": mean,
                "log_variance": log_variance}  # fmt: skip

    def training_losses(self, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        losses = self.losses(self._run(batch["image"], None, corrupt=self.denoising), batch)
        if self.variational and self.head.kl_warmup_epochs > 0:  # the KL term grows from 0 (β warm-up)
            losses["kl"] = losses["kl"] * min(1.0, (epoch + 1) / self.head.kl_warmup_epochs)
        return losses

    def evaluation_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        # Denoising is judged on noise seeded by each image's index: the same on every evaluation of the same data,
        # whatever the batch size or the share of each process.
        seeds = [derived_seed(self.config.seed, int(index)) for index in batch["index"]]
        return self._run(batch["image"], seeds, corrupt=self.denoising)

    def prediction_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._run(batch["image"], None, corrupt=False)  # the images given are what is to be cleaned

    # 3. losses: reconstruction per pixel, plus for the VAE the KL divergence per pixel (the negative ELBO per pixel)
    def losses(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """outputs["logits"]: (B, C, H, W) against outputs["clean"], pixels in [0, 1]."""
        logits, clean = outputs["logits"].float(), outputs["clean"]
        if self.config.loss == "bce":
            reconstruction = F.binary_cross_entropy_with_logits(logits, clean)
        else:
            reconstruction = F.mse_loss(logits.sigmoid(), clean)
        losses = {"reconstruction": reconstruction}
        if self.variational:
            kl_per_pixel = _kl(outputs["mean"], outputs["log_variance"]).mean() / clean[0].numel()
            losses["kl"] = self.head.kl_weight * kl_per_pixel
        return losses

    # 4. metrics: MSE, PSNR and SSIM of the reconstructions; PSNR of the noisy inputs; the VAE's ELBO
    def new_metrics(self, source: Source | None) -> MetricCollection:
        metrics = {
            "mse": MeanSquaredError(),
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
        if self.denoising:
            metrics["psnr_noisy"] = PeakSignalNoiseRatio(data_range=1.0)
        if self.variational:
            metrics["elbo"] = MeanMetric()
        return MetricCollection(metrics, compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, outputs: dict[str, Any], batch: dict[str, Any]) -> None:
        reconstruction, clean = outputs["logits"].detach().float().sigmoid(), outputs["clean"]
        for name in ("mse", "psnr", "ssim"):
            metrics[name].update(reconstruction, clean)
        if self.denoising:
            metrics["psnr_noisy"].update(outputs["noisy"], clean)
        if self.variational:
            metrics["elbo"].update(self.elbo(outputs))

    def elbo(self, outputs: dict[str, Any]) -> torch.Tensor:
        """Evidence lower bound per image in nats, with a Bernoulli likelihood of the pixels: -(BCE summed + KL)."""
        logits, clean = outputs["logits"].float(), outputs["clean"]
        likelihood = -F.binary_cross_entropy_with_logits(logits, clean, reduction="none").flatten(1).sum(dim=1)
        return likelihood - _kl(outputs["mean"], outputs["log_variance"])

    # 5. predictions: reconstructions at each image's size; codes; anomaly scores; samples and interpolations
    def export_outputs(self, batch: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
        """reconstruct: pixels (B, C, H, W) in [0, 1] at the input's size; encode: codes (B, latent_dim) (the VAE's
        means)."""
        if part == "encode":
            code = self.head.encode(self.backbone(batch["image"]))
            return {"codes": (code[0] if self.variational else code).float()}
        return {"pixels": self.prediction_outputs(batch)["logits"].float().sigmoid()}

    def export_graph(self, part: str) -> ExportGraph:
        """reconstruct and encode: uint8 images in; decode: codes (B, latent_dim) in, pixels (B, C, h, w) out."""
        if part != "decode":
            graph = super().export_graph(part)
            graph.dynamic_axes = (0,)  # the bottleneck flattens the deepest map of the task's image size: batch only
            return graph
        latent = int(self.config.head_options["latent_dim"])
        example = torch.randn(2, latent, generator=torch.Generator().manual_seed(0))
        return ExportGraph(_Decoder(self.head.decoder), example, "codes", (0,), ("pixels",))

    def decode(self, outputs: dict[str, Any], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Reconstructions as HxWxC uint8 arrays, at each image's own size."""
        return _to_images(outputs["logits"].float().sigmoid(), sizes)

    @torch.inference_mode()
    def encode(self, images: Any, *, batch_size: int = 64) -> np.ndarray:
        """Latent codes (N, latent_dim) of images (the means, for the VAE)."""
        codes = []
        for batch, _ in image_batches(self, images, batch_size=batch_size):
            code = self.head.encode(self.backbone(batch["image"]))
            codes.append((code[0] if self.variational else code).float().cpu())
        return torch.cat(codes).numpy()

    @torch.inference_mode()
    def anomaly_scores(self, images: Any, *, batch_size: int = 64) -> np.ndarray:
        """Reconstruction error (MSE on pixels in [0, 1], at the task's image size) per image: high is unusual."""
        scores = []
        for batch, _ in image_batches(self, images, batch_size=batch_size):
            outputs = self.prediction_outputs(batch)
            error = (outputs["logits"].float().sigmoid() - outputs["clean"]).square().flatten(1).mean(dim=1)
            scores.append(error.cpu())
        return torch.cat(scores).numpy()

    @torch.inference_mode()
    def decode_codes(self, codes: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Images (HxWxC uint8, at the task's image size) decoded from latent codes (N, latent_dim)."""
        self.eval()
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.float32, device=self.device)
        logits = self.head.decoder(codes).float()
        side = self.config.image_size
        return _to_images(logits.sigmoid(), [(side, side)] * len(codes))

    def sample(self, n: int, *, seed: int | None = None) -> list[np.ndarray]:
        """`n` new images from the VAE: codes drawn from its prior N(0, I), decoded."""
        if not self.variational:
            raise ConfigError("sample() needs head='vae': a plain autoencoder's codes have no prior to draw from")
        generator = torch.Generator().manual_seed(self.config.seed if seed is None else seed)
        return self.decode_codes(torch.randn(n, self.config.head_options["latent_dim"], generator=generator))

    def interpolate(self, a: Any, b: Any, steps: int = 8) -> list[np.ndarray]:
        """`steps` images decoded along the straight line between the codes of images `a` and `b`."""
        start, end = self.encode([a, b])
        weights = np.linspace(0.0, 1.0, steps)[:, None]
        return self.decode_codes((1 - weights) * start + weights * end)

    # 6. figures
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        from visionheads.viz.autoencoder import plot_image_grid, plot_image_rows, plot_latent_map

        dataset = evaluation.source.dataset
        samples = [dataset[i] for i in range(min(8, len(dataset)))]
        pipeline = self.eval_transform()
        batch = self.collate([{"image": pipeline(image=s["image"])["image"]} for s in samples])
        with torch.inference_mode():
            self.eval()
            images = self.model_inputs(batch["image"].to(self.device))
            outputs = self._run(images, list(range(len(samples))), corrupt=self.denoising)
        side = [(self.config.image_size, self.config.image_size)] * len(samples)
        clean, rebuilt = _to_images(outputs["clean"], side), _to_images(outputs["logits"].sigmoid(), side)
        if self.denoising:
            rows = [_to_images(outputs["noisy"], side), rebuilt, clean]
            paths = [plot_image_rows(rows, ["noisy", "denoised", "clean"], out_dir / "denoised.png")]
        else:
            paths = [plot_image_rows([clean, rebuilt], ["original", "reconstruction"], out_dir / "reconstructions.png")]
        if self.variational:
            paths.append(plot_image_grid(self.sample(32), out_dir / "samples.png", title="samples from the prior"))
            strip = self.interpolate(samples[0]["image"], samples[-1]["image"], steps=10)
            paths.append(plot_image_rows([strip], ["interpolation"], out_dir / "interpolation.png"))
            count = min(len(dataset), 500)
            points = [dataset[i] for i in range(count)]
            labels = [p.get("label") for p in points]
            codes = self.encode([p["image"] for p in points])
            paths.append(plot_latent_map(codes, labels, self.class_names or evaluation.source.class_names,
                                         out_dir / "latent_map.png"))  # fmt: skip
        return paths


def _kl(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_variance)) || N(0, I)) per image, in nats: (B,)."""
    return -0.5 * (1 + log_variance.float() - mean.float().square() - log_variance.float().exp()).sum(dim=1)


class _Decoder(nn.Module):
    """Latent codes (B, latent_dim) to pixels (B, C, h, w) in [0, 1] through the head's decoder."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.decoder(codes).float().sigmoid(),)


def _draws(draw: Any, like: torch.Tensor, seeds: list[int] | None) -> torch.Tensor:
    """`draw` (torch.rand or torch.randn) of `like`'s shape: per image from its seed (on the CPU, so that a seed
    gives the same noise on every device), or from torch's random state on `like`'s device."""
    if seeds is None:
        return draw(like.shape, device=like.device)
    images = [draw(like.shape[1:], generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    return torch.stack(images).to(like.device, like.dtype)


def _to_images(pixels: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Pixels (B, C, h, w) in [0, 1] to HxWxC uint8 arrays resized (bilinearly) to each size."""
    images = []
    for image, size in zip(pixels.float(), sizes, strict=True):
        if tuple(image.shape[-2:]) != tuple(size):
            image = F.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        images.append((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())
    return images
