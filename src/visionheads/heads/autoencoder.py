"""Autoencoder heads: the body's deepest map squeezed into `latent_dim` numbers, and a decoder that mirrors the
body's strides and widths back to the input size (plain, denoising, variational).

The bottleneck pools the deepest map to `grid` x `grid` cells before a linear layer, so the head does not depend
on the input size; with the default grid of 2 a 32 px input through a stride-16 body is flattened, not pooled.
The decoder starts from that grid and upsamples stage by stage (transposed convolutions) to `grid` x the deepest
stride: the input size when the grid matches the deepest map; the task resizes otherwise. `grid=None` (the
default) is the deepest map's size at the task's image size, which the task fills in.
"""

from __future__ import annotations

import torch
from torch import nn

from visionheads.errors import one_of
from visionheads.heads.dense import MIN_WIDTH, mirrored_widths

NOISES = ("gaussian", "salt_pepper", "mask")
DEFAULT_NOISE, DEFAULT_NOISE_LEVEL = "gaussian", 0.2
DEFAULT_GRID = 2  # when a head is built outside a task, which otherwise gives the deepest map's size


def _squeeze(grid: int) -> nn.Sequential:
    """The deepest map pooled to grid x grid cells and flattened: (B, C_last * grid * grid)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(grid), nn.Flatten(1))


class MirroredDecoder(nn.Module):
    """latent (B, latent_dim) -> linear -> (B, width, grid, grid) -> one transposed-convolution stage per body stage
    (kernel = stride = the body's stride ratio, then BN and ReLU), mirroring its widths -> 3x3 conv -> logits."""

    def __init__(self, in_channels: list[int], strides: list[int], out_features: int, latent_dim: int, grid: int):
        super().__init__()
        widths = mirrored_widths(in_channels)
        self.grid, self.width = grid, widths[-1]
        # No ReLU after the expansion: measured on digits (latent 32, 30 epochs), a linear expansion into
        # transposed convolutions reached 28.0 dB; smp's U-Net blocks (upsample + two 3x3 convs) 26.8 dB in twice
        # the time; without BN, or with 4x4 kernels, less.
        self.expand = nn.Linear(latent_dim, self.width * grid * grid)
        stages, width = [], self.width
        factors = [strides[i + 1] // strides[i] for i in range(len(strides) - 1)]
        for stage in range(len(in_channels) - 2, -1, -1):  # land on each shallower stage, deep to fine
            stages.append(_up(width, widths[stage], factors[stage]))
            width = widths[stage]
        if strides[0] > 1:  # the finest stage is below input resolution: one more stage up to it
            stages.append(_up(width, max(MIN_WIDTH, width // 2), strides[0]))
            width = max(MIN_WIDTH, width // 2)
        self.stages = nn.Sequential(*stages)
        self.output = nn.Conv2d(width, out_features, 3, padding=1)
        self.output_size = grid * strides[-1]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent: (B, latent_dim). Returns: logits (B, out_features, grid * s_last, grid * s_last)."""
        x = self.expand(latent).view(-1, self.width, self.grid, self.grid)  # -1: a batch of any size, also exported
        return self.output(self.stages(x))


def _up(width_in: int, width_out: int, factor: int) -> nn.Sequential:
    """Upsample by `factor` (a transposed conv with kernel = stride = factor; a 3x3 conv when the factor is 1)."""
    if factor > 1:
        layer: nn.Module = nn.ConvTranspose2d(width_in, width_out, factor, stride=factor, bias=False)
    else:
        layer = nn.Conv2d(width_in, width_out, 3, padding=1, bias=False)
    return nn.Sequential(layer, nn.BatchNorm2d(width_out), nn.ReLU(inplace=True))


class AutoencoderHead(nn.Module):
    """`conv`: a deterministic bottleneck of `latent_dim` numbers and a mirrored decoder."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        latent_dim: int = 32,
        grid: int | None = None,
    ) -> None:
        super().__init__()
        grid = grid or DEFAULT_GRID
        self.squeeze = _squeeze(grid)
        self.bottleneck = nn.Linear(in_channels[-1] * grid * grid, latent_dim)
        self.decoder = MirroredDecoder(in_channels, strides, out_features, latent_dim, grid)

    def encode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: latent codes (B, latent_dim)."""
        return self.bottleneck(self.squeeze(features[-1]))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: reconstruction logits (B, out_features, H', W')."""
        return self.decoder(self.encode(features))


class DenoisingHead(AutoencoderHead):
    """`denoising`: the `conv` network, trained on corrupted inputs against clean targets.

    `noise` is "gaussian" (σ = `noise_level` on pixels in [0, 1]), "salt_pepper" (a share `noise_level` of pixels
    set to 0 or 1) or "mask" (a share `noise_level` of pixels set to 0); the task applies it.
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        latent_dim: int = 32,
        grid: int | None = None,
        noise: str = DEFAULT_NOISE,
        noise_level: float = DEFAULT_NOISE_LEVEL,
    ) -> None:
        one_of("noise", noise, NOISES)
        super().__init__(in_channels, strides, out_features, latent_dim=latent_dim, grid=grid)
        self.noise, self.noise_level = noise, noise_level


class VAEHead(nn.Module):
    """`vae`: the encoder gives a mean and a log-variance per latent number; training samples the code by
    reparameterisation (evaluation uses the mean); the decoder is as in `conv`. The KL term's weight, and the epochs
    over which it warms up from 0, are options the task reads."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        latent_dim: int = 32,
        grid: int | None = None,
        kl_weight: float = 1.0,
        kl_warmup_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.kl_weight, self.kl_warmup_epochs = kl_weight, kl_warmup_epochs
        grid = grid or DEFAULT_GRID
        self.squeeze = _squeeze(grid)
        self.mean = nn.Linear(in_channels[-1] * grid * grid, latent_dim)
        self.log_variance = nn.Linear(in_channels[-1] * grid * grid, latent_dim)
        self.decoder = MirroredDecoder(in_channels, strides, out_features, latent_dim, grid)

    def encode(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """features: stage maps. Returns: mean and log-variance of the code, each (B, latent_dim)."""
        pooled = self.squeeze(features[-1])
        return self.mean(pooled), self.log_variance(pooled).clamp(-12.0, 12.0)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features: stage maps. Returns: reconstruction logits (B, C, H', W'), mean and log-variance (B, latent)."""
        mean, log_variance = self.encode(features)
        code = mean + torch.randn_like(mean) * (0.5 * log_variance).exp() if self.training else mean
        return self.decoder(code), mean, log_variance
