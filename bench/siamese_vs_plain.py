"""The `siamese` task against a hand-written batch-hard triplet CNN, side by side on classes never seen in training.

The plain side is ../shared/baselines/siamese_digits_unseen.py as it stands (three conv-BN-ReLU stages, a
64-number L2-normalised embedding, batch-hard triplet loss with margin 0.3 over 7x8 P x K batches, Adam 1e-3,
30 epochs of 20 batches, no augmentation). Both sides get scikit-learn's digits upscaled to 32x32, that script's
70/30 stratified split (random_state=0), train on digits 0-6 only, and are scored the same way on the same test
images: verification ROC-AUC on all pairs of seen-class test digits, and prototype accuracy on the unseen 7-9
with 5 support images per class, the mean of 20 seeded support draws.

    python bench/siamese_vs_plain.py [--epochs 30] [--seeds 0 1 2] [loss=triplet ...]

(key=value overrides of the recipe's task section, to compare settings on the same footing.)
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

import visionheads as vh
from visionheads.metrics.similarity import embedding_scores, prototype_accuracy

SEEN = 7  # digits 0..6 are trained on; 7, 8, 9 never are


def digits_split() -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """Train and test images (N, 1, 32, 32) in [0, 1] and labels, as the plain script makes them."""
    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    x_train, x_test, y_train, y_test = train_test_split(images, data.target, test_size=0.3, random_state=0,
                                                        stratify=data.target)  # fmt: skip

    def upscale(x: np.ndarray) -> torch.Tensor:
        return F.interpolate(torch.from_numpy(x)[:, None], size=(32, 32), mode="bilinear", align_corners=False)

    return upscale(x_train), y_train, upscale(x_test), y_test


def scores(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(seen-class pair ROC-AUC, unseen 5-shot prototype accuracy) of test embeddings."""
    seen = labels < SEEN
    auc = embedding_scores(embeddings[seen], labels[seen], shots=5)["verification_auc"]
    unseen = prototype_accuracy(embeddings[~seen], labels[~seen], shots=5, seed=0)
    return auc, unseen


def plain(x_train, y_train, x_test, seed: int, epochs: int) -> tuple[np.ndarray, float]:
    """The hand-written batch-hard triplet CNN; returns the test embeddings and the training seconds."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    seen = y_train < SEEN
    images, labels = x_train[seen], y_train[seen]

    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

    net = nn.Sequential(block(1, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2), block(64, 128),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 64))  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for _ in range(20):
            index = []
            for c in rng.choice(SEEN, SEEN, replace=False):
                index += list(rng.choice(np.flatnonzero(labels == c), 8, replace=False))
            embedded = F.normalize(net(images[index]), dim=1)
            distances = torch.cdist(embedded, embedded)
            same = torch.from_numpy(labels[index][:, None] == labels[index][None])
            positive = (distances * same).max(1).values
            negative = (distances + same * 10).min(1).values
            loss = F.relu(positive - negative + 0.3).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        return F.normalize(net(x_test), dim=1).numpy(), seconds


def task(x_train, y_train, x_test, seed: int, epochs: int, recipe: dict) -> tuple[np.ndarray, float]:
    """The siamese task with the unseen-digits recipe's settings; returns the test embeddings and seconds."""
    seen = y_train < SEEN
    as_uint8 = lambda x: np.round(x.numpy()[:, 0] * 255).clip(0, 255).astype(np.uint8)  # noqa: E731
    train = vh.data.ArraySamples(as_uint8(x_train[seen])[..., None], label=y_train[seen],
                                 class_names=[str(d) for d in range(SEEN)])  # fmt: skip
    model = vh.Task("siamese", **{**recipe["task"], "seed": seed})
    settings = {**recipe["fit"], "epochs": epochs}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        model.fit(train, val=False, project=folder, plots=False, progress=False, **settings)
    seconds = time.perf_counter() - start
    return model.embed(list(as_uint8(x_test)[..., None])), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("overrides", nargs="*", help="key=value for the recipe's task section, e.g. loss=triplet")
    args = parser.parse_args()
    from visionheads.recipes import load_recipe, parse_overrides

    recipe = load_recipe("tasks/siamese_digits_unseen.yaml")
    recipe["task"].pop("name")
    recipe["task"].update(parse_overrides(args.overrides))
    x_train, y_train, x_test, y_test = digits_split()
    rows = {"plain batch-hard triplet CNN": [], "siamese task (recipe)": []}
    for seed in args.seeds:
        for name in rows:
            if name.startswith("plain"):
                embeddings, seconds = plain(x_train, y_train, x_test, seed, args.epochs)
            else:
                embeddings, seconds = task(x_train, y_train, x_test, seed, recipe["fit"]["epochs"], recipe)
            auc, unseen = scores(embeddings, y_test)
            rows[name].append((auc, unseen, seconds))
            print(f"seed {seed}  {name:<30} seen AUC {auc:.4f}  unseen 5-shot {unseen:.3f}  {seconds:.0f}s", flush=True)
    print(f"\n{'':<30} {'seen-pair ROC-AUC':>18} {'unseen 7-9, 5-shot':>19} {'per seed':>24} {'time':>6}")
    for name, values in rows.items():
        aucs, unseens, times = zip(*values, strict=True)
        per_seed = " / ".join(f"{u:.3f}" for u in unseens)
        print(f"{name:<30} {np.mean(aucs):>18.4f} {np.mean(unseens):>19.3f} {per_seed:>24} {np.mean(times):>5.0f}s")


if __name__ == "__main__":
    main()
