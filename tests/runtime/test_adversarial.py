"""Adversarial examples: FGSM and PGD hurt a digits classifier, stay within ε and [0, 1], leave the model alone."""

from __future__ import annotations

import pytest
import torch

import visionheads as vh
from visionheads.runtime.attacks import AttackSettings, fgsm, pgd

TEST = "digits:test[:120]"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(one_thread, tmp_path_factory):
    """A small digits classifier (seeded), its weights before any attack, and an attacked evaluation of it."""
    task = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16, seed=0)
    runs = tmp_path_factory.mktemp("runs")
    task.fit("digits[:600]", False, epochs=4, batch_size=32, lr=3e-3, plots=False, project=runs)
    before = {name: value.detach().clone() for name, value in task.state_dict().items()}
    evaluation = task.evaluation(TEST, attack=["fgsm", "pgd"], eps=[0.1, 0])
    return task, before, evaluation


def test_fgsm_hurts_and_pgd_at_least_as_much(trained):
    _, _, evaluation = trained
    metrics = evaluation.metrics
    clean = metrics["accuracy"]
    print(f"\naccuracy on {TEST}: clean {clean:.3f}, FGSM ε=0.1 {metrics['accuracy@fgsm=0.1']:.3f}, "
          f"PGD ε=0.1 {metrics['accuracy@pgd=0.1']:.3f}")  # fmt: skip
    assert clean > 0.8  # chance is 0.1
    assert metrics["accuracy@fgsm=0.1"] <= clean - 0.30
    assert metrics["accuracy@pgd=0.1"] <= metrics["accuracy@fgsm=0.1"] + 0.02


def test_eps_zero_is_the_clean_pass_and_keys_are_named_per_attack_and_eps(trained):
    _, _, evaluation = trained
    metrics = evaluation.metrics
    clean_names = ["loss", "accuracy", "macro_f1", "top5_accuracy"]
    attacked = [f"{m}@{a}={e}" for a in ("fgsm", "pgd") for e in ("0", "0.1") for m in clean_names[1:]]
    assert list(metrics) == clean_names + attacked  # ε ascending whatever order it was given in
    assert all(isinstance(value, float) for value in metrics.values())
    for name in clean_names[1:]:
        assert metrics[f"{name}@fgsm=0"] == metrics[name] == metrics[f"{name}@pgd=0"]


def test_attacks_leave_the_parameters_alone(trained):
    task, before, _ = trained
    after = task.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(parameter.grad is None for parameter in task.parameters())


def test_perturbations_stay_within_eps_and_in_the_pixel_range(trained):
    task, _, _ = trained
    task.eval()
    batch = next(iter(task.data_loader(TEST, train=False, batch_size=32)))
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (task.config.mean, task.config.std))
    pixels = batch["image"] / 255

    def loss_of(images):
        return torch.nn.functional.cross_entropy(task((images - mean) / std), batch["label"])

    eps = 0.05
    for adversarial in (
        fgsm(loss_of, pixels, eps),
        pgd(loss_of, pixels, eps, steps=5, alpha=0.02, generator=torch.Generator().manual_seed(0)),
    ):
        change = (adversarial - pixels).abs()
        assert change.max() <= eps + 1e-6 and change.max() > eps / 2
        assert adversarial.min() >= 0 and adversarial.max() <= 1
    runs = [pgd(loss_of, pixels, eps, steps=2, alpha=0.02, generator=torch.Generator().manual_seed(0)) for _ in "ab"]
    assert torch.equal(*runs)  # the random start is seeded
    assert all(parameter.grad is None for parameter in task.parameters())


def test_plot_draws_the_robustness_curve_and_the_examples(trained, tmp_path):
    task, _, evaluation = trained
    paths = task.plot(tmp_path, data=evaluation)
    names = {path.name for path in paths}
    assert {"robustness.png", "adversarial_examples.png", "confusion_matrix.png"} <= names
    assert all((tmp_path / name).stat().st_size > 5000 for name in ("robustness.png", "adversarial_examples.png"))
    examples = evaluation.robustness.examples
    assert list(examples.images) == ["clean", "fgsm", "pgd"] and examples.eps == 0.1
    assert all(len(images) == 8 for images in examples.images.values())


def test_regression_reports_angle_errors_under_attack(tmp_path):
    task = vh.Task("regression", backbone="simple_cnn", in_chans=1, image_size=16, seed=0)
    evaluation = task.evaluation("rotated-digits:test[:16]", attack="fgsm", eps=[0, 0.05])
    metrics = evaluation.metrics
    assert metrics["rmse@fgsm=0"] == metrics["rmse"] and 0 <= metrics["within_10@fgsm=0.05"] <= 1
    assert metrics["rmse@fgsm=0.05"] != metrics["rmse"]  # (an untrained model: how much it hurts is not the point)
    paths = task.plot(tmp_path, data=evaluation)
    assert (tmp_path / "robustness.png").is_file() and (tmp_path / "adversarial_examples.png") in paths


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attack": "fgms"}, "attack='fgms'; use one of"),
        ({"attack": 5}, "attack=5; use one of"),
        ({"attack": ["fgsm", "fgsm"]}, "names an attack twice"),
        ({"attack": "fgsm", "eps": -0.1}, "eps must be numbers in [0, 1]"),
        ({"attack": "pgd", "eps": [0.1, 2]}, "eps must be numbers in [0, 1]"),
        ({"attack": "pgd", "eps": [0.1, 0.1]}, "eps values must differ"),
        ({"attack": "pgd", "eps": ["0.1"]}, "eps must be numbers"),
        ({"attack": "pgd", "steps": 0}, "steps must be a whole number"),
        ({"attack": "pgd", "alpha": -1}, "alpha"),
        ({"attack": "fgsm", "steps": 5}, "steps and alpha are PGD's"),
        ({"eps": [0.1]}, "pass attack="),
    ],
)
def test_bad_attack_arguments_are_config_errors(options, message):
    task = vh.Task("classification", backbone="simple_cnn", in_chans=1, image_size=16, num_classes=10)
    with pytest.raises(vh.ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        task.evaluate("digits:test[:8]", **options)


def test_tasks_without_attacks_say_which_tasks_have_them():
    task = vh.Task("segmentation", backbone="simple_cnn", num_classes=2)
    with pytest.raises(vh.ConfigError, match="support the tasks classification, regression, not 'segmentation'"):
        task.evaluate("shapes:test", attack="fgsm")


def test_default_settings():
    settings = AttackSettings.from_arguments("pgd", None, None, None)
    assert settings.eps == (0.0, 0.01, 0.02, 0.05, 0.1) and settings.steps == 10
    assert settings.step_size(0.1) == pytest.approx(0.025)
    assert AttackSettings.from_arguments(None, None, None, None) is None
