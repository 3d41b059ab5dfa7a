"""Importance sampling estimators of a policy's value from logged episodes (Precup, Sutton & Singh 2000).

With per-decision weights w_t = prod_{k<=t} pi(a_k|s_k) / pi_beta(a_k|s_k), the episode's weight
W = w_{T-1} and its discounted return G = sum_t gamma^t r_t, over n episodes:

    IS     = 1/n sum_i W_i G_i                                      (trajectory-wise, unbiased)
    WIS    = sum_i W_i G_i / sum_i W_i                              (self-normalised: biased, consistent)
    PDIS   = 1/n sum_i sum_t gamma^t w_{i,t} r_{i,t}                (per-decision, unbiased)
    WPDIS  = sum_t gamma^t sum_i w_{i,t} r_{i,t} / sum_i w_{i,t}    (weighted per-decision)

An episode that ended keeps its last weight and earns reward 0 (:mod:`offrl.ope.episodes`). Weights
above ``max_weight`` are clipped to it (biased, lower variance); how many were clipped and the effective
sample size ESS = (sum_i W_i)^2 / sum_i W_i^2 of the (clipped) trajectory weights are reported with
every estimate, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offrl.ope.episodes import Episodes, Estimate, OPEError, with_bootstrap

ESTIMATORS = ("is", "wis", "pdis", "wpdis")


@dataclass(frozen=True)
class Weights:
    """Per-decision importance weights [E, T] (clipped) and what the clipping did."""

    per_decision: np.ndarray  # [E, T] w_t, frozen at the last value past the end
    diagnostics: dict

    @property
    def trajectory(self) -> np.ndarray:
        return self.per_decision[:, -1]


def log_ratios(eval_log_probs: np.ndarray, behaviour_log_probs: np.ndarray, name: str = "the dataset") -> np.ndarray:
    """log pi(a|s) - log pi_beta(a|s) per transition; :class:`OPEError` where pi_beta(a|s) = 0."""
    lb = np.asarray(behaviour_log_probs, np.float64)
    bad = ~np.isfinite(lb)
    if bad.any():
        row = int(np.argmax(bad))
        raise OPEError(f"{name}: the behaviour policy gives probability zero (log-prob {lb[row]}) to {int(bad.sum())} logged "
                       f"action(s) (first at row {row}), which it cannot have taken, so the importance weights are undefined. "
                       "Fix: correct the dataset's behaviour_log_probs, or estimate them with the behaviour proxy "
                       "(--behaviour proxy)")
    le = np.asarray(eval_log_probs, np.float64)
    if np.isnan(le).any():
        raise OPEError(f"{name}: the evaluation policy's log-probabilities hold NaN (first at row {int(np.argmax(np.isnan(le)))}). "
                       "Fix: check the policy's checkpoint (a diverged run?)")
    return le - lb


def importance_weights(episodes: Episodes, log_ratio: np.ndarray, max_weight: float | None = None) -> Weights:
    """Cumulative importance weights per episode and step, clipped at ``max_weight`` (None: no clipping)."""
    cum = np.cumsum(episodes.pad(log_ratio, 0.0), axis=1)
    with np.errstate(over="ignore"):
        w = np.exp(cum)
    real = episodes.mask
    diag = {"log_weight_max": float(np.max(cum[real])) if real.any() else 0.0}
    if max_weight is not None:
        if not max_weight > 0:
            raise OPEError(f"max_weight must be > 0, got {max_weight}")
        over = w > max_weight
        diag.update(max_weight=float(max_weight), weights_clipped=int((over & real).sum()), weights_total=int(real.sum()),
                    trajectories_clipped=int(over[:, -1].sum()))
        w = np.minimum(w, max_weight)
    else:
        diag.update(max_weight=None, weights_clipped=0, weights_total=int(real.sum()), trajectories_clipped=0)
    traj = w[:, -1]
    total, sq = traj.sum(), (traj**2).sum()
    ess = float(total**2 / sq) if sq > 0 and np.isfinite(sq) else 0.0
    diag.update(ess=ess, ess_fraction=ess / episodes.num_episodes)
    return Weights(per_decision=w, diagnostics=diag)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def importance_sampling(episodes: Episodes, weights: Weights, discount: float, estimator: str = "is", *,
                        num_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """One of :data:`ESTIMATORS` with its bootstrap interval over episodes."""
    if estimator not in ESTIMATORS:
        raise OPEError(f"unknown importance-sampling estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    w, traj = weights.per_decision, weights.trajectory
    gammas = episodes.discounts(discount)
    returns = episodes.returns(discount)
    wr = w * episodes.rewards

    def statistic(c: np.ndarray) -> np.ndarray:
        n = c.sum(axis=1)
        if estimator == "is":
            return c @ (traj * returns) / n
        if estimator == "wis":
            return _ratio(c @ (traj * returns), c @ traj)
        if estimator == "pdis":
            return c @ (wr @ gammas) / n
        return _ratio(c @ wr, c @ w) @ gammas  # wpdis

    return with_bootstrap(estimator, statistic, episodes.num_episodes, num_bootstrap=num_bootstrap, confidence=confidence,
                          seed=seed, diagnostics=weights.diagnostics)
