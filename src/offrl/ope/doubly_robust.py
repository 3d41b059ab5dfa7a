"""Doubly robust estimators: importance sampling with a Q model as a control variate.

Per-decision doubly robust (Jiang & Li 2016, eq. 9 unrolled; Thomas & Brunskill 2016, eq. 2), with
per-decision weights w_t (w_{-1} = 1), a model Q-hat(s, a) and V-hat(s) = E_{a~pi(.|s)} Q-hat(s, a):

    DR  = 1/n sum_i sum_t gamma^t [ w_{i,t} (r_{i,t} - Q-hat(s_{i,t}, a_{i,t})) + w_{i,t-1} V-hat(s_{i,t}) ]

and weighted DR (Thomas & Brunskill 2016, eq. 3), each weight normalised over the episodes at its step,
ŵ_{i,t} = w_{i,t} / sum_j w_{j,t} (ŵ_{i,-1} = 1/n):

    WDR = sum_i sum_t gamma^t [ ŵ_{i,t} (r_{i,t} - Q-hat(s_{i,t}, a_{i,t})) + ŵ_{i,t-1} V-hat(s_{i,t}) ]

With Q-hat = 0, DR is PDIS and WDR is WPDIS. With the true Q of a deterministic MDP every single episode's
term equals V(s_0): r_t + gamma V(s_{t+1}) = Q(s_t, a_t) makes the sum telescope. Past an episode's end
r, Q-hat and V-hat are 0 (the absorbing state).
"""

from __future__ import annotations

import numpy as np

from offrl.ope.episodes import Episodes, Estimate, OPEError, with_bootstrap
from offrl.ope.importance import Weights, _ratio

ESTIMATORS = ("dr", "wdr")


def doubly_robust(episodes: Episodes, weights: Weights, q_logged: np.ndarray, v_states: np.ndarray, discount: float,
                  estimator: str = "dr", *, num_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """DR or WDR. ``q_logged`` = Q-hat(s_t, a_t) and ``v_states`` = V-hat(s_t): per transition [N], or already in the
    episodes' [E, T] layout (a time-dependent Q of a finite-horizon problem)."""
    if estimator not in ESTIMATORS:
        raise OPEError(f"unknown doubly robust estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    shape = episodes.mask.shape
    q = np.where(episodes.mask, q_logged, 0.0) if np.shape(q_logged) == shape else episodes.pad(q_logged)
    v = np.where(episodes.mask, v_states, 0.0) if np.shape(v_states) == shape else episodes.pad(v_states)
    w = weights.per_decision
    w_prev = np.concatenate([np.ones((shape[0], 1)), w[:, :-1]], axis=1)
    gammas = episodes.discounts(discount)
    correction = w * (episodes.rewards - q)  # [E, T]
    baseline = w_prev * v

    def statistic(c: np.ndarray) -> np.ndarray:
        if estimator == "dr":
            return c @ ((correction + baseline) @ gammas) / c.sum(axis=1)
        return (_ratio(c @ correction, c @ w) + _ratio(c @ baseline, c @ w_prev)) @ gammas

    return with_bootstrap(estimator, statistic, episodes.num_episodes, num_bootstrap=num_bootstrap, confidence=confidence,
                          seed=seed, diagnostics=weights.diagnostics)


def per_episode_dr(episodes: Episodes, weights: Weights, q_logged, v_states, discount: float) -> np.ndarray:
    """Each episode's own DR term [E] (their mean is DR)."""
    shape = episodes.mask.shape
    q = np.where(episodes.mask, q_logged, 0.0) if np.shape(q_logged) == shape else episodes.pad(q_logged)
    v = np.where(episodes.mask, v_states, 0.0) if np.shape(v_states) == shape else episodes.pad(v_states)
    w = weights.per_decision
    w_prev = np.concatenate([np.ones((shape[0], 1)), w[:, :-1]], axis=1)
    return (w * (episodes.rewards - q) + w_prev * v) @ episodes.discounts(discount)
