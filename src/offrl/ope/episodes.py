"""Episode bookkeeping shared by the estimators: the dataset as padded [episodes, steps] arrays, and
the bootstrap over episodes that gives every estimate its confidence interval.

``Episodes`` keeps the transition index of every (episode e, step t) cell, ``-1`` past the episode's
end, so that per-transition quantities (log-ratios, Q values) are scattered into the same layout with
:meth:`Episodes.pad`. Padded cells carry reward 0 and a log-ratio of 0: an episode that ended sits in
an absorbing state with zero reward, its importance weight frozen at its last value (the convention of
the weighted per-decision estimators, Thomas 2015, Sec. 3.9).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from offrl.data import Dataset


class OPEError(ValueError):
    """Off-policy evaluation cannot run on this input; the message names the problem and the fix."""


@dataclass(frozen=True)
class Episodes:
    """A dataset's episodes as padded [E, T] arrays (T = the longest episode)."""

    index: np.ndarray  # [E, T] int64 transition index, -1 past the end
    rewards: np.ndarray  # [E, T] float64, 0 past the end
    mask: np.ndarray  # [E, T] bool, True on real steps
    lengths: np.ndarray  # [E] int64
    start_index: np.ndarray  # [E] index of each episode's first transition

    @property
    def num_episodes(self) -> int:
        return int(self.index.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.index.shape[1])

    def pad(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Per-transition ``values`` [N, ...] in the [E, T, ...] layout, ``fill`` past each episode's end."""
        values = np.asarray(values, dtype=np.float64)
        out = values[np.maximum(self.index, 0)]
        return np.where(self.mask.reshape(self.mask.shape + (1,) * (values.ndim - 1)), out, fill)

    def discounts(self, discount: float) -> np.ndarray:
        """gamma^t for t in [0, T): shape [T]."""
        return discount ** np.arange(self.horizon, dtype=np.float64)

    def returns(self, discount: float) -> np.ndarray:
        """Discounted return of every episode [E]: sum_t gamma^t r_t (the on-policy Monte-Carlo estimate)."""
        return self.rewards @ self.discounts(discount)


def episodes_of(dataset: Dataset, min_episodes: int = 2) -> Episodes:
    """The episodes of ``dataset``; :class:`OPEError` when there are too few or they are not trajectories.

    Every estimator averages over whole episodes that begin at start states, so the dataset needs episode
    boundaries (at least ``min_episodes`` episodes) and each episode must be one trajectory: within an
    episode, ``next_observations[t]`` is ``observations[t + 1]``.
    """
    name = dataset.info.name or "the dataset"
    n_ep = dataset.num_episodes
    if n_ep < min_episodes:
        raise OPEError(
            f"{name} has {n_ep} episode(s) ({len(dataset)} transitions): off-policy evaluation averages over whole "
            "episodes from start states, so it needs episode boundaries. Fix: build the dataset with terminals/timeouts "
            "marking where each episode ends (Dataset.from_arrays(..., terminals=..., timeouts=...))")
    ends = dataset.episode_ends
    inner = np.flatnonzero(~ends[:-1])  # t and t + 1 in the same episode
    if inner.size:
        gap = np.abs(dataset.next_observations[inner] - dataset.observations[inner + 1]).max(axis=-1)
        broken = gap > 1e-5 * (1.0 + np.abs(dataset.observations[inner + 1]).max(axis=-1))
        if broken.any():
            row = int(inner[np.argmax(broken)])
            raise OPEError(
                f"{name}: {int(broken.sum())} transitions are followed, inside their episode, by a transition that does "
                f"not start where they end (first at row {row}: next_observations[{row}] != observations[{row + 1}]), so "
                "the episodes are not trajectories from start states. Fix: mark each episode's end with terminals/timeouts "
                "(the transitions may have been shuffled or concatenated without boundaries)")
    lengths = dataset.episode_lengths().astype(np.int64)
    starts = np.flatnonzero(dataset.episode_starts).astype(np.int64)
    horizon = int(lengths.max())
    steps = np.arange(horizon)
    mask = steps[None, :] < lengths[:, None]
    index = np.where(mask, starts[:, None] + steps[None, :], -1)
    rewards = np.where(mask, np.asarray(dataset.rewards, np.float64)[np.maximum(index, 0)], 0.0)
    return Episodes(index=index, rewards=rewards, mask=mask, lengths=lengths, start_index=starts)


@dataclass
class Estimate:
    """One estimator's value of one policy, with a bootstrap confidence interval over episodes."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    confidence: float
    episodes: int
    diagnostics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"estimator": self.estimator, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "confidence": self.confidence, "episodes": self.episodes, **self.diagnostics}


def bootstrap_counts(num_episodes: int, num_bootstrap: int, seed: int) -> np.ndarray:
    """[B, E] multiplicities of a bootstrap over episodes: each row resamples E episodes with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_episodes, size=(num_bootstrap, num_episodes))
    counts = np.zeros((num_bootstrap, num_episodes), np.float64)
    np.add.at(counts, (np.arange(num_bootstrap)[:, None], draws), 1.0)
    return counts


def with_bootstrap(name: str, statistic, num_episodes: int, *, num_bootstrap: int = 200, confidence: float = 0.95,
                   seed: int = 0, diagnostics: dict | None = None) -> Estimate:
    """Evaluate ``statistic(counts [B, E]) -> [B]`` on the data (all counts 1) and on ``num_bootstrap``
    resamples of the episodes; the interval is the percentile interval of the resampled values."""
    value = float(statistic(np.ones((1, num_episodes)))[0])
    lo, hi = value, value
    if num_bootstrap > 0:
        reps = np.asarray(statistic(bootstrap_counts(num_episodes, num_bootstrap, seed)), np.float64)
        reps = reps[np.isfinite(reps)]
        if reps.size:
            alpha = (1.0 - confidence) / 2.0
            lo, hi = (float(x) for x in np.quantile(reps, [alpha, 1.0 - alpha]))
    return Estimate(name, value, lo, hi, confidence, num_episodes, dict(diagnostics or {}))
