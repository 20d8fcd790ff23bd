"""Evaluation metrics in numpy: RMSE, MAE, accuracy, log loss and ROC AUC."""

from __future__ import annotations

import numpy as np

# Probabilities are clipped to [EPS, 1 - EPS] in the log loss, so one confident wrong
# prediction costs at most -ln(EPS) = 34.5 nats rather than infinity.
EPS = 1e-15


def rmse(target: np.ndarray, prediction: np.ndarray) -> float:
    return float(np.sqrt(np.mean((prediction - target) ** 2)))


def mae(target: np.ndarray, prediction: np.ndarray) -> float:
    return float(np.mean(np.abs(prediction - target)))


def accuracy(target: np.ndarray, predicted_class: np.ndarray) -> float:
    return float(np.mean(predicted_class.astype(np.int64) == target.astype(np.int64)))


def binary_log_loss(target: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(probability, EPS, 1 - EPS)
    return float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))


def multiclass_log_loss(target: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(probabilities, EPS, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    chosen = p[np.arange(len(target)), target.astype(np.int64)]
    return float(-np.mean(np.log(chosen)))


def binary_auc(target: np.ndarray, score: np.ndarray) -> float | None:
    """Return the ROC AUC (Mann-Whitney U with average ranks for ties); None with one class."""
    positives = target == 1
    n_pos = int(positives.sum())
    n_neg = int(len(target) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(score)
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def macro_auc(target: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Return the unweighted mean of one-vs-rest AUCs over classes present with both labels."""
    values = []
    for index in range(probabilities.shape[1]):
        auc = binary_auc((target == index).astype(np.int64), probabilities[:, index])
        if auc is not None:
            values.append(auc)
    return float(np.mean(values)) if values else None


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Return 1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    return ranks


def regression_metrics(target: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    return {"rmse": rmse(target, prediction), "mae": mae(target, prediction)}


def binary_metrics(target: np.ndarray, probability: np.ndarray) -> dict[str, float | None]:
    return {
        "accuracy": accuracy(target, (probability >= 0.5).astype(np.int64)),
        "log_loss": binary_log_loss(target, probability),
        "auc": binary_auc(target, probability),
    }


def multiclass_metrics(target: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    return {
        "accuracy": accuracy(target, probabilities.argmax(axis=1)),
        "log_loss": multiclass_log_loss(target, probabilities),
        "auc": macro_auc(target, probabilities),
    }
