"""COMBO: Conservative Offline Model-Based Policy Optimization (Yu, Kumar, Rafailov, Rajeswaran, Levine & Finn 2021).

CQL(H) (docs/algorithms/cql.md) on batches from d_f = f d + (1 - f) d_model, d_model the rollouts of
the current policy in a learned dynamics ensemble (:mod:`offrl.dynamics`, as MOPO's but with no
reward penalty): the conservative term pushes Q down on model-generated state-actions and up on the
data's (s, a) (the paper's eq. 2):
  critic:  L_Q = sum_i E_{d_f}[ (Q_i(s, a) - y)^2 ]
                 + beta sum_i ( E_{s ~ rho}[ LSE_i(s) ] - E_{(s,a) ~ D}[ Q_i(s, a) ] )
           LSE_i(s) = logsumexp_j( Q_i(s, a_j) - log p(a_j) ) - log 3N over N actions from each of
           Unif[-1, 1]^d, pi(.|s) and pi(.|s')   (offrl.losses.cql_logsumexp)
           rho: the model rows' states (``push_down_states="model"``) or every row's (``"mixed"``, d_f)
  target:  y = r + discount (1 - d) min_i Q'_i(s', a'),  a' ~ pi(.|s')
  actor / temperature: SAC's on the mixed batch.
With f = 1 there are no model rows: rho is the data's states and COMBO is exactly ``cql`` (fixed alpha = beta).
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
from offrl.config import choice, integer, number, sizes
from offrl.data.sampling import Batch, DeviceData, sample_uniform
from offrl.dynamics import (ModelBuffer, ModelRollouts, algo_device_model, init_buffer, real_batch_size, rollout_into_buffer,
                            with_model_rows)
from offrl.losses import (cql_proposals, cql_q_and_logsumexp, ensemble_td_loss, entropy_target, polyak_update, sac_actor_loss,
                          td_target)
from offrl.losses import temperature_loss as sac_temperature_loss
from offrl.nets import Critic, LogScalar, TanhGaussianActor, tanh_gaussian_action


@dataclass(frozen=True)
class Config(ModelRollouts):
    """COMBO; f = 0.5 and h = 5 as in the paper's locomotion runs, beta = 1."""

    beta: float = number(1.0, ge=0)
    """Weight of the conservative term (E_rho[LSE] - E_D[Q])."""
    push_down_states: str = choice("model", ("model", "mixed"))
    """States of the push-down: ``model`` (the model rows of the batch) or ``mixed`` (every row: d_f)."""
    num_samples: int = integer(10, ge=1)
    """Actions N drawn from each of the three proposals per state for the log-sum-exp (3N in total)."""
    real_ratio: float = number(0.5, ge=0, le=1)
    """f: share of each batch drawn from the data (the rest from the model buffer)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    actor_lr: float = number(1e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    temperature_lr: float = number(1e-4, gt=0)
    """Adam learning rate of the log entropy temperature."""
    init_temperature: float = number(1.0, gt=0)
    """Initial entropy temperature."""
    target_entropy: Optional[float] = number(None, optional=True)
    """Entropy the temperature tuning aims at; None means -action_dim."""
    hidden_dims: tuple[int, ...] = sizes((256, 256, 256))
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
    temp_net = LogScalar(config.init_temperature)
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    temperature = TrainState.create(apply_fn=temp_net.apply, params=temp_net.init(k_actor), tx=optax.adam(config.temperature_lr))
    return State(actor, critic, temperature, critic.params, init_buffer(config.buffer_size, spec.obs_dim, spec.action_dim),
                 jnp.zeros((), jnp.int32))


def rollout(config: Config, state: State, data: DeviceData, key: jax.Array) -> tuple[State, dict]:
    """One rollout round of the current (stochastic) policy in the model, into the buffer (no penalty)."""
    policy = lambda obs, k: tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, obs), k, False)
    buffer, metrics = rollout_into_buffer(state.buffer, data, policy, key, config.rollout_batch_size, config.horizon)
    return state.replace(buffer=buffer), metrics


def make_batch(config: Config, data: DeviceData, key: jax.Array) -> Batch:
    """The real rows of the batch, round(f B) uniform transitions (``update`` adds the model rows)."""
    return sample_uniform(data, key, real_batch_size(config.batch_size, config.real_ratio), config.discount)


def sample_actions(config: Config, state: State, batch: Batch, key: jax.Array) -> dict:
    """The 3N proposal actions per state (uniform, pi(.|s), pi(.|s')) and their log-densities, and pi's actions at s'."""
    return cql_proposals(state.actor.apply_fn, state.actor.params, batch.observations, batch.next_observations,
                         config.num_samples, key)


def critic_loss(config: Config, state: State, params, batch: Batch, samples: dict, num_real: int) -> tuple[jax.Array, dict]:
    """TD error on every row + beta (E_rho[LSE] - E_D[Q(s, a)]): pushed down on rho's states, up on the real rows only."""
    next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations, samples["next_actions"][:, 0]).min(axis=0)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_q))
    q, lse = cql_q_and_logsumexp(state.critic.apply_fn, params, batch.observations, batch.actions, samples)  # (K, B) each
    td_loss = ensemble_td_loss(q, target)
    if num_real == batch.rewards.shape[0]:  # f = 1: CQL(H) exactly
        gap = (lse - q).mean(axis=1)
    else:
        down = lse[:, num_real:] if config.push_down_states == "model" else lse
        gap = down.mean(axis=1) - q[:, :num_real].mean(axis=1)
    penalty = config.beta * gap.sum()
    loss = td_loss + penalty
    return loss, {"critic_loss": loss, "td_loss": td_loss, "combo_penalty": penalty, "q_mean": q.mean(),
                  "logsumexp_mean": lse.mean(), "action_gap_mean": gap.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """E[temperature log pi(a~|s) - min_i Q_i(s, a~)] over the mixed batch's states."""
    temperature = state.temperature.apply_fn(state.temperature.params)
    return sac_actor_loss(state.actor.apply_fn, params, state.critic.apply_fn, state.critic.params, batch.observations,
                          temperature, key)


def temperature_loss(config: Config, state: State, params, entropy: jax.Array, action_dim: int) -> tuple[jax.Array, dict]:
    temperature = state.temperature.apply_fn(params)
    loss = sac_temperature_loss(temperature, entropy, entropy_target(config.target_entropy, action_dim))
    return loss, {"temperature_loss": loss, "temperature": temperature}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    num_real = real_batch_size(config.batch_size, config.real_ratio)
    batch = with_model_rows(batch, state.buffer, jax.random.fold_in(key, 7), config.batch_size - num_real, config.discount)
    sample_key, actor_key = jax.random.split(key)
    samples = sample_actions(config, state, batch, sample_key)
    grads, info = jax.grad(lambda p: critic_loss(config, state, p, batch, samples, num_real), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    grads, t_info = jax.grad(
        lambda p: temperature_loss(config, state, p, a_info["entropy"], batch.actions.shape[-1]), has_aux=True
    )(state.temperature.params)
    state = state.replace(
        temperature=state.temperature.apply_gradients(grads=grads),
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**info, **a_info, **t_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Deterministic: tanh(mean); stochastic: a sample of the tanh-squashed Gaussian."""
    return tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="combo",
    description="COMBO: CQL(H) on real + model rollouts, Q pushed down on model state-actions and up on the data's (model-based)",
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
