"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications", v2).

Maximum-entropy RL with a tanh-squashed Gaussian policy, twin critics and a learned temperature:
  critic:      y = r + discount (1 - d) [ min_i Q'_i(s', a') - temperature log pi(a'|s') ],  a' ~ pi(.|s')
               L_Q = sum_i E_D[ (Q_i(s, a) - y)^2 ]
  actor:       L_pi = E_D[ temperature log pi(a~|s) - min_i Q_i(s, a~) ],  a~ ~ pi(.|s) (reparameterised)
  temperature: L_T = E_D[ temperature (-log pi(a~|s) - target_entropy) ]  (eq. 18; target -action_dim)
Update order as the reference code: critic, actor, temperature, then the Polyak target.

Registered as ``sac_offline``: run on a static dataset with no constraint towards the data, it is
the naive off-policy baseline whose Q extrapolates to out-of-distribution actions. The same
functions train behaviour policies online (:mod:`offrl.online`).
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
from offrl.config import Checked, flag, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import ensemble_td_loss, entropy_target, polyak_update, sac_actor_loss, soft_next_value, td_target
from offrl.losses import temperature_loss as sac_temperature_loss
from offrl.nets import Critic, LogScalar, TanhGaussianActor, tanh_gaussian_action


@dataclass(frozen=True)
class Config(Checked):
    """SAC; defaults from Haarnoja et al. (2018, v2), Table 1, with automatic temperature tuning."""

    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    temperature_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the log-temperature."""
    init_temperature: float = number(1.0, gt=0)
    """Initial entropy temperature (the weight of -log pi in the soft value)."""
    learn_temperature: bool = flag(True)
    """Tune the temperature so the policy entropy tracks ``target_entropy`` (False: keep ``init_temperature``)."""
    target_entropy: Optional[float] = number(None, optional=True)
    """Entropy the temperature tuning aims at; None means -action_dim (the paper's heuristic)."""
    backup_entropy: bool = flag(True)
    """Subtract temperature * log pi(a'|s') in the critic target (the soft Bellman backup)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor and critics."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    temperature: TrainState
    target_critic_params: dict
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net, critic_net = TanhGaussianActor(config.hidden_dims, spec.action_dim), Critic(config.hidden_dims)
    temp_net = LogScalar(config.init_temperature, "log_temperature")
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    temperature = TrainState.create(apply_fn=temp_net.apply, params=temp_net.init(k_actor), tx=optax.adam(config.temperature_lr))
    return State(actor, critic, temperature, critic.params, jnp.zeros((), jnp.int32))


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Twin-critic TD error against the clipped double-Q soft target with a' ~ pi(.|s')."""
    temperature = state.temperature.apply_fn(state.temperature.params) if config.backup_entropy else None
    next_q = soft_next_value(state.actor.apply_fn, state.actor.params, state.critic.apply_fn, state.target_critic_params,
                             batch.next_observations, key, temperature)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_q))
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """E[temperature log pi(a~|s) - min_i Q_i(s, a~)] with reparameterised a~ ~ pi(.|s)."""
    temperature = state.temperature.apply_fn(state.temperature.params)
    return sac_actor_loss(state.actor.apply_fn, params, state.critic.apply_fn, state.critic.params, batch.observations,
                          temperature, key)


def temperature_loss(config: Config, state: State, params, batch: Batch, entropy: jax.Array) -> tuple[jax.Array, dict]:
    """temperature * (entropy - target_entropy), with ``entropy`` = -mean log pi of fresh policy samples.

    Its gradient lowers the temperature while the policy is more random than the target and raises
    it while it is less random. ``entropy`` carries no gradient.
    """
    temperature = state.temperature.apply_fn(params)
    loss = sac_temperature_loss(temperature, entropy, entropy_target(config.target_entropy, batch.actions.shape[-1]))
    return loss, {"temperature_loss": loss, "temperature": temperature}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
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
    return state, {**c_info, **a_info, **t_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Deterministic: tanh(mean); stochastic: a sample of the tanh-squashed Gaussian."""
    return tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="sac_offline",
    description="Naive off-policy SAC on the static dataset (no constraint): the distribution-shift baseline",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))
