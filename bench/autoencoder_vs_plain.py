"""The `autoencoder` task against a hand-written conv autoencoder, side by side on the same data and budget.

The plain side is the model of ../shared/baselines/autoencoder_digits_latent32.py (three conv-BN-ReLU-pool
stages, a 32-number linear bottleneck, transposed convolutions back, MSE, Adam 2e-3). Both sides get scikit-learn's
digits upscaled to 32x32 in that script's way, its 80/20 stratified split (random_state=0), the same number of
epochs and batch size, and report test MSE/PSNR on the same 360 images.

    python bench/autoencoder_vs_plain.py [--epochs 30] [--batch-size 64] [--backbone lenet5] [--lr 0.02] [--seeds 0 1 2]

A single seed decides little: the plain script's own test PSNR spans 27.3-29.1 dB over seeds 0-2. Each seed runs
both sides one after the other; the table gives each side's mean over the seeds, and each seed's PSNR.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

import visionheads as vh


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test images (N, 1, 32, 32) in [0, 1], as the plain script makes them."""
    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    train, test = train_test_split(images, test_size=0.2, random_state=0, stratify=data.target)

    def upscale(x: np.ndarray) -> torch.Tensor:
        return F.interpolate(torch.from_numpy(x)[:, None], size=(32, 32), mode="bilinear", align_corners=False)

    return upscale(train).clamp(0, 1), upscale(test).clamp(0, 1)


def plain(train: torch.Tensor, test: torch.Tensor, args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """The hand-written autoencoder; returns test MSE and seconds."""
    torch.manual_seed(seed)

    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

    encoder = nn.Sequential(block(1, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2), block(64, 128),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2048, 32))  # fmt: skip
    decoder = nn.Sequential(nn.Linear(32, 2048), nn.Unflatten(1, (128, 4, 4)), nn.ConvTranspose2d(128, 64, 2, 2),
                            nn.ReLU(), nn.ConvTranspose2d(64, 32, 2, 2), nn.ReLU(), nn.ConvTranspose2d(32, 16, 2, 2),
                            nn.ReLU(), nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid())  # fmt: skip
    net = nn.Sequential(encoder, decoder)
    optimizer = torch.optim.Adam(net.parameters(), 2e-3)
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(train))
        net.train()
        for i in range(0, len(train), args.batch_size):
            x = train[order[i : i + args.batch_size]]
            loss = F.mse_loss(net(x), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        mse = F.mse_loss(net(test), test).item()
    return mse, time.perf_counter() - start


def task(train: torch.Tensor, test: torch.Tensor, args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """The autoencoder task on the same images (HxWx1 arrays); returns test MSE and seconds."""
    ae = vh.Task(
        "autoencoder", backbone=args.backbone, in_chans=1, image_size=32, latent_dim=32, seed=seed, loss=args.loss
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as project:
        ae.fit(train.permute(0, 2, 3, 1).numpy(), val=False, epochs=args.epochs, batch_size=args.batch_size,
               lr=args.lr, weight_decay=args.weight_decay, plots=False, project=project, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    return ae.evaluate(test.permute(0, 2, 3, 1).numpy())["mse"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)  # the task's side; the plain script keeps its 2e-3
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--backbone", default="lenet5")
    parser.add_argument("--loss", default="mse", choices=["mse", "bce"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    train, test = digits_split()
    names = ("plain conv AE", f"Task autoencoder ({args.backbone})")
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for seed in args.seeds:
        rows[names[0]].append(plain(train, test, args, seed))
        rows[names[1]].append(task(train, test, args, seed))
        print(f"seed {seed}: " + ", ".join(f"{n} {psnr(r[-1][0]):.2f} dB" for n, r in rows.items()), flush=True)
    print(f"\ndigits 80/20 (1,437 train / 360 test) at 32 px, latent 32, {args.epochs} epochs, "
          f"batch {args.batch_size}, "
          f"lr {args.lr}, loss {args.loss}, seeds {args.seeds}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'':32}{'mean PSNR dB':>13}{'mean seconds':>13}  PSNR per seed")
    for name, runs in rows.items():
        per_seed = "  ".join(f"{psnr(mse):.2f}" for mse, _ in runs)
        mean_psnr, mean_seconds = np.mean([psnr(m) for m, _ in runs]), np.mean([s for _, s in runs])
        print(f"{name:32}{mean_psnr:>13.2f}{mean_seconds:>13.0f}  {per_seed}")


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of pixels in [0, 1]."""
    return 10 * math.log10(1 / mse)


if __name__ == "__main__":
    main()
