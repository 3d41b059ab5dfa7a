"""Preprocessing statistics that travel with the agent.

Algorithms see observations normalised (when enabled), actions rescaled to [-1, 1] and rewards
scaled/shifted. Discrete actions (``num_actions`` set) are indices and pass through unchanged. `fit_transforms` computes the statistics from a `Dataset`; `Transforms` applies
them (to numpy or jax arrays) and round-trips through JSON for checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dataset import Dataset, DatasetError

__all__ = ["REWARD_SCALINGS", "Transforms", "fit_transforms"]

#: Floor added to the observation std (as TD3+BC does: ``std + 1e-3``).
OBS_STD_EPS = 1e-3
#: Valid values of `fit_transforms(reward_scaling=...)`.
REWARD_SCALINGS = ("none", "iql_locomotion", "minus_one")


def _vector(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32).reshape(-1)


def _clip(x: Any, low: Any, high: Any) -> Any:
    """Clip numpy or jax arrays without importing jax (both have ``.clip``)."""
    if not hasattr(x, "clip"):
        x = np.asarray(x, dtype=np.float32)
    return x.clip(low, high)


@dataclass(frozen=True, eq=False)
class Transforms:
    """Observation, action and reward preprocessing.

    Attributes:
        obs_mean: (obs_dim,) float32 observation mean over the dataset.
        obs_std: (obs_dim,) float32 observation std plus `OBS_STD_EPS`.
        normalize_observations: whether `normalize_obs` applies ``(obs - mean) / std``; the
            statistics are kept either way.
        reward_scale: multiplicative reward factor.
        reward_shift: additive reward offset, ``reward' = reward * scale + shift``.
        action_low: (act_dim,) float32 lower action bound in env units (empty when discrete).
        action_high: (act_dim,) float32 upper action bound in env units (empty when discrete).
        num_actions: number of discrete actions K, or None for continuous actions. Discrete
            actions are int32 indices that `action_to_unit`, `action_from_unit` and `apply`
            leave untouched.
    """

    obs_mean: np.ndarray
    obs_std: np.ndarray
    normalize_observations: bool
    reward_scale: float
    reward_shift: float
    action_low: np.ndarray
    action_high: np.ndarray
    num_actions: int | None = None

    def __post_init__(self) -> None:
        if self.num_actions is not None:
            object.__setattr__(self, "num_actions", int(self.num_actions))
            if self.num_actions < 1:
                raise ValueError(f"num_actions must be a positive integer or None, got {self.num_actions}")
        for name in ("obs_mean", "obs_std", "action_low", "action_high"):
            arr = _vector(getattr(self, name))
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "normalize_observations", bool(self.normalize_observations))
        object.__setattr__(self, "reward_scale", float(self.reward_scale))
        object.__setattr__(self, "reward_shift", float(self.reward_shift))
        if self.obs_mean.shape != self.obs_std.shape:
            raise ValueError(f"obs_mean {self.obs_mean.shape} and obs_std {self.obs_std.shape} "
                             "must have the same shape")
        if not (self.obs_std > 0).all():
            raise ValueError("obs_std must be positive")
        if self.action_low.shape != self.action_high.shape:
            raise ValueError(f"action_low {self.action_low.shape} and action_high "
                             f"{self.action_high.shape} must have the same shape")
        if not (np.isfinite(self.action_low).all() and np.isfinite(self.action_high).all()
                and (self.action_low < self.action_high).all()):
            raise ValueError("action bounds must be finite with action_low < action_high, got "
                             f"{self.action_low.tolist()} and {self.action_high.tolist()}")

    # -- application -------------------------------------------------------------------------

    def normalize_obs(self, obs: Any) -> Any:
        """``(obs - mean) / std`` if enabled, else `obs` unchanged (numpy or jax arrays)."""
        if not self.normalize_observations:
            return obs
        if not hasattr(obs, "shape"):
            obs = np.asarray(obs, dtype=np.float32)
        return (obs - self.obs_mean) / self.obs_std

    def scale_rewards(self, rewards: Any) -> Any:
        """``rewards * reward_scale + reward_shift``."""
        return rewards * self.reward_scale + self.reward_shift

    @property
    def is_discrete(self) -> bool:
        """True when the actions are discrete indices (``num_actions`` is set)."""
        return self.num_actions is not None

    def action_to_unit(self, actions: Any) -> Any:
        """Map env-unit actions to [-1, 1]; discrete indices are returned unchanged."""
        if self.num_actions is not None:
            return actions if hasattr(actions, "shape") else np.asarray(actions, dtype=np.int32)
        if not hasattr(actions, "shape"):
            actions = np.asarray(actions, dtype=np.float32)
        return 2.0 * (actions - self.action_low) / (self.action_high - self.action_low) - 1.0

    def action_from_unit(self, units: Any) -> Any:
        """Map [-1, 1] actions to env units, clipped to the bounds; discrete indices unchanged."""
        if self.num_actions is not None:
            return units if hasattr(units, "shape") else np.asarray(units, dtype=np.int32)
        units = _clip(units, -1.0, 1.0)
        actions = (units + 1.0) * (0.5 * (self.action_high - self.action_low)) + self.action_low
        return _clip(actions, self.action_low, self.action_high)

    def apply(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """Transformed float32 arrays: observations, next_observations, actions (in [-1, 1]),
        rewards, terminals, timeouts. Discrete actions stay int32 indices."""
        if self.num_actions is not None:
            if not getattr(dataset, "is_discrete", False) or dataset.num_actions != self.num_actions:
                raise ValueError(f"these transforms are for discrete actions (num_actions="
                                 f"{self.num_actions}) but the dataset has "
                                 f"num_actions={getattr(dataset, 'num_actions', None)}")
            unit = np.asarray(dataset.actions, dtype=np.int32)
        else:
            unit = np.clip(self.action_to_unit(dataset.actions), -1.0, 1.0)
        out = {
            "observations": self.normalize_obs(dataset.observations),
            "next_observations": self.normalize_obs(dataset.next_observations),
            "actions": unit,
            "rewards": self.scale_rewards(dataset.rewards),
            "terminals": dataset.terminals,
            "timeouts": dataset.timeouts,
        }
        return {k: v if k == "actions" and self.num_actions is not None
                else np.asarray(v, dtype=np.float32) for k, v in out.items()}

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (arrays become lists of floats; ``num_actions`` when discrete)."""
        out = {
            "obs_mean": self.obs_mean.tolist(),
            "obs_std": self.obs_std.tolist(),
            "normalize_observations": self.normalize_observations,
            "reward_scale": self.reward_scale,
            "reward_shift": self.reward_shift,
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
        }
        if self.num_actions is not None:
            out["num_actions"] = self.num_actions
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transforms:
        """Inverse of `to_dict`."""
        return cls(**{k: data[k] for k in (
            "obs_mean", "obs_std", "normalize_observations", "reward_scale", "reward_shift",
            "action_low", "action_high")}, num_actions=data.get("num_actions"))


def fit_transforms(dataset: Dataset, normalize_observations: bool,
                   reward_scaling: str = "none") -> Transforms:
    """Compute the preprocessing statistics of `dataset`.

    Args:
        dataset: the training data.
        normalize_observations: enable observation normalisation (statistics over
            ``dataset.observations``; std gets a ``+ 1e-3`` floor as in TD3+BC).
        reward_scaling: ``"none"``; ``"iql_locomotion"``: scale by
            ``1000 / (max episode return - min episode return)`` (IQL, MuJoCo locomotion);
            ``"minus_one"``: shift by -1 (IQL, AntMaze).

    Raises:
        ValueError: unknown `reward_scaling`, or ``"iql_locomotion"`` when every episode has
            the same return.
    """
    if reward_scaling not in REWARD_SCALINGS:
        raise ValueError(f"unknown reward_scaling {reward_scaling!r}; valid values: "
                         f"{', '.join(REWARD_SCALINGS)}")
    obs = dataset.observations.astype(np.float64)
    mean = obs.mean(axis=0)
    std = obs.std(axis=0) + OBS_STD_EPS

    scale, shift = 1.0, 0.0
    if reward_scaling == "iql_locomotion":
        returns = dataset.episode_returns()
        spread = float(returns.max() - returns.min())
        if spread <= 1e-8:
            raise DatasetError(
                f"reward_scaling='iql_locomotion' needs episodes with different returns, but all "
                f"{len(returns)} episode(s) return {returns.max():.6g}; use reward_scaling='none'")
        scale = 1000.0 / spread
    elif reward_scaling == "minus_one":
        shift = -1.0

    info = dataset.info
    if info.num_actions is not None:  # discrete: indices, no bounds
        return Transforms(obs_mean=mean, obs_std=std, normalize_observations=normalize_observations,
                          reward_scale=scale, reward_shift=shift, action_low=np.zeros(0),
                          action_high=np.zeros(0), num_actions=info.num_actions)
    if info.action_low is not None and info.action_high is not None:
        low, high = info.action_low, info.action_high
    else:
        low, high = -np.ones(dataset.act_dim), np.ones(dataset.act_dim)
    return Transforms(obs_mean=mean, obs_std=std, normalize_observations=normalize_observations,
                      reward_scale=scale, reward_shift=shift, action_low=low, action_high=high)
