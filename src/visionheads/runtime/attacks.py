"""Adversarial examples: FGSM and PGD on pixels in [0, 1], and the per-ε metrics of an attacked evaluation.

`task.evaluate(data, attack="fgsm", eps=[0, 0.05, 0.1])` adds, to the clean metrics, one entry per task metric,
attack and ε, named `<metric>@<attack>=<eps>` with ε as printed by Python's `:g` (`accuracy@fgsm=0.1`,
`rmse@pgd=0.02`). ε is an L∞ bound in pixel units of images in [0, 1], before the mean/std normalisation; the
ε = 0 entries are the clean pass itself (no attack runs).

The attacks take the gradient of the task's loss with respect to the input only (`torch.autograd.grad`), so the
model's parameters and their `.grad` stay untouched.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from visionheads.errors import ConfigError, one_of, whole_number

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask

ATTACKS = ("fgsm", "pgd")
DEFAULT_EPS = (0.0, 0.01, 0.02, 0.05, 0.1)  # the lecture's range on [0, 1] pixels; 0.1 is about 26 grey levels
DEFAULT_STEPS = 10
EXAMPLES = 8  # clean/adversarial pairs kept for the figure

LossOf = Callable[[torch.Tensor], torch.Tensor]  # pixel images in [0, 1] -> the scalar loss to increase


def attack_key(metric: str, attack: str, eps: float) -> str:
    """The name of a metric under attack: `accuracy@fgsm=0.1`."""
    return f"{metric}@{attack}={eps:g}"


@dataclass(frozen=True)
class AttackSettings:
    """Checked attack arguments of `Task.evaluation`: attack names, ε values (ascending), PGD steps and step size."""

    attacks: tuple[str, ...]
    eps: tuple[float, ...]
    steps: int = DEFAULT_STEPS
    alpha: float | None = None  # PGD's step size; None: 2.5 * eps / steps (Madry et al.)

    @classmethod
    def from_arguments(
        cls,
        attack: str | Sequence[str] | None,
        eps: float | Sequence[float] | None,
        steps: int | None,
        alpha: float | None,
    ) -> AttackSettings | None:
        """Settings from evaluation's arguments (None when no attack is asked for); bad values are ConfigErrors."""
        if attack is None:
            if eps is not None or steps is not None or alpha is not None:
                raise ConfigError(f"eps, steps and alpha apply to an attack; pass attack= one of {ATTACKS}")
            return None
        if not isinstance(attack, (str, Sequence, set, frozenset)):
            raise ConfigError(f"attack={attack!r}; use one of {ATTACKS} or a list of them")
        attacks = (attack,) if isinstance(attack, str) else tuple(attack)
        if not attacks:
            raise ConfigError(f"attack= names at least one of {ATTACKS}")
        for name in attacks:
            one_of("attack", name, ATTACKS)
        if len(set(attacks)) < len(attacks):
            raise ConfigError(f"attack= names an attack twice: {list(attacks)}")
        if "pgd" not in attacks and (steps is not None or alpha is not None):
            raise ConfigError("steps and alpha are PGD's; FGSM takes one step of size eps")
        values = DEFAULT_EPS if eps is None else _eps_values(eps)
        steps = DEFAULT_STEPS if steps is None else whole_number("steps", steps)
        if alpha is not None and not (_number(alpha, low=0, high=math.inf) and 0 < alpha < math.inf):
            raise ConfigError(f"alpha (PGD's step size in [0, 1] pixel units) must be a number > 0, got {alpha!r}")
        return cls(attacks, values, steps, None if alpha is None else float(alpha))

    def step_size(self, eps: float) -> float:
        """PGD's step size at `eps`."""
        return self.alpha if self.alpha is not None else 2.5 * eps / self.steps


def _number(value: object, *, low: float, high: float) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= float(value) <= high


def _eps_values(eps: float | Sequence[float]) -> tuple[float, ...]:
    values = list(eps) if isinstance(eps, (Sequence, np.ndarray)) and not isinstance(eps, str) else [eps]
    bad = [value for value in values if not _number(value, low=0.0, high=1.0)]
    if bad or not values:
        raise ConfigError(
            f"eps must be numbers in [0, 1] (an L∞ bound on pixels in [0, 1], e.g. [0, 0.01, 0.05, 0.1]), got {eps!r}"
        )
    values = sorted(float(value) for value in values)
    names = [f"{value:g}" for value in values]
    if len(set(names)) < len(names):
        raise ConfigError(f"eps values must differ (as printed, 6 significant digits), got {eps!r}")
    return tuple(values)


# ----- the attacks -------------------------------------------------------------------------------------------------
def _input_gradient(loss_of: LossOf, images: torch.Tensor) -> torch.Tensor:
    images = images.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss_of(images), images)  # w.r.t. the input only: no parameter's .grad
    return gradient


def fgsm(loss_of: LossOf, images: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step (Goodfellow et al. 2015).

    images: float in [0, 1], shape (B, C, H, W). Returns: adversarial images, float in [0, 1], within `eps` (L∞).
    """
    return (images + eps * _input_gradient(loss_of, images).sign()).clamp(0, 1).detach()


def pgd(
    loss_of: LossOf, images: torch.Tensor, eps: float, *, steps: int, alpha: float, generator: torch.Generator
) -> torch.Tensor:
    """Projected gradient descent on the loss (Madry et al. 2018): a uniform random start in the ε-ball (drawn from
    `generator`, on the CPU so that a seed gives the same start on every device), then `steps` signed-gradient steps
    of size `alpha`, each projected to the ε-ball around `images` and to [0, 1].

    images: float in [0, 1], shape (B, C, H, W). Returns: adversarial images, float in [0, 1], within `eps` (L∞).
    """
    low, high = (images - eps).clamp(min=0), (images + eps).clamp(max=1)
    start = torch.rand(images.shape, generator=generator).to(images.device, images.dtype)
    adversarial = torch.minimum(torch.maximum(images + eps * (2 * start - 1), low), high)
    for _ in range(steps):
        adversarial = adversarial + alpha * _input_gradient(loss_of, adversarial).sign()
        adversarial = torch.minimum(torch.maximum(adversarial, low), high)
    return adversarial.detach()


@contextmanager
def parameters_fixed(module: nn.Module) -> Iterator[None]:
    """`requires_grad` off for the parameters of `module` within the block, so that backward passes through it skip
    the weight gradients, and back on afterwards where it was on."""
    trainable = [parameter for parameter in module.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def perturb(
    attack: str, loss_of: LossOf, images: torch.Tensor, eps: float, settings: AttackSettings, seed: int
) -> torch.Tensor:
    """Adversarial versions of `images` (float in [0, 1], (B, C, H, W)) by `attack` at `eps`; PGD starts from `seed`."""
    if attack == "fgsm":
        return fgsm(loss_of, images, eps)
    generator = torch.Generator().manual_seed(seed)
    return pgd(loss_of, images, eps, steps=settings.steps, alpha=settings.step_size(eps), generator=generator)


def batch_seed(seed: int, rank: int, batch_index: int, eps: float) -> int:
    """A seed for PGD's random start on one batch at one ε, from the task's seed (the same on every run)."""
    return int(np.random.SeedSequence([seed, rank, batch_index, round(eps * 1e9)]).generate_state(1)[0])


# ----- an attacked evaluation pass -------------------------------------------------------------------------------
def pixel_images(images: torch.Tensor) -> list[np.ndarray]:
    """Float images in [0, 1], (B, C, H, W), as HxWxC uint8 arrays."""
    return list((images.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


@dataclass
class AdversarialExamples:
    """A few images of an attacked evaluation: clean and at the largest ε of each attack, with captions of their
    predictions and whether each prediction was right (None: not judged, e.g. a plain regression value)."""

    eps: float
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)  # "clean" and each attack -> HxWxC uint8
    captions: dict[str, list[str]] = field(default_factory=dict)
    correct: dict[str, list[bool | None]] = field(default_factory=dict)

    def add(self, row: str, images: torch.Tensor, described: list[tuple[str, bool | None]]) -> None:
        """Append images (float in [0, 1], (B, C, H, W)) and their (caption, correct) pairs to a row, up to EXAMPLES."""
        room = EXAMPLES - len(self.images.get(row, []))
        self.images.setdefault(row, []).extend(pixel_images(images[:room]))
        self.captions.setdefault(row, []).extend(caption for caption, _ in described[:room])
        self.correct.setdefault(row, []).extend(right for _, right in described[:room])

    @property
    def full(self) -> bool:
        """Whether every row holds EXAMPLES images."""
        return bool(self.images) and all(len(images) >= EXAMPLES for images in self.images.values())


@dataclass
class Robustness:
    """What an attacked evaluation adds for its figures: the settings, the metric the curve shows, and examples."""

    settings: AttackSettings
    metric: str  # e.g. "accuracy": the curve of `metric@attack=eps` against eps
    examples: AdversarialExamples


class AttackedPass:
    """The task's metrics under each attack and ε over one evaluation pass (torchmetrics states, synced), and the
    examples for the figure."""

    def __init__(
        self, settings: AttackSettings, new_metrics: Callable[[], Metric | MetricCollection], device: torch.device
    ) -> None:
        self.settings = settings
        self.metrics = {(a, eps): new_metrics().to(device) for a in settings.attacks for eps in settings.eps}
        self.examples = AdversarialExamples(eps=max(settings.eps))

    def values(self, metric_values: Callable[[dict[str, torch.Tensor]], dict[str, float]]) -> dict[str, float]:
        """`<metric>@<attack>=<eps>`: each scalar metric under each attack and ε, attack by attack, ε ascending."""
        values = {}
        for (attack, eps), metrics in self.metrics.items():
            computed = metrics.compute()
            computed = computed if isinstance(computed, dict) else {type(metrics).__name__: computed}
            values |= {attack_key(name, attack, eps): value for name, value in metric_values(computed).items()}
        return values


def robustness_figures(metrics: dict[str, float], robustness: Robustness, out_dir: Path) -> list[Path]:
    """robustness.png (the metric against ε, one curve per attack) and adversarial_examples.png."""
    from visionheads.viz.robustness import plot_adversarial_examples, plot_robustness

    settings, name, examples = robustness.settings, robustness.metric, robustness.examples
    curves = {attack: [metrics[attack_key(name, attack, eps)] for eps in settings.eps] for attack in settings.attacks}
    detail = f"PGD {settings.steps} steps" if "pgd" in settings.attacks else ""
    path = out_dir / "robustness.png"
    curve = plot_robustness(list(settings.eps), curves, metrics.get(name), name, path, detail=detail)
    rows = {}
    for row, images in examples.images.items():
        label = row if row == "clean" else f"{row} ε={examples.eps:g}"
        rows[label] = (images, examples.captions[row], examples.correct[row])
    return [curve, plot_adversarial_examples(rows, out_dir / "adversarial_examples.png")]


def attack_batch(
    task: RunnableTask, attacked: AttackedPass, batch: dict[str, Any], clean: Any, *, rank: int, batch_index: int
) -> None:
    """Score adversarial versions of one evaluation batch at every attack and ε of `attacked` (`clean`: the task's
    outputs on the batch as it is), and keep a few examples for the figure (on the first process).

    The attacks perturb pixels in [0, 1], before the mean/std normalisation, and go through the whole model (body
    and head) on images. The test loop runs in inference mode, whose tensors autograd refuses: what the loss saves
    for backward is made outside it; the metrics' states are updated inside it.
    """
    with torch.inference_mode(False):
        batch = {key: value.clone() if torch.is_tensor(value) else value for key, value in batch.items()}
        mean, std = task.input_statistics(batch["image"].device)
        pixels = batch["image"].float() * std + mean  # (B, C, H, W) in [0, 1]

    def loss_of(images: torch.Tensor) -> torch.Tensor:
        return torch.stack(list(task.losses(task((images - mean) / std), batch).values())).sum()

    examples = attacked.examples if rank == 0 and not attacked.examples.full else None
    if examples is not None:
        examples.add("clean", pixels, task.describe_predictions(clean, batch))
    for attack in attacked.settings.attacks:
        for eps in attacked.settings.eps:
            outputs, adversarial = clean, pixels  # ε = 0 is the clean pass itself
            if eps > 0:
                seed = batch_seed(task.config.seed, rank, batch_index, eps)
                with torch.inference_mode(False), torch.enable_grad(), parameters_fixed(task):
                    adversarial = perturb(attack, loss_of, pixels, eps, attacked.settings, seed)
                outputs = task((adversarial - mean) / std)
            task.update_metrics(attacked.metrics[(attack, eps)], outputs, batch)
            if examples is not None and eps == examples.eps:
                examples.add(attack, adversarial, task.describe_predictions(outputs, batch))
