"""RvS-R (Emmons, Eysenbach, Kostrikov & Levine 2021): reinforcement learning via supervised learning,
an MLP policy conditioned on the return-to-go.

Each transition is labelled with its return-to-go R_t = sum_{k>=t} r_k (``offrl.data.sequences``,
the same convention as ``dt``), and the policy imitates the whole dataset conditioned on it:

  loss:  L = E_D ||pi(s_t, c R_t) - a_t||^2 / act_dim,   pi = MLP([s, c R])   (`action_loss`)

with c = ``return_scale``; acting clips pi to the unit box. The output layer is linear: with a tanh head
the squared error's gradient vanishes once the head saturates (measured on pendulum-mixed: the loss stuck
at E(1 - a)^2 = 1.33 with every action at the bound). At evaluation R_0 is the requested return and R_{t+1} = R_t - r_t
(each env carries its own R_t: ``act_carry``), so asking for a high return selects the actions that
led to high returns in the data. Emmons et al. condition RvS-R on the average reward-to-go over the
remaining steps; this file conditions on the return-to-go itself (the quantity ``dt`` uses), so the two
are compared on one conditioning.
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
from offrl.config import Checked, integer, number, sizes
from offrl.data.sequences import Context, Window, check_sequence_data, new_context, push, record_actions, sample_windows
from offrl.nets import MLP


@dataclass(frozen=True)
class Config(Checked):
    """RvS-R; network and optimiser from Emmons et al. 2021 (two hidden layers of 1024, Adam 1e-3)."""

    hidden_dims: tuple[int, ...] = sizes((1024, 1024))
    """Hidden layer sizes of the policy MLP (paper: 2 x 1024)."""
    learning_rate: float = number(1e-3, gt=0)
    """Adam learning rate (paper: 1e-3)."""
    dropout: float = number(0.0, ge=0, lt=1)
    """Dropout after each hidden layer (paper: 0 on the Gym tasks)."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""
    return_scale: float = number(1e-3, gt=0)
    """Factor c on the return-to-go at the policy's input (as ``dt``'s; 1/1000 suits returns in the thousands)."""
    target_return: Optional[float] = number(None, optional=True)
    """Return asked for at evaluation, in the env's reward units; None: the highest episode return in the dataset."""


@struct.dataclass
class State:
    actor: TrainState
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    net = MLP(config.hidden_dims, spec.action_dim, dropout_rate=config.dropout)
    params = net.init(key, jnp.zeros((1, spec.obs_dim + 1)))
    actor = TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.learning_rate))
    return State(actor=actor, step=jnp.zeros((), jnp.int32))


def policy(config: Config, actor: TrainState, params, observations, returns_to_go, key: jax.Array | None = None):
    """a = MLP([s, c R]) (linear output) for observations [B, obs_dim] and returns-to-go [B]."""
    x = jnp.concatenate([observations, config.return_scale * returns_to_go[:, None]], axis=-1)
    training = key is not None and config.dropout > 0
    return actor.apply_fn(params, x, training, rngs={"dropout": key} if training else None)


def action_loss(config: Config, actor: TrainState, params, window: Window, key: jax.Array) -> tuple[jax.Array, dict]:
    """Squared error of the conditioned policy's actions (one-step windows: no padding)."""
    pred = policy(config, actor, params, window.observations[:, -1], window.returns_to_go[:, -1], key)
    loss = jnp.mean((pred - window.actions[:, -1]) ** 2)
    return loss, {"action_loss": loss}


def update(config: Config, state: State, window: Window, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: action_loss(config, state.actor, p, window, key), has_aux=True)(state.actor.params)
    return State(actor=state.actor.apply_gradients(grads=grads), step=state.step + 1), info


def make_batch(config: Config, data, key: jax.Array) -> Window:
    return sample_windows(data, key, config.batch_size, 1)  # uniform transitions with their R_t


def init_carry(config: Config, spec: DataSpec, targets: jax.Array) -> Context:
    return new_context(jnp.shape(targets)[0], 1, spec.obs_dim, spec.action_dim, targets)


def act_carry(config: Config, state: State, carry: Context, observations, rewards, starts, key: jax.Array,
              deterministic: bool = True) -> tuple[jax.Array, Context]:
    """Update each env's R_t and act on it, clipped to the unit box (a deterministic policy: ``key`` is unused)."""
    carry = push(carry, observations, rewards, starts)
    actions = jnp.clip(policy(config, state.actor, state.actor.params, observations, carry.window.returns_to_go[:, -1]), -1, 1)
    return actions, record_actions(carry, actions)


def prepare_dataset(config: Config, dataset):
    check_sequence_data(dataset, 1, "rvs")
    return dataset


register(Algo(
    name="rvs",
    description="RvS-R: an MLP policy conditioned on the return-to-go (reinforcement learning via supervised learning)",
    config_cls=Config,
    init=init,
    update=update,
    act=None,
    make_batch=make_batch,
    normalize_observations=True,
    prepare_dataset=prepare_dataset,
    init_carry=init_carry,
    act_carry=act_carry,
    return_conditioned=True,
))
