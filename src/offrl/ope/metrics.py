"""How good an estimator is over a set of policies of known value (Fu et al. 2021, Sec. 5):

    normalised absolute error = 1/P sum_p |V-hat_p - V_p| / (max_p V_p - min_p V_p)
    Spearman rank correlation = Pearson correlation of the ranks of V-hat and V (ties: mean ranks)
    regret@k = max_p V_p - max_{p in top-k of V-hat} V_p, divided by (max_p V_p - min_p V_p)

Regret@k is the value lost by deploying the best of the k policies the estimator ranks highest.
"""

from __future__ import annotations

import numpy as np


def _pair(estimates, values) -> tuple[np.ndarray, np.ndarray]:
    est, val = np.asarray(estimates, np.float64), np.asarray(values, np.float64)
    if est.shape != val.shape or est.ndim != 1 or len(est) < 2:
        raise ValueError(f"need two 1-D arrays of the same length >= 2 (one entry per policy), got {est.shape} and {val.shape}")
    return est, val


def _spread(values: np.ndarray) -> float:
    spread = float(values.max() - values.min())
    return spread if spread > 0 else 1.0


def normalised_absolute_error(estimates, values) -> float:
    est, val = _pair(estimates, values)
    return float(np.mean(np.abs(est - val)) / _spread(val))


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):  # ties share their mean rank
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(estimates, values) -> float:
    est, val = _pair(estimates, values)
    a, b = _ranks(est), _ranks(val)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a**2).sum() * (b**2).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def regret_at_k(estimates, values, k: int) -> float:
    est, val = _pair(estimates, values)
    top = np.argsort(-est, kind="stable")[: max(1, min(k, len(est)))]
    return float((val.max() - val[top].max()) / _spread(val))
