"""Critic Regularized Regression (Wang, Novikov, Zolna et al. 2020).

A TD critic for the current policy and a policy fitted by filtered maximum likelihood on dataset
actions, the filter f being a function of the critic's advantage:
  critic:    y = r + discount (1 - d) min_i Q'_i(s', a'),  a' ~ pi(.|s')
             L_Q = sum_i E_D[ (Q_i(s, a) - y)^2 ]
  advantage: A = Q(s, a) - 1/m sum_j Q(s, a_j)   ("mean")   or   Q(s, a) - max_j Q(s, a_j)   ("max"),
             a_j ~ pi(.|s), Q = min_i Q_i                      (m = num_samples)
  actor:     L_pi = -E_D[ f(A) log pi(a|s) ],
             f = 1[A > 0]                        (filter "binary", eq. 3)
             f = min(exp(beta A), max_weight)    (filter "exp", eq. 4)
Update order: critic, actor (with the critic just updated), then the Polyak target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, choice, flag, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import (advantage_weights, binary_filter, ensemble_td_loss, polyak_update, td_target,
                          weighted_log_likelihood_loss)
from offrl.nets import Critic, GaussianActor, gaussian_action, gaussian_samples, q_on_action_sets


@dataclass(frozen=True)
class Config(Checked):
    """CRR; beta, max_weight and num_samples from Wang et al. (2020) and the authors' released learner."""

    filter: Literal["exp", "binary"] = choice("exp")
    """Policy filter f(A): "exp" = min(exp(beta A), max_weight) (eq. 4), "binary" = 1[A > 0] (eq. 3)."""
    advantage: Literal["mean", "max"] = choice("mean")
    """Baseline of the advantage over policy samples: "mean" = Q(s,a) - mean_j Q(s,a_j), "max" = Q(s,a) - max_j Q(s,a_j)."""
    beta: float = number(1.0, ge=0)
    """Inverse temperature of the exponential filter exp(beta * A); the paper's beta = 1 (a temperature) is 1 / beta."""
    max_weight: float = number(20.0, gt=0)
    """Clip of the exponential filter (the paper: 20)."""
    num_samples: int = integer(4, ge=1)
    """Policy samples m per state in the advantage baseline (the paper: 4)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic (the authors' learner copies it every 100 steps)."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor and critics."""
    critic_layer_norm: bool = flag(False)
    """LayerNorm after each hidden Dense layer of the critics (before the ReLU); False is the paper's plain MLP."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_critic_params: dict
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net = GaussianActor(config.hidden_dims, spec.action_dim)
    critic_net = Critic(config.hidden_dims, layer_norm=config.critic_layer_norm)
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    return State(actor, critic, critic.params, jnp.zeros((), jnp.int32))


def sample_actions(state: State, observations: jax.Array, key: jax.Array, num: int) -> jax.Array:
    """num actions a ~ pi(.|s) per state, clipped to the unit box: shape [B, num, act_dim]."""
    return gaussian_samples(*state.actor.apply_fn(state.actor.params, observations), key, num)


def advantage(config: Config, state: State, batch: Batch, key: jax.Array) -> jax.Array:
    """A = Q(s, a) - baseline over m policy samples (mean or max), Q = min_i Q_i, one critic call on [B*(m+1)] pairs."""
    sampled = sample_actions(state, batch.observations, key, config.num_samples)  # [B, m, act]
    actions = jnp.concatenate([batch.actions[:, None], sampled], axis=1)  # [B, m+1, act]: data action first
    q = q_on_action_sets(state.critic.apply_fn, state.critic.params, batch.observations, actions).min(axis=0)  # [B, m+1]
    baseline = q[:, 1:].mean(axis=1) if config.advantage == "mean" else q[:, 1:].max(axis=1)
    return q[:, 0] - baseline


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Twin-critic TD error against min_i Q'_i(s', a') with a' ~ pi(.|s')."""
    next_actions = sample_actions(state, batch.next_observations, key, 1)[:, 0]
    next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations, next_actions).min(axis=0)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_q))
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def filter_weights(config: Config, adv: jax.Array) -> jax.Array:
    """f(A): the binary or the clipped exponential filter."""
    if config.filter == "binary":
        return binary_filter(adv)
    return advantage_weights(adv, config.beta, config.max_weight)


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """-E[f(A) log pi(a|s)] on dataset actions."""
    adv = advantage(config, state, batch, key)
    weights = jax.lax.stop_gradient(filter_weights(config, adv))
    mean, log_std = state.actor.apply_fn(params, batch.observations)
    loss = weighted_log_likelihood_loss(weights, mean, log_std, batch.actions)
    return loss, {"actor_loss": loss, "adv_mean": adv.mean(), "adv_weight_mean": weights.mean()}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    critic_key, actor_key = jax.random.split(key)
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    state = state.replace(
        actor=state.actor.apply_gradients(grads=grads),
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**c_info, **a_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="crr",
    description="Critic Regularized Regression: TD critic, binary or exponential advantage filter (Wang et al. 2020)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))
