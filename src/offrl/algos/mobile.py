"""MOBILE: Model-Bellman Inconsistency penalised offLinE policy optimisation (Sun, Zhang, Jia, Zhang, Zhang & Yu 2023).

MOPO penalises the reward by the model's own uncertainty about (s', r); MOBILE carries the idea one
step further and penalises the disagreement of the Bellman target across the ensemble's members:

  U(s, a) = Std_i[ (1/S) sum_k min_j Q'_j(s'_ik, a'_ik) ],  s'_ik ~ T-hat_i(. | s, a),  a'_ik ~ pi(. | s'_ik)
  critic:   y = r - beta U(s, a) + discount (1 - d) min_j Q'_j(s', a')      (U only on the model rows;
            y floored at ``target_min``, the authors' 0 for locomotion), a' ~ pi(.|s'), no entropy term
            by default (``backup_entropy=False``)
  rollouts, batches (d_f = f d + (1 - f) d_model), actor and temperature: as MOPO's / SAC's.
With beta = 0, f = 1, ``backup_entropy=True`` and no floor it is ``sac_offline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import flag, integer, number, sizes
from offrl.data.sampling import Batch, DeviceData, sample_uniform
from offrl.dynamics import (ModelBuffer, ModelData, ModelRollouts, algo_device_model, init_buffer, model_rows_mean,
                            predict, real_batch_size, rollout_into_buffer, with_model_rows)
from offrl.losses import ensemble_td_loss, entropy_target, polyak_update, sac_actor_loss, soft_next_value, td_target
from offrl.losses import temperature_loss as sac_temperature_loss
from offrl.nets import Critic, LogScalar, TanhGaussianActor, tanh_gaussian_action, tanh_gaussian_sample_and_log_prob


@dataclass(frozen=True)
class Config(ModelRollouts):
    """MOBILE; defaults from the authors' code (OfflineRL-Kit's run_mobile: f = 0.05, h = 5, 10 next-state samples)."""

    penalty: float = number(1.0, ge=0)
    """beta: weight of the Bellman-target disagreement U(s, a) subtracted in the target of model rows."""
    num_next_samples: int = integer(10, ge=1)
    """S: next states drawn from each member to estimate its Bellman target."""
    target_min: Optional[float] = number(0.0, optional=True)
    """Floor of the critic target (the authors clamp at 0 for locomotion rewards); None: no floor."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    actor_lr: float = number(1e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    temperature_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the log-temperature."""
    init_temperature: float = number(1.0, gt=0)
    """Initial entropy temperature."""
    learn_temperature: bool = flag(True)
    """Tune the temperature towards ``target_entropy`` (False: keep ``init_temperature``)."""
    target_entropy: Optional[float] = number(None, optional=True)
    """Entropy the temperature tuning aims at; None means -action_dim."""
    backup_entropy: bool = flag(False)
    """Subtract temperature * log pi(a'|s') in the critic target (the authors' deterministic backup leaves it out)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor and critics."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step (real and model together)."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    temperature: TrainState
    target_critic_params: dict
    buffer: ModelBuffer
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net, critic_net = TanhGaussianActor(config.hidden_dims, spec.action_dim), Critic(config.hidden_dims)
    temp_net = LogScalar(config.init_temperature, "log_temperature")
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    temperature = TrainState.create(apply_fn=temp_net.apply, params=temp_net.init(k_actor), tx=optax.adam(config.temperature_lr))
    buffer = init_buffer(config.buffer_size, spec.obs_dim, spec.action_dim)
    return State(actor, critic, temperature, critic.params, buffer, jnp.zeros((), jnp.int32))


def rollout(config: Config, state: State, data: DeviceData, key: jax.Array) -> tuple[State, dict]:
    """One rollout round of the current (stochastic) policy in the model, into the buffer."""
    policy = lambda obs, k: tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, obs), k, False)
    buffer, metrics = rollout_into_buffer(state.buffer, data, policy, key, config.rollout_batch_size, config.horizon)
    return state.replace(buffer=buffer), metrics


def make_batch(config: Config, data: DeviceData, key: jax.Array) -> Batch:
    """The real rows of the batch, round(f B) uniform transitions, and the model (``update`` adds the model rows)."""
    batch = sample_uniform(data, key, real_batch_size(config.batch_size, config.real_ratio), config.discount)
    return batch.replace(extras={**batch.extras, "model": data.model})


def bellman_disagreement(config: Config, state: State, model: ModelData, observations, actions, key) -> jax.Array:
    """U(s, a) [B]: the std over members of each member's mean (over S sampled s') of min_j Q'_j(s', a'), a' ~ pi(.|s')."""
    k_noise, k_act = jax.random.split(key)
    obs_env, act_env = model.obs_to_env(observations), model.action_to_env(actions)
    mean, logvar = predict(model.dynamics, obs_env, act_env)  # [M, B, obs + 1]
    sample = mean + jnp.exp(0.5 * logvar) * jax.random.normal(k_noise, (config.num_next_samples,) + mean.shape)
    next_obs = model.obs_from_env(obs_env + sample[..., :-1])  # [S, M, B, obs]
    flat = next_obs.reshape(-1, next_obs.shape[-1])
    next_actions, _ = tanh_gaussian_sample_and_log_prob(*state.actor.apply_fn(state.actor.params, flat), k_act)
    q = state.critic.apply_fn(state.target_critic_params, flat, next_actions).min(axis=0).reshape(next_obs.shape[:3])
    return q.mean(axis=0).std(axis=0)


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Twin-critic TD error against r - beta U + discount (1 - d) min_j Q'_j(s', a') on the mixed batch."""
    temperature = state.temperature.apply_fn(state.temperature.params) if config.backup_entropy else None
    next_q = soft_next_value(state.actor.apply_fn, state.actor.params, state.critic.apply_fn, state.target_critic_params,
                             batch.next_observations, key, temperature)
    rewards = batch.rewards - config.penalty * batch.extras["uncertainty"]  # U on the model rows, 0 on the real ones
    target = td_target(rewards, batch.terminals, batch.discounts, next_q)
    if config.target_min is not None:
        target = jnp.maximum(target, config.target_min)
    target = jax.lax.stop_gradient(target)
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """E[temperature log pi(a~|s) - min_i Q_i(s, a~)] over the mixed batch's states."""
    temperature = state.temperature.apply_fn(state.temperature.params)
    return sac_actor_loss(state.actor.apply_fn, params, state.critic.apply_fn, state.critic.params, batch.observations,
                          temperature, key)


def temperature_loss(config: Config, state: State, params, batch: Batch, entropy: jax.Array) -> tuple[jax.Array, dict]:
    temperature = state.temperature.apply_fn(params)
    loss = sac_temperature_loss(temperature, entropy, entropy_target(config.target_entropy, batch.actions.shape[-1]))
    return loss, {"temperature_loss": loss, "temperature": temperature}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    num_real = real_batch_size(config.batch_size, config.real_ratio)
    model = batch.extras["model"]
    batch = with_model_rows(batch, state.buffer, jax.random.fold_in(key, 7), config.batch_size - num_real, config.discount)
    u = jnp.zeros_like(batch.rewards)
    if num_real < config.batch_size:  # the model rows' Bellman-target disagreement (real rows: none)
        rows = jax.tree.map(lambda x: x[num_real:], batch)
        u = u.at[num_real:].set(bellman_disagreement(config, state, model, rows.observations, rows.actions,
                                                     jax.random.fold_in(key, 8)))
    batch = batch.replace(extras={**batch.extras, "uncertainty": jax.lax.stop_gradient(u)})
    critic_key, actor_key = jax.random.split(key)
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    grads, t_info = jax.grad(
        lambda p: temperature_loss(config, state, p, batch, a_info["entropy"]), has_aux=True
    )(state.temperature.params)
    if config.learn_temperature:
        state = state.replace(temperature=state.temperature.apply_gradients(grads=grads))
    state = state.replace(
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    penalty_mean = config.penalty * model_rows_mean(batch, batch.extras["uncertainty"])
    return state, {**c_info, **a_info, **t_info, "bellman_penalty_mean": penalty_mean}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Deterministic: tanh(mean); stochastic: a sample of the tanh-squashed Gaussian."""
    return tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="mobile",
    description="MOBILE: SAC on real + model rollouts, targets penalised by the ensemble's disagreement on the Bellman target (model-based)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    make_batch=make_batch,
    q_value=q_value,
    device_model=algo_device_model,
    rollout=rollout,
    rollout_every=lambda config: config.rollout_every,
))
