"""Offline DQN: (double) Q-learning on a fixed dataset, the naive discrete-action baseline.

  critic:  L_Q = E_D[ l( Q(s, a) - y ) ],   y = r + discount (1 - d) V'(s')
           V'(s') = max_a' Q'(s', a')                        (DQN, Mnih et al. 2015)
           V'(s') = Q'(s', argmax_a' Q(s', a'))               (double DQN, van Hasselt et al. 2016)
           l = Huber (delta 1) or u^2 / 2
  target:  every ``target_update_period`` updates, theta' <- tau theta + (1 - tau) theta'
  policy:  a = argmax_a Q(s, a)

Nothing keeps the greedy action inside the data: an action never taken in a state gets whatever
value the network extrapolates, and the max (or argmax) in the target and the policy picks it when
it is too high (the over-estimation that CQL and IQL are built to avoid; tests/test_discrete.py).
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
from offrl.losses import action_values, double_q_next_values, periodic_target_update, td_regression_loss, td_target
from offrl.nets import MLP
from offrl.nets.discrete import greedy_or_sampled


@dataclass(frozen=True)
class Config(Checked):
    """Offline (double) DQN. Loss, double Q and the target rule follow Mnih et al. 2015 / van Hasselt
    et al. 2016; the optimiser, widths and Polyak target are offrl's shared defaults (see the docs page)."""

    double_q: bool = flag(True)
    """Double Q-learning target Q'(s', argmax Q(s', .)) (van Hasselt et al. 2016); False: max_a Q'(s', a)."""
    td_loss: Literal["huber", "mse"] = choice("huber")
    """TD regression loss: Huber with delta 1 (DQN's error clipping) or the squared error u^2 / 2."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target network, applied every ``target_update_period`` updates (1.0: a hard copy)."""
    target_update_period: int = integer(1, ge=1)
    """Update the target network every this many updates (DQN's hard copy: tau=1.0 and e.g. 2000)."""
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
        raise ValueError("dqn_offline needs a dataset with discrete actions (DatasetInfo.num_actions)")
    net = MLP(config.hidden_dims, spec.num_actions)
    critic = TrainState.create(apply_fn=net.apply, params=net.init(key, jnp.zeros((1, spec.obs_dim))),
                               tx=optax.adam(config.critic_lr))
    return State(critic=critic, target_critic_params=critic.params, step=jnp.zeros((), jnp.int32))


def critic_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """TD regression of Q(s, a) on r + discount (1 - d) V'(s') (max or double-Q target)."""
    q = action_values(state.critic.apply_fn(params, batch.observations), batch.actions)
    next_target = state.critic.apply_fn(state.target_critic_params, batch.next_observations)
    next_online = state.critic.apply_fn(state.critic.params, batch.next_observations) if config.double_q else None
    target = td_target(batch.rewards, batch.terminals, batch.discounts, double_q_next_values(next_target, next_online))
    loss = td_regression_loss(q, target, config.td_loss).mean()
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: critic_loss(config, state, p, batch), has_aux=True)(state.critic.params)
    critic, step = state.critic.apply_gradients(grads=grads), state.step + 1
    target = periodic_target_update(critic.params, state.target_critic_params, config.tau, step, config.target_update_period)
    return State(critic=critic, target_critic_params=target, step=step), info


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """argmax_a Q(s, a) (deterministic) or a ~ softmax(Q(s, .)); int32 [B]."""
    return greedy_or_sampled(state.critic.apply_fn(state.critic.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return action_values(state.critic.apply_fn(state.critic.params, observations), actions)


register(Algo(
    name="dqn_offline",
    description="Offline (double) DQN on a fixed dataset: the naive discrete baseline (Mnih et al. 2015, van Hasselt et al. 2016)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    normalize_observations=True,
    discrete=True,
))
