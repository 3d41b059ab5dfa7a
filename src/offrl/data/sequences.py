"""Sequence data: returns-to-go, length-K windows of whole episodes, and the context a sequence policy carries.

One convention for the return-to-go, shared by training and evaluation (undiscounted, the reward of
step t included):

    R_t = sum_{k=t}^{T} r_k          (T: the last step of t's episode)        -> `returns_to_go`
    R_{t+1} = R_t - r_t              (the evaluation's update after step t)   -> `next_return_to_go`

so an episode replayed step by step through `push` (starting from R_0 = its return) sees exactly the
R_t the training windows hold (``tests/test_sequences.py``). Rewards are in the units the algorithm
trains on (after the reward transform).

Training windows (`sample_windows`, pure, called inside the compiled loop): a window *ends* at a
transition drawn uniformly from the dataset (so episodes are drawn in proportion to their length and
every step, the tails included, is the last step of a window as often as any other) and reaches back
K - 1 steps; the steps before the episode's start are padding (``mask`` 0, values 0), on the left, as
at evaluation, where the current step is the last of the context and an episode's first steps have
less than K steps of history.

Evaluation (`Context`): each environment's last K steps in fixed-shape arrays on the device (one
compiled program whatever the step), shifted by one step per call; a new episode empties its row.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .dataset import Dataset, DatasetError

__all__ = ["Context", "Window", "check_sequence_data", "episode_return_range", "new_context", "next_return_to_go",
           "push", "record_actions", "returns_to_go", "sample_windows"]


def returns_to_go(rewards: np.ndarray, end_index: np.ndarray) -> np.ndarray:
    """R_t = sum_{k=t}^{T} r_k with T = ``end_index[t]``, the last transition of t's episode (float64).

    Computed as C[T] - C[t] + r_t with C the running sum, in float64 (no loop over episodes).
    """
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    cumsum = np.cumsum(rewards)
    return cumsum[np.asarray(end_index)] - cumsum + rewards


def next_return_to_go(rtg, reward):
    """R_{t+1} = R_t - r_t: the return-to-go of the next step once step t earned ``reward``."""
    return rtg - reward


@struct.dataclass
class Window:
    """K consecutive steps of one episode (per row), left-padded before the episode's start."""

    returns_to_go: jax.Array  # [B, K] R_t, in the training reward units
    observations: jax.Array  # [B, K, obs_dim]
    actions: jax.Array  # [B, K, act_dim]
    timesteps: jax.Array  # [B, K] int32, the step's index in its episode
    mask: jax.Array  # [B, K] float32, 1 for real steps, 0 for padding

    @property
    def length(self) -> int:
        return self.mask.shape[-1]


def sample_windows(data, key: jax.Array, batch_size: int, length: int) -> Window:
    """``batch_size`` windows of ``length`` steps of ``data`` (a `DeviceData`), each ending at a uniformly drawn
    transition t and holding steps t-K+1 .. t of its episode; steps before the episode's start are padding."""
    end = jax.random.randint(key, (batch_size,), 0, data.size, dtype=jnp.int32)
    start = data.episode_start_index[end]  # [B]
    steps = end[:, None] - (length - 1) + jnp.arange(length, dtype=jnp.int32)[None, :]  # [B, K]
    valid = steps >= start[:, None]
    steps = jnp.maximum(steps, start[:, None])  # a safe gather index inside the episode

    def pick(x: jax.Array) -> jax.Array:
        v = x[steps]
        m = valid.reshape(valid.shape + (1,) * (v.ndim - 2))
        return jnp.where(m, v, jnp.zeros((), v.dtype))

    return Window(returns_to_go=pick(data.returns_to_go), observations=pick(data.observations),
                  actions=pick(data.actions), timesteps=jnp.where(valid, steps - start[:, None], 0).astype(jnp.int32),
                  mask=valid.astype(jnp.float32))


@struct.dataclass
class Context:
    """The carried history of E environments: their last K steps (a `Window` with E rows) and each one's target."""

    window: Window
    target: jax.Array  # [E] R_0 of every new episode, in the training reward units


def new_context(num_envs: int, length: int, obs_dim: int, act_dim: int, targets) -> Context:
    """E empty histories (all padding) asking for ``targets`` ([E] or a scalar)."""
    e, k = int(num_envs), int(length)
    window = Window(returns_to_go=jnp.zeros((e, k), jnp.float32), observations=jnp.zeros((e, k, obs_dim), jnp.float32),
                    actions=jnp.zeros((e, k, act_dim), jnp.float32), timesteps=jnp.zeros((e, k), jnp.int32),
                    mask=jnp.zeros((e, k), jnp.float32))
    return Context(window=window, target=jnp.broadcast_to(jnp.asarray(targets, jnp.float32), (e,)))


def push(context: Context, observations: jax.Array, rewards: jax.Array, starts: jax.Array) -> Context:
    """Append the current step of every env: its observation, R_t and t (its action slot is 0 until `record_actions`).

    ``rewards`` [E] is the reward each env earned on its previous step (ignored where ``starts``);
    ``starts`` [E] bool marks the first observation of a new episode: that env's history is emptied,
    R_0 = its target and t = 0. Otherwise R_t = `next_return_to_go` (R_{t-1}, r_{t-1}) and t = t-1 + 1.
    """
    w = context.window
    starts = jnp.asarray(starts, bool)
    keep = (~starts).astype(jnp.float32)
    rtg = jnp.where(starts, context.target, next_return_to_go(w.returns_to_go[:, -1], jnp.asarray(rewards, jnp.float32)))
    t = jnp.where(starts, 0, w.timesteps[:, -1] + 1).astype(jnp.int32)

    def shift(x: jax.Array, new: jax.Array) -> jax.Array:
        kept = x * keep.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return jnp.concatenate([kept[:, 1:], new[:, None].astype(x.dtype)], axis=1)

    window = Window(returns_to_go=shift(w.returns_to_go, rtg), observations=shift(w.observations, observations),
                    actions=shift(w.actions, jnp.zeros_like(w.actions[:, -1])), timesteps=shift(w.timesteps, t),
                    mask=shift(w.mask, jnp.ones_like(rtg)))
    return context.replace(window=window)


def record_actions(context: Context, actions: jax.Array) -> Context:
    """Write the actions taken at the current (last) step into the history."""
    w = context.window
    return context.replace(window=w.replace(actions=w.actions.at[:, -1].set(actions.astype(w.actions.dtype))))


def episode_return_range(dataset: Dataset) -> tuple[float, float]:
    """(lowest, highest) undiscounted episode return of ``dataset`` (its own reward units)."""
    returns = dataset.episode_returns()
    return float(np.min(returns)), float(np.max(returns))


#: a dataset fails `check_sequence_data` when more than this fraction of its consecutive in-episode
#: transitions do not chain (next_observations[t] != observations[t+1])
UNCHAINED_FRACTION = 0.5


def check_sequence_data(dataset: Dataset, context_len: int, who: str) -> None:
    """Refuse a dataset whose episodes cannot be recovered as sequences, or a context longer than its longest episode.

    Episodes can be recovered when consecutive transitions inside an episode chain
    (``next_observations[t] == observations[t+1]``): a dataset of shuffled transitions, or one whose episode
    ends are not marked, breaks this at most steps. Episodes shorter than the context are padded, never refused.
    ``who`` names the algorithm in the messages (``"dt"``).
    """
    lengths = dataset.episode_lengths()
    ends = dataset.episode_ends
    inner = np.flatnonzero(~ends[:-1])  # t with t+1 in the same episode
    if inner.size:
        a, b = dataset.next_observations[inner], dataset.observations[inner + 1]
        scale = np.maximum(1.0, np.abs(a).max(axis=1))
        broken = np.abs(a - b).max(axis=1) > 1e-4 * scale
        if broken.mean() > UNCHAINED_FRACTION:
            first = int(inner[np.flatnonzero(broken)[0]])
            raise DatasetError(
                f"{who} needs whole episodes, but the episodes of {dataset.info.name or 'the dataset'} cannot be recovered: "
                f"in {int(broken.sum())} of {inner.size} steps inside an episode next_observations[t] differs from "
                f"observations[t+1] (first at t={first}), so the transitions are shuffled or the episode ends are not "
                "marked. Fix: use the dataset in its recorded order with terminals/timeouts marking every episode end")
    longest = int(lengths.max())
    if context_len > longest:
        raise DatasetError(
            f"{who}: the context of {context_len} steps is longer than the longest episode of "
            f"{dataset.info.name or 'the dataset'} ({longest} steps), so no window could ever be full. "
            f"Fix: --algo.context-len {longest} or less")
