"""Honest confidence: temperature scaling, calibration error, the abstain threshold and OOD scores.

A network trained with cross-entropy is usually over-confident: its top softmax score is higher than
its accuracy. One temperature ``T`` fitted on held-out logits (Guo et al., 2017, "On Calibration of
Modern Neural Networks") rescales every score without changing a single prediction. The abstain
threshold is then read off the calibrated scores of the in-class images the model gets right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from app.model.bundle import Calibration

DEFAULT_TARGET_RECALL = 0.95
ECE_BINS = 15
# Bounds on log T: 1/20 .. 20 covers any sane model; the fit never runs off to 0 or infinity.
LOG_T_BOUNDS = (-math.log(20.0), math.log(20.0))


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 2 or labels.dim() != 1 or len(logits) != len(labels):
        raise ValueError(
            f"need logits (N, classes) and labels (N,), got {list(logits.shape)} and "
            f"{list(labels.shape)}"
        )
    if len(labels) == 0:
        raise ValueError("no images to calibrate on")


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` on ``labels``.

    Optimises ``log T`` (so ``T`` stays positive) with L-BFGS in float64 on the CPU, from ``T = 1``:
    deterministic, and a handful of iterations for a one-parameter convex-in-practice problem.
    """
    _check(logits, labels)
    logits = logits.detach().to("cpu", torch.float64)
    labels = labels.detach().to("cpu", torch.int64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t], lr=1.0, max_iter=100, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.clamp(*LOG_T_BOUNDS).exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(*LOG_T_BOUNDS).exp())


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS
) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over equal-width bins.

    ``probs`` are (N, classes) probabilities; the confidence of an image is its top probability.
    """
    _check(probs, labels)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence, predicted = probs.detach().float().cpu().max(dim=1)
    correct = (predicted == labels.cpu()).float()
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins bin 0.
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    error = 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count:
            gap = confidence[members].mean() - correct[members].mean()
            error += count * abs(float(gap))
    return error / len(labels)


def choose_abstain_threshold(
    probs: torch.Tensor, labels: torch.Tensor, target_recall: float = DEFAULT_TARGET_RECALL
) -> float:
    """The largest top-score threshold that keeps ``target_recall`` of the correct answers.

    Of the images the model classifies correctly, at least ``target_recall`` have a top score at or
    above the threshold returned, so abstaining below it costs at most ``1 - target_recall`` of the
    in-class answers that were right. 0 (never abstain) when none is correct.
    """
    _check(probs, labels)
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    confidence, predicted = probs.detach().float().cpu().max(dim=1)
    kept = confidence[predicted == labels.cpu()].sort(descending=True).values
    if len(kept) == 0:
        return 0.0
    # The k-th highest correct score, k = ceil(recall * n): k images keep a score >= it.
    k = math.ceil(target_recall * len(kept) - 1e-9)
    return float(kept[k - 1])


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Energy ``-T * logsumexp(logits / T)`` per image: lower for in-class, higher for OOD."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve of a score that should be higher for ``positive`` than ``negative``.

    The Mann-Whitney statistic: the chance that a random positive outscores a random negative, ties
    counting one half.
    """
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("AUROC needs at least one score on each side")
    positive = positive.detach().double().cpu().reshape(-1, 1)
    negative = negative.detach().double().cpu().reshape(1, -1)
    wins = (positive > negative).double().sum() + 0.5 * (positive == negative).double().sum()
    return float(wins / (positive.numel() * negative.numel()))


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted calibration and what it did: ECE of the plain and of the calibrated scores."""

    calibration: Calibration
    ece_before: float
    ece_after: float
    accuracy: float
    images: int


def fit_calibration(
    logits: torch.Tensor,
    labels: torch.Tensor,
    fitted_on: str,
    target_recall: float = DEFAULT_TARGET_RECALL,
) -> CalibrationFit:
    """Fit the temperature, then the abstain threshold on the calibrated scores."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().cpu()
    temperature = fit_temperature(logits, labels)
    calibrated = torch.softmax(logits / temperature, dim=1)
    threshold = choose_abstain_threshold(calibrated, labels, target_recall)
    return CalibrationFit(
        calibration=Calibration(
            temperature=temperature,
            abstain_threshold=threshold,
            target_recall=target_recall,
            fitted_on=fitted_on,
        ),
        ece_before=expected_calibration_error(torch.softmax(logits, dim=1), labels),
        ece_after=expected_calibration_error(calibrated, labels),
        accuracy=float((logits.argmax(dim=1) == labels).float().mean()),
        images=len(labels),
    )
