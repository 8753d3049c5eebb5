"""Unsupervised pretraining: a digits classifier with 10 labels per class, started from an autoencoder's body against
the same classifier from scratch, averaged over seeds.

For each seed: a `conv` autoencoder (LeNet-5 body, latent 32, as tasks/autoencoder_digits.yaml) learns from all
digits training images without their labels; then 10 labelled images per class are drawn (seeded) from that
training split, and the same classifier (LeNet-5 + linear head, same epochs, batch and learning rate) trains on
them four ways: from scratch; from the autoencoder's body with every weight trained at the same rate (strategy
"scratch"); from that body by strategy "auto", which is "finetune" for given weights (the head alone for the first
fifth of the epochs, then everything, the body at a tenth of the rate); and on the autoencoder's frozen body
(strategy "features": the head alone, on cached features). Each is scored on digits:test (360 images).

    python bench/autoencoder_pretraining.py [--seeds 0 1 2] [--ae-epochs 30] [--epochs 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import visionheads as vh
from visionheads.data.digits import digits

SIDE = 32
BODY = "lenet5"


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Digits of `split`: images (N, 32, 32, 1) uint8 and labels (N,)."""
    samples = digits(split)
    items = [samples[i] for i in range(len(samples))]
    return np.stack([s["image"] for s in items]), np.array([s["label"] for s in items])


def few_labels(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` images of each class, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)])


def classifier_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], seed: int,
                        args: argparse.Namespace, project: str, **start: object) -> float:  # fmt: skip
    """Test accuracy of a LeNet-5 classifier fitted on `train`; `start` holds backbone=/weights=/strategy=."""
    strategy = start.pop("strategy", "auto")
    task = vh.Task("classification", num_classes=10, in_chans=1, image_size=SIDE, seed=seed, **start)
    task.fit(train, epochs=args.epochs, batch_size=20, lr=args.lr, strategy=strategy, plots=False, progress=False,
             project=project)  # fmt: skip
    return task.evaluate(test)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ae-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--per-class", type=int, default=10)
    args = parser.parse_args()
    (images, labels), test = arrays("train"), arrays("test")
    rows: dict[str, list[float]] = {"from scratch": [], "AE body, all trained": [], "AE body, finetune": [],
                                    "AE body frozen": []}  # fmt: skip
    start_time = time.perf_counter()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as project:
            ae = vh.Task("autoencoder", backbone=BODY, in_chans=1, image_size=SIDE, latent_dim=32, seed=seed)
            ae.fit(images, epochs=args.ae_epochs, batch_size=64, lr=0.02, val=False, plots=False, progress=False,
                   project=project)  # fmt: skip
            weights = ae.save(f"{project}/ae.pt")
            chosen = few_labels(labels, args.per_class, seed)
            train = (images[chosen], labels[chosen])
            rows["from scratch"].append(classifier_accuracy(train, test, seed, args, project, backbone=BODY))
            rows["AE body, all trained"].append(
                classifier_accuracy(
                    train, test, seed, args, project, backbone=BODY, weights=weights, strategy="scratch"
                )  # fmt: skip
            )
            rows["AE body, finetune"].append(
                classifier_accuracy(train, test, seed, args, project, backbone=BODY, weights=weights)
            )
            rows["AE body frozen"].append(
                classifier_accuracy(
                    train, test, seed, args, project, backbone=BODY, weights=weights, strategy="features"
                )  # fmt: skip
            )
        print(f"seed {seed}: " + ", ".join(f"{name} {values[-1]:.3f}" for name, values in rows.items()), flush=True)
    print(f"\ndigits, {args.per_class} labels per class ({10 * args.per_class} images), test 360 images; "
          f"autoencoder {args.ae_epochs} epochs on 1,078 unlabelled images; classifier {args.epochs} epochs; "
          f"seeds {args.seeds}; {time.perf_counter() - start_time:.0f} s")  # fmt: skip
    print(f"{'':20}{'mean acc':>9}  per seed")
    for name, values in rows.items():
        print(f"{name:20}{np.mean(values):>9.3f}  " + "  ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
