"""Behaviour cloning for discrete actions: a softmax policy fitted by cross-entropy.

    min_pi  E_D[ -log pi(a|s) ],    pi(.|s) = softmax(MLP(s))

The imitation baseline of the discrete-action algorithms (the counterpart of ``bc``).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import categorical_log_prob
from offrl.nets import MLP
from offrl.nets.discrete import greedy_or_sampled


@dataclass(frozen=True)
class Config(Checked):
    """Discrete behaviour cloning (cross-entropy); the defaults are offrl's shared MLP settings."""

    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of the policy MLP (its output layer has one logit per action)."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    actor: TrainState
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    if spec.num_actions is None:
        raise ValueError("bc_discrete needs a dataset with discrete actions (DatasetInfo.num_actions)")
    net = MLP(config.hidden_dims, spec.num_actions)
    params = net.init(key, jnp.zeros((1, spec.obs_dim)))
    actor = TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.actor_lr))
    return State(actor=actor, step=jnp.zeros((), jnp.int32))


def bc_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """Cross-entropy -log pi(a|s) of the dataset actions; ``accuracy``: argmax pi = a."""
    logits = state.actor.apply_fn(params, batch.observations)
    loss = -categorical_log_prob(logits, batch.actions).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == batch.actions)
    return loss, {"bc_loss": loss, "accuracy": accuracy}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: bc_loss(config, state, p, batch), has_aux=True)(state.actor.params)
    return State(actor=state.actor.apply_gradients(grads=grads), step=state.step + 1), info


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """argmax_a pi(a|s) (deterministic) or a ~ pi(.|s); int32 [B]."""
    return greedy_or_sampled(state.actor.apply_fn(state.actor.params, observations), key, deterministic)


register(Algo(
    name="bc_discrete",
    description="Behaviour cloning for discrete actions (softmax policy, cross-entropy)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    normalize_observations=True,
    discrete=True,
))
