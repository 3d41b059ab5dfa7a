"""Device-resident dataset and pure, jit-able samplers.

`to_device` puts the transformed arrays (see `Transforms.apply`) and the episode index arrays on
the accelerator as a `DeviceData` pytree. The samplers are pure functions of
``(data, key, ...)``: call them inside ``jit`` with ``batch_size``, ``n`` and ``length`` static.
They gather with vectorised indices and never read across an episode end.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .dataset import Dataset
from .sequences import returns_to_go as _returns_to_go

__all__ = ["Batch", "DeviceData", "Segment", "sample_nstep", "sample_segments", "sample_uniform",
           "to_device"]


@struct.dataclass
class Batch:
    """A batch of (possibly n-step) transitions.

    ``discounts`` is the factor on the bootstrap value: ``discount`` for one step,
    ``discount**k`` for k steps, applied before the ``(1 - terminals)`` mask.
    """

    observations: jax.Array  # [B, obs_dim]
    actions: jax.Array  # [B, act_dim] float32 in [-1, 1]; discrete: [B] int32 indices
    rewards: jax.Array  # [B]
    next_observations: jax.Array  # [B, obs_dim]
    terminals: jax.Array  # [B]
    discounts: jax.Array  # [B]
    extras: dict = struct.field(default_factory=dict)  # per-transition arrays an algorithm added (DeviceData.extras)


@struct.dataclass
class Segment:
    """Fixed-length windows of consecutive transitions inside one episode, zero-padded.

    ``timesteps`` is the step index within the episode; ``mask`` is 1 for valid steps and 0 for
    padding past the episode end (padded values are zero); ``returns_to_go`` is the undiscounted
    sum of rewards from t to the episode end.
    """

    observations: jax.Array  # [B, L, obs_dim]
    actions: jax.Array  # [B, L, act_dim]; discrete: [B, L] int32
    rewards: jax.Array  # [B, L]
    terminals: jax.Array  # [B, L]
    timesteps: jax.Array  # [B, L] int32
    mask: jax.Array  # [B, L] float32
    returns_to_go: jax.Array  # [B, L]


@struct.dataclass
class DeviceData:
    """The transformed dataset on the device, plus per-transition episode indices."""

    observations: jax.Array  # [N, obs_dim] float32
    actions: jax.Array  # [N, act_dim] float32, in [-1, 1]; discrete: [N] int32 indices
    rewards: jax.Array  # [N] float32, scaled
    next_observations: jax.Array  # [N, obs_dim] float32
    terminals: jax.Array  # [N] float32
    episode_end_index: jax.Array  # [N] int32, last transition of the episode
    episode_start_index: jax.Array  # [N] int32, first transition of the episode
    returns_to_go: jax.Array  # [N] float32, undiscounted reward sum from t to the episode end
    extras: dict = struct.field(default_factory=dict)  # name -> [N, ...] arrays from Algo.device_extras
    model: object = None  # a model-based algorithm's device model (Algo.device_model), never gathered by the samplers

    @property
    def size(self) -> int:
        """Number of transitions N (static)."""
        return self.observations.shape[0]


_DEVICE_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


def to_device(arrays: Mapping[str, np.ndarray], dataset: Dataset,
              extras: Mapping[str, np.ndarray] | None = None) -> DeviceData:
    """Build `DeviceData` from transformed `arrays` (e.g. `Transforms.apply(dataset)`).

    The episode boundaries come from `dataset`; `arrays` must hold one row per transition of it.
    Returns-to-go are computed from ``arrays["rewards"]`` (i.e. after reward scaling). Integer
    ``actions`` (discrete indices, shape [N]) go on the device as int32, others as float32. ``extras``
    are further per-transition arrays (one row per transition) that samplers gather into
    ``Batch.extras`` under the same names.
    """
    n = dataset.num_transitions
    missing = [k for k in _DEVICE_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"to_device: arrays lack {missing}; pass Transforms.apply(dataset)")
    for key in _DEVICE_KEYS:
        if len(arrays[key]) != n:
            raise ValueError(f"to_device: arrays[{key!r}] has {len(arrays[key])} rows but the "
                             f"dataset has {n} transitions")
    for key, value in (extras or {}).items():
        if len(value) != n:
            raise ValueError(f"to_device: extras[{key!r}] has {len(value)} rows but the dataset has {n} transitions")
    if n >= np.iinfo(np.int32).max:
        raise ValueError(f"to_device: {n} transitions exceed the int32 index range")

    rewards = np.asarray(arrays["rewards"], dtype=np.float64)
    end_index = dataset.episode_end_index
    returns_to_go = _returns_to_go(rewards, end_index)  # the one convention (data/sequences.py)

    def f32(x: np.ndarray) -> jax.Array:
        return jnp.asarray(np.asarray(x, dtype=np.float32))

    return DeviceData(
        observations=f32(arrays["observations"]),
        actions=(jnp.asarray(np.asarray(arrays["actions"], dtype=np.int32))
                 if np.issubdtype(np.asarray(arrays["actions"]).dtype, np.integer)
                 else f32(arrays["actions"])),
        rewards=f32(rewards),
        next_observations=f32(arrays["next_observations"]),
        terminals=f32(arrays["terminals"]),
        episode_end_index=jnp.asarray(end_index.astype(np.int32)),
        episode_start_index=jnp.asarray(dataset.episode_start_index.astype(np.int32)),
        returns_to_go=f32(returns_to_go),
        extras={k: jnp.asarray(v) for k, v in (extras or {}).items()},
    )


def _sample_indices(data: DeviceData, key: jax.Array, batch_size: int) -> jax.Array:
    return jax.random.randint(key, (batch_size,), 0, data.size, dtype=jnp.int32)


def sample_uniform(data: DeviceData, key: jax.Array, batch_size: int,
                   discount: float = 0.99) -> Batch:
    """Uniform one-step transitions; ``discounts`` is ``discount`` for every row."""
    idx = _sample_indices(data, key, batch_size)
    return Batch(
        observations=data.observations[idx],
        actions=data.actions[idx],
        rewards=data.rewards[idx],
        next_observations=data.next_observations[idx],
        terminals=data.terminals[idx],
        discounts=jnp.full((batch_size,), discount, dtype=jnp.float32),
        extras={k: v[idx] for k, v in data.extras.items()},
    )


def sample_nstep(data: DeviceData, key: jax.Array, batch_size: int, n: int,
                 discount: float) -> Batch:
    """Uniform n-step transitions truncated at the episode end.

    With k = min(n, steps left in the episode): ``rewards = sum_{i<k} discount**i r_{t+i}``,
    ``next_observations``/``terminals`` are those of step t+k-1 and ``discounts = discount**k``.
    """
    idx = _sample_indices(data, key, batch_size)
    last = jnp.minimum(idx + (n - 1), data.episode_end_index[idx])  # [B]
    k = last - idx + 1  # [B] steps used, in 1..n
    offsets = jnp.arange(n, dtype=jnp.int32)  # [n]
    valid = offsets[None, :] < k[:, None]  # [B, n]
    steps = jnp.minimum(idx[:, None] + offsets[None, :], last[:, None])  # [B, n], in-episode
    powers = jnp.asarray(discount, jnp.float32) ** offsets.astype(jnp.float32)
    rewards = jnp.sum(jnp.where(valid, data.rewards[steps], 0.0) * powers[None, :], axis=1)
    return Batch(
        observations=data.observations[idx],
        actions=data.actions[idx],
        rewards=rewards,
        next_observations=data.next_observations[last],
        terminals=data.terminals[last],
        discounts=jnp.asarray(discount, jnp.float32) ** k.astype(jnp.float32),
        extras={k_: v[idx] for k_, v in data.extras.items()},
    )


def sample_segments(data: DeviceData, key: jax.Array, batch_size: int, length: int) -> Segment:
    """Windows of `length` steps starting at uniformly drawn transitions.

    Steps past the episode end are padding: ``mask`` 0 and every value zero.
    """
    idx = _sample_indices(data, key, batch_size)
    end = data.episode_end_index[idx]  # [B]
    steps = idx[:, None] + jnp.arange(length, dtype=jnp.int32)[None, :]  # [B, L]
    valid = steps <= end[:, None]
    steps = jnp.minimum(steps, end[:, None])  # safe gather index, inside the episode

    def pick(x: jax.Array) -> jax.Array:
        v = x[steps]
        m = valid.reshape(valid.shape + (1,) * (v.ndim - 2))
        return jnp.where(m, v, jnp.zeros((), v.dtype))

    timesteps = steps - data.episode_start_index[idx][:, None]
    return Segment(
        observations=pick(data.observations),
        actions=pick(data.actions),
        rewards=pick(data.rewards),
        terminals=pick(data.terminals),
        timesteps=jnp.where(valid, timesteps, 0).astype(jnp.int32),
        mask=valid.astype(jnp.float32),
        returns_to_go=pick(data.returns_to_go),
    )
