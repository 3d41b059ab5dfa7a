"""Model rollouts on the device, a ring buffer of their transitions, and mixed real/model batches.

Everything here is pure and runs inside the compiled training chunk. Units: the buffer holds
transitions in the algorithm's units (observations normalised when the algorithm normalises them,
actions in [-1, 1], rewards scaled), as the device dataset does; the model and the termination rules
work in env units, and :class:`ModelData` carries the conversions.

A rollout (Janner et al. 2019; Yu et al. 2020): start states drawn uniformly from the data, ``horizon``
steps of the current policy, each step's (s' - s, r) sampled from the Gaussian of one elite drawn at
random per start state and step. A rollout stops at a terminal next state: the transition INTO the
terminal state is stored (terminal = 1), nothing after it; a step whose prediction is NaN/Inf ends the
rollout and is not stored. The ring buffer keeps the last ``capacity`` stored transitions; sampling
draws only filled slots.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.struct as struct
import jax
import jax.numpy as jnp

from offrl.data.sampling import Batch, DeviceData, sample_uniform
from offrl.dynamics.model import DynamicsModel, predict, termination_logits

UNCERTAINTIES = ("max_aleatoric", "ensemble_disagreement")


@struct.dataclass
class ModelData:
    """What model-based training needs on the device: the ensemble plus the unit conversions (``DeviceData.model``)."""

    dynamics: DynamicsModel
    obs_mean: jax.Array  # algorithm obs = (env obs - obs_mean) / obs_std (0 and 1 when not normalised)
    obs_std: jax.Array
    action_low: jax.Array  # env action = low + (unit + 1) / 2 (high - low)
    action_high: jax.Array
    reward_scale: float
    reward_shift: float
    rule: Any = struct.field(pytree_node=False, default=None)  # rule(obs, a, next_obs) -> bool, or "learned"

    def obs_to_env(self, obs):
        return obs * self.obs_std + self.obs_mean

    def obs_from_env(self, obs):
        return (obs - self.obs_mean) / self.obs_std

    def action_to_env(self, unit):
        return self.action_low + (jnp.clip(unit, -1.0, 1.0) + 1.0) * 0.5 * (self.action_high - self.action_low)

    def terminated(self, obs, actions, next_obs):
        if self.rule == "learned":
            return termination_logits(self.dynamics, obs, actions, next_obs) > 0.0
        return self.rule(obs, actions, next_obs)


def make_model_data(dynamics: DynamicsModel, transforms, rule) -> ModelData:
    import numpy as np

    normalise = transforms.normalize_observations
    obs_dim = transforms.obs_mean.shape[0]
    return ModelData(
        dynamics=dynamics,
        obs_mean=jnp.asarray(transforms.obs_mean if normalise else np.zeros(obs_dim), jnp.float32),
        obs_std=jnp.asarray(transforms.obs_std if normalise else np.ones(obs_dim), jnp.float32),
        action_low=jnp.asarray(transforms.action_low, jnp.float32), action_high=jnp.asarray(transforms.action_high, jnp.float32),
        reward_scale=float(transforms.reward_scale), reward_shift=float(transforms.reward_shift), rule=rule)


@struct.dataclass
class ModelBuffer:
    """A ring buffer of model transitions (algorithm units) on the device; slots [0, count) are filled."""

    observations: jax.Array  # [R, obs_dim]
    actions: jax.Array  # [R, act_dim]
    rewards: jax.Array  # [R] (unpenalised, algorithm units)
    next_observations: jax.Array  # [R, obs_dim]
    terminals: jax.Array  # [R]
    uncertainty: jax.Array  # [R] u(s, a) of the transition (MOPO's penalty before lambda)
    position: jax.Array  # () int32, next slot written
    count: jax.Array  # () int32, filled slots

    @property
    def capacity(self) -> int:
        return self.rewards.shape[0]


def init_buffer(capacity: int, obs_dim: int, action_dim: int) -> ModelBuffer:
    z = lambda *shape: jnp.zeros(shape, jnp.float32)
    return ModelBuffer(z(capacity, obs_dim), z(capacity, action_dim), z(capacity), z(capacity, obs_dim), z(capacity),
                       z(capacity), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def uncertainty(mean: jax.Array, logvar: jax.Array, kind: str) -> jax.Array:
    """u(s, a) [B] from every member's Gaussian ([M, B, D]): ``max_aleatoric`` = max_i ||sigma_i(s, a)||
    (MOPO's), ``ensemble_disagreement`` = ||std_i mu_i(s, a)|| (the spread of the members' means)."""
    if kind == "max_aleatoric":
        return jnp.linalg.norm(jnp.exp(0.5 * logvar), axis=-1).max(axis=0)
    if kind == "ensemble_disagreement":
        return jnp.linalg.norm(mean.std(axis=0), axis=-1)
    raise ValueError(f"unknown uncertainty {kind!r}; valid values: {', '.join(UNCERTAINTIES)}")


def model_step(model: ModelData, obs: jax.Array, actions: jax.Array, key: jax.Array, kind: str = "max_aleatoric"):
    """One model step from algorithm-unit (obs, unit actions) [B]: (next_obs, reward, terminal, finite, u), all [B, ...]
    in algorithm units; each row's (s' - s, r) is a sample of a random elite's Gaussian."""
    k_member, k_noise = jax.random.split(key)
    dyn = model.dynamics
    obs_env, act_env = model.obs_to_env(obs), model.action_to_env(actions)
    mean, logvar = predict(dyn, obs_env, act_env)  # [M, B, D]
    b = obs.shape[0]
    member = dyn.elites[jax.random.randint(k_member, (b,), 0, dyn.elites.shape[0])]
    rows = jnp.arange(b)
    sample = mean[member, rows] + jnp.exp(0.5 * logvar[member, rows]) * jax.random.normal(k_noise, mean.shape[1:])
    next_env = obs_env + sample[:, :-1]
    reward = sample[:, -1] * model.reward_scale + model.reward_shift
    terminal = model.terminated(obs_env, act_env, next_env)
    finite = jnp.isfinite(sample).all(axis=-1)
    return model.obs_from_env(next_env), reward, terminal, finite, uncertainty(mean, logvar, kind)


def rollout(model: ModelData, policy: Callable, start_obs: jax.Array, key: jax.Array, horizon: int, kind: str = "max_aleatoric"):
    """``horizon`` model steps from ``start_obs`` [B] with ``policy(obs, key) -> unit actions``.

    Returns the transitions, time-major [h, B, ...] (observations, actions, rewards, next_observations,
    terminals, uncertainty) and ``valid`` [h, B]: the step was reached (no terminal or NaN before it)
    and its prediction is finite.
    """

    def step(carry, k):
        obs, alive = carry
        k_act, k_model = jax.random.split(k)
        actions = policy(obs, k_act)
        next_obs, reward, terminal, finite, u = model_step(model, obs, actions, k_model, kind)
        valid = alive & finite
        out = (obs, actions, reward, next_obs, terminal.astype(jnp.float32), u)
        return (jnp.where(valid[:, None], next_obs, obs), valid & ~terminal), (out, valid)

    alive = jnp.ones(start_obs.shape[0], bool)
    _, (transitions, valid) = jax.lax.scan(step, (start_obs, alive), jax.random.split(key, horizon))
    return transitions, valid


def add_to_buffer(buffer: ModelBuffer, transitions, valid: jax.Array) -> ModelBuffer:
    """Write the valid transitions (any leading shape) after the last ones; the oldest are overwritten."""
    cap = buffer.capacity
    flat = [x.reshape((-1,) + x.shape[valid.ndim:]) for x in transitions]
    valid = valid.reshape(-1)
    rank = jnp.cumsum(valid.astype(jnp.int32)) - 1
    total = valid.sum(dtype=jnp.int32)
    keep = valid & (rank >= total - cap)  # more than fit: only the last ``cap`` of this batch
    index = jnp.where(keep, (buffer.position + rank) % cap, cap)  # slot ``cap`` is out of range: dropped
    fields = ("observations", "actions", "rewards", "next_observations", "terminals", "uncertainty")
    new = {f: getattr(buffer, f).at[index].set(x.astype(jnp.float32), mode="drop") for f, x in zip(fields, flat)}
    return buffer.replace(**new, position=(buffer.position + total) % cap, count=jnp.minimum(buffer.count + total, cap))


def rollout_into_buffer(buffer: ModelBuffer, data: DeviceData, policy: Callable, key: jax.Array, num_starts: int, horizon: int,
                        kind: str = "max_aleatoric") -> tuple[ModelBuffer, dict]:
    """Roll ``num_starts`` data states ``horizon`` steps and add the stored transitions to ``buffer``."""
    k_start, k_roll = jax.random.split(key)
    start = data.observations[jax.random.randint(k_start, (num_starts,), 0, data.size)]
    transitions, valid = rollout(data.model, policy, start, k_roll, horizon, kind)
    buffer = add_to_buffer(buffer, transitions, valid)
    stored = valid.sum()
    metrics = {"rollout_stored": stored.astype(jnp.float32),
               "rollout_length_mean": stored / num_starts,
               "rollout_uncertainty_mean": jnp.where(valid, transitions[5], 0.0).sum() / jnp.maximum(stored, 1),
               "rollout_reward_mean": jnp.where(valid, transitions[2], 0.0).sum() / jnp.maximum(stored, 1),
               "buffer_count": buffer.count.astype(jnp.float32)}
    return buffer, metrics


def sample_buffer(buffer: ModelBuffer, key: jax.Array, batch_size: int, discount: float, penalty: float = 0.0,
                  fallback: Optional[Batch] = None) -> Batch:
    """``batch_size`` transitions from the filled slots, reward r - penalty * u; the uncertainty in ``extras["uncertainty"]``.

    With an empty buffer (every prediction so far NaN/Inf) the rows of ``fallback`` (real data) stand in.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.count, 1))
    u = buffer.uncertainty[idx]
    batch = Batch(observations=buffer.observations[idx], actions=buffer.actions[idx],
                  rewards=buffer.rewards[idx] - penalty * u, next_observations=buffer.next_observations[idx],
                  terminals=buffer.terminals[idx], discounts=jnp.full((batch_size,), discount, jnp.float32),
                  extras={"uncertainty": u})
    if fallback is None:
        return batch
    empty = buffer.count == 0
    return jax.tree.map(lambda m, r: jnp.where(empty, r, m), batch, fallback)


def model_rows_mean(batch: Batch, values: jax.Array) -> jax.Array:
    """Mean of per-row ``values`` over the batch's model rows (``extras["is_real"] == 0``); 0 without any."""
    model_rows = 1.0 - batch.extras["is_real"]
    return (values * model_rows).sum() / jnp.maximum(model_rows.sum(), 1.0)


def real_batch_size(batch_size: int, real_ratio: float) -> int:
    """Rows of a mixed batch drawn from the data: round(f B), at least 1 unless f = 0."""
    n = int(round(real_ratio * batch_size))
    return max(n, 1) if real_ratio > 0 else 0


def with_model_rows(real: Optional[Batch], buffer: ModelBuffer, key: jax.Array, num_model: int, discount: float,
                    penalty: float = 0.0) -> Batch:
    """The real rows (``real``, from the algorithm's ``make_batch``) followed by ``num_model`` buffer rows.

    ``extras["is_real"]`` [B] marks the real rows and ``extras["uncertainty"]`` holds u (0 on real rows).
    With ``num_model = 0`` the batch is ``real`` itself (plus the two markers), so an algorithm with f = 1
    trains on exactly the batches of its model-free counterpart.
    """
    def mark(batch: Batch, is_real: float) -> Batch:
        n = batch.rewards.shape[0]
        extras = {"is_real": jnp.full((n,), is_real, jnp.float32),
                  "uncertainty": batch.extras.get("uncertainty", jnp.zeros((n,), jnp.float32))}
        return batch.replace(extras=extras)

    if num_model == 0:
        return mark(real, 1.0)
    fallback = None
    if real is not None and real.rewards.shape[0] > 0:
        fallback = jax.tree.map(lambda x: jnp.resize(x, (num_model,) + x.shape[1:]), mark(real, 1.0).replace(extras={}))
        fallback = fallback.replace(extras={"uncertainty": jnp.zeros((num_model,), jnp.float32)})
    model = mark(sample_buffer(buffer, key, num_model, discount, penalty, fallback), 0.0)
    if real is None or real.rewards.shape[0] == 0:
        return model
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), mark(real, 1.0), model)
