"""Temperature scaling, calibration error, the abstain threshold and the OOD scores."""

from __future__ import annotations

import math

import pytest
import torch

from app.training.calibration import (
    auroc,
    choose_abstain_threshold,
    energy_score,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
)


def _logits_sampled_at_temperature(temperature: float, n: int = 20_000, classes: int = 8):
    """Logits whose labels are drawn from ``softmax(logits / temperature)``: that T is the truth."""
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(n, classes, generator=generator)
    probs = torch.softmax(logits / temperature, dim=1)
    labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at(
    true_temperature: float,
) -> None:
    logits, labels = _logits_sampled_at_temperature(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    assert fit_temperature(logits, labels) == fitted  # deterministic


def test_fitted_temperature_lowers_the_calibration_error_of_overconfident_logits() -> None:
    logits, labels = _logits_sampled_at_temperature(3.0)
    fit = fit_calibration(logits, labels, fitted_on="synthetic")
    assert fit.calibration.temperature == pytest.approx(3.0, rel=0.05)
    assert fit.ece_before > 0.1
    assert fit.ece_after < 0.02
    assert fit.calibration.fitted_on == "synthetic"
    assert fit.images == len(labels)


def test_ece_of_hand_worked_bins() -> None:
    # Two bins: confidences 0.9, 0.9 (one right: accuracy 0.5) and 0.6 (right: accuracy 1).
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 1])
    expected = (2 * abs(0.9 - 0.5) + 1 * abs(0.6 - 1.0)) / 3
    assert expected_calibration_error(probs, labels, bins=15) == pytest.approx(expected)


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    labels = torch.tensor([0, 1, 0, 1])  # the 0.5 bin: argmax 0, one right of two
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)


def test_threshold_keeps_the_target_share_of_correct_answers() -> None:
    scores = torch.linspace(0.5, 0.99, 20)
    probs = torch.stack([scores, 1 - scores], dim=1)
    labels = torch.zeros(20, dtype=torch.int64)
    labels[:3] = 1  # three wrong answers, the least confident, do not count
    threshold = choose_abstain_threshold(probs, labels, target_recall=0.9)
    correct = scores[3:]
    kept = (correct >= threshold).float().mean()
    assert kept >= 0.9
    # The largest such threshold: one step higher would drop below the target.
    higher = correct[correct > threshold]
    assert len(higher) < math.ceil(0.9 * len(correct))
    assert threshold == pytest.approx(float(correct.sort(descending=True).values[15]))


def test_threshold_is_zero_without_correct_answers_and_rejects_bad_recall() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    assert choose_abstain_threshold(probs, torch.tensor([1, 1])) == 0.0
    with pytest.raises(ValueError, match="target_recall"):
        choose_abstain_threshold(probs, torch.tensor([0, 0]), target_recall=0)


def test_auroc_counts_pairs_and_ties() -> None:
    assert auroc(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2])) == 1.0
    assert auroc(torch.tensor([0.1]), torch.tensor([0.9])) == 0.0
    assert auroc(torch.tensor([0.5, 0.9]), torch.tensor([0.5])) == pytest.approx(0.75)


def test_energy_score_is_minus_t_logsumexp() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    expected = -2.0 * math.log(sum(math.exp(v / 2.0) for v in (1.0, 2.0, 3.0)))
    assert float(energy_score(logits, 2.0)) == pytest.approx(expected, rel=1e-6)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64))
