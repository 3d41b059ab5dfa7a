"""Discounted Monte-Carlo returns per episode, vectorised over the whole dataset.

For transition t of an episode whose last transition is T:

    G_t = sum_{k=t}^{T} discount^(k-t) r_k  +  discount^(T-t+1) (1 - terminal_T) V(s'_T)

The first term is known from the data; the second is the bootstrap of an episode that was cut by a
time limit (``timeouts``), whose value V(s'_T) only an algorithm can supply. `discounted_returns`
returns both pieces and the index T, so an algorithm completes G_t with its own V (AWR:
Peng et al. 2019).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["MonteCarloReturns", "discounted_returns"]


class MonteCarloReturns(NamedTuple):
    """The data-level pieces of G_t (float64 arrays of shape (N,), ``end_index`` int64)."""

    returns: np.ndarray
    """sum_{k=t}^{T} discount^(k-t) r_k: the discounted reward sum to the episode end."""
    bootstrap_discounts: np.ndarray
    """discount^(T-t+1) (1 - terminal_T): the factor on V(s'_T); 0 when the episode ended in a terminal."""
    end_index: np.ndarray
    """T: the index of the last transition of t's episode (s'_T is ``next_observations[T]``)."""


def _episode_end_index(episode_ends: np.ndarray) -> np.ndarray:
    """Index of the first episode end at or after each t (the last index counts as an end)."""
    n = len(episode_ends)
    idx = np.where(episode_ends, np.arange(n), n - 1)
    # reverse running minimum: the nearest end at or after t
    return np.minimum.accumulate(idx[::-1])[::-1].astype(np.int64)


def discounted_returns(rewards: np.ndarray, terminals: np.ndarray, episode_ends: np.ndarray,
                       discount: float) -> MonteCarloReturns:
    """Discounted reward sums to each episode's end, the bootstrap factors and the end indices.

    ``rewards`` (N,), ``terminals`` (N,) 0/1 (s_{t+1} is terminal: no bootstrap), ``episode_ends``
    (N,) bool (t is the last transition of its episode: ``terminals or timeouts``; the last index
    always ends an episode). Computed in float64 with the reverse linear recurrence
    G_t = r_t + c_t G_{t+1}, c_t = discount (1 - end_t), solved by recursive doubling: about
    log2(longest episode) vectorised passes, with no Python loop over transitions or episodes.
    """
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    terminals = np.asarray(terminals, dtype=np.float64).reshape(-1)
    ends = np.asarray(episode_ends, dtype=bool).reshape(-1).copy()
    n = len(rewards)
    if len(terminals) != n or len(ends) != n:
        raise ValueError(f"discounted_returns: rewards ({n}), terminals ({len(terminals)}) and "
                         f"episode_ends ({len(ends)}) must have the same length")
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discounted_returns: discount must be in [0, 1], got {discount}")
    if n == 0:
        empty = np.zeros(0, np.float64)
        return MonteCarloReturns(empty, empty.copy(), np.zeros(0, np.int64))
    ends[-1] = True

    # G_t = b_t + a_t G_{t+k} holds after the pass with shift k; start with k = 1.
    b = rewards.copy()
    a = np.where(ends, 0.0, float(discount))
    shift = 1
    while shift < n and np.any(a != 0.0):
        b_next, a_next = b[shift:].copy(), a[shift:].copy()  # old values: the pass reads before it writes
        b[:-shift] += a[:-shift] * b_next
        a[:-shift] *= a_next
        a[-shift:] = 0.0  # beyond the array: nothing left to add
        shift *= 2

    end_index = _episode_end_index(ends)
    steps_to_end = (end_index - np.arange(n) + 1).astype(np.float64)  # T - t + 1 >= 1
    bootstrap = np.power(float(discount), steps_to_end) * (1.0 - terminals[end_index])
    return MonteCarloReturns(b, bootstrap, end_index)
