"""Behaviour cloning: supervised learning of pi(a|s) on the dataset's actions.

Deterministic: min_pi E_D ||pi(s) - a||^2.   Gaussian: max_pi E_D log pi(a|s).
The imitation baseline every offline RL method is compared with.
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
from offrl.config import Checked, choice, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import cloning_loss
from offrl.nets import cloning_action, cloning_actor


@dataclass(frozen=True)
class Config(Checked):
    """Behaviour cloning."""

    policy: Literal["deterministic", "gaussian"] = choice("deterministic")
    """Policy class: tanh-MLP fitted by squared error, or a Gaussian fitted by log-likelihood."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of the policy MLP."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    actor: TrainState
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    net = cloning_actor(config.policy, config.hidden_dims, spec.action_dim)
    params = net.init(key, jnp.zeros((1, spec.obs_dim)))
    actor = TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.actor_lr))
    return State(actor=actor, step=jnp.zeros((), jnp.int32))


def bc_loss(config: Config, actor: TrainState, params, batch: Batch) -> tuple[jax.Array, dict]:
    """Squared error (deterministic) or negative log-likelihood (Gaussian) of the data actions (``offrl.losses.cloning_loss``)."""
    return cloning_loss(actor.apply_fn(params, batch.observations), batch.actions, config.policy)


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: bc_loss(config, state.actor, p, batch), has_aux=True)(state.actor.params)
    return State(actor=state.actor.apply_gradients(grads=grads), step=state.step + 1), info


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return cloning_action(state.actor.apply_fn(state.actor.params, observations), config.policy, key, deterministic)


register(Algo(
    name="bc",
    description="Behaviour cloning (deterministic MSE or Gaussian log-likelihood)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    normalize_observations=True,
))
