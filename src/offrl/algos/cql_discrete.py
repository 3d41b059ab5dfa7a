"""Conservative Q-Learning for discrete actions: CQL(H) on a double DQN (Kumar et al. 2020).

  critic:  L_Q = alpha E_D[ logsumexp_a Q(s, a) - Q(s, a_data) ] + E_D[ l( Q(s, a_data) - y ) ]
           y = r + discount (1 - d) Q'(s', argmax_a' Q(s', a'))      (double DQN target)
           l = Huber (delta 1) or u^2 / 2
  target:  every ``target_update_period`` updates, theta' <- tau theta + (1 - tau) theta'
  policy:  a = argmax_a Q(s, a)

The penalty (eq. 4 of the paper, the CQL(H) variant, whose inner maximisation over mu has the
closed form mu(a|s) proportional to exp Q(s, a)) pushes down every action's Q in proportion to its
softmax probability and pushes up the data's action. At a fixed point of the tabular update,
``Q = B Q - alpha (mu - pi_beta) / pi_beta`` per state-action (pi_beta: the data's action
frequencies), so actions the data never takes are pushed down without bound and the greedy policy
stays in the data's support. alpha = 0 is offline double DQN.
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
from offrl.losses import (action_values, discrete_cql_penalty, double_q_next_values, periodic_target_update,
                          td_regression_loss, td_target)
from offrl.nets import MLP
from offrl.nets.discrete import greedy_or_sampled


@dataclass(frozen=True)
class Config(Checked):
    """CQL(H) on double DQN. alpha = 1.0 is the authors' Atari setting for the 10% datasets (4.0 for
    the 1% ones; Kumar et al. 2020, run on QR-DQN, per the instructions of their released code); the
    other fields are offrl's shared defaults (see docs/algorithms/cql_discrete.md)."""

    alpha: float = number(1.0, ge=0)
    """Weight of the CQL(H) penalty logsumexp_a Q(s, a) - Q(s, a_data) against the TD loss; larger is more conservative, 0 is double DQN."""
    double_q: bool = flag(True)
    """Double Q-learning target Q'(s', argmax Q(s', .)) (van Hasselt et al. 2016); False: max_a Q'(s', a)."""
    td_loss: Literal["huber", "mse"] = choice("huber")
    """TD regression loss: Huber with delta 1 or the squared error u^2 / 2 (the paper's 1/2 factor)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target network, applied every ``target_update_period`` updates (1.0: a hard copy)."""
    target_update_period: int = integer(1, ge=1)
    """Update the target network every this many updates."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the Q-network."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of the Q-network (its output layer has one value per action)."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    critic: TrainState
    target_critic_params: dict
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    if spec.num_actions is None:
        raise ValueError("cql_discrete needs a dataset with discrete actions (DatasetInfo.num_actions)")
    net = MLP(config.hidden_dims, spec.num_actions)
    critic = TrainState.create(apply_fn=net.apply, params=net.init(key, jnp.zeros((1, spec.obs_dim))),
                               tx=optax.adam(config.critic_lr))
    return State(critic=critic, target_critic_params=critic.params, step=jnp.zeros((), jnp.int32))


def critic_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """alpha * CQL(H) penalty + TD regression of Q(s, a_data) on the double-DQN target."""
    q_all = state.critic.apply_fn(params, batch.observations)
    q = action_values(q_all, batch.actions)
    next_target = state.critic.apply_fn(state.target_critic_params, batch.next_observations)
    next_online = state.critic.apply_fn(state.critic.params, batch.next_observations) if config.double_q else None
    target = td_target(batch.rewards, batch.terminals, batch.discounts, double_q_next_values(next_target, next_online))
    td = td_regression_loss(q, target, config.td_loss).mean()
    penalty = discrete_cql_penalty(q_all, batch.actions).mean()
    loss = td + config.alpha * penalty
    return loss, {"critic_loss": loss, "td_loss": td, "cql_penalty": penalty, "q_mean": q.mean()}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: critic_loss(config, state, p, batch), has_aux=True)(state.critic.params)
    critic, step = state.critic.apply_gradients(grads=grads), state.step + 1
    target = periodic_target_update(critic.params, state.target_critic_params, config.tau, step, config.target_update_period)
    return State(critic=critic, target_critic_params=target, step=step), info


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """argmax_a Q(s, a) (deterministic) or a ~ softmax(Q(s, .)), CQL(H)'s mu; int32 [B]."""
    return greedy_or_sampled(state.critic.apply_fn(state.critic.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return action_values(state.critic.apply_fn(state.critic.params, observations), actions)


register(Algo(
    name="cql_discrete",
    description="Conservative Q-Learning, CQL(H) on a double DQN, for discrete actions (Kumar et al. 2020)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    normalize_observations=True,
    discrete=True,
))
