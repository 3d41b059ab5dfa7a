"""%BC: behaviour cloning on the best trajectories only (Chen et al. 2021, "Decision Transformer", the
section "Does Decision Transformer perform behavior cloning on a subset of the data?").

Episodes are ranked by return and the best ones are kept, whole, until they hold ``top_fraction`` of
the dataset's transitions (the authors' rule: at least one episode; add the next best episode while
the total stays within max(floor(top_fraction * N), 1) transitions; stop at the first that does not
fit). Then plain BC on the kept data: min_pi E ||pi(s) - a||^2 (or the Gaussian log-likelihood),
the same loss as ``bc`` (``offrl.losses.cloning_loss``). Emmons et al. (2021) call 10 % "10%BC".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, choice, integer, number, sizes
from offrl.data import Dataset
from offrl.data.sampling import Batch
from offrl.losses import cloning_loss
from offrl.nets import cloning_action, cloning_actor


@dataclass(frozen=True)
class Config(Checked):
    """%BC; ``top_fraction`` 0.1 is the 10%BC of Chen et al. (2021) and Emmons et al. (2021); network and lr as ``bc``."""

    top_fraction: float = number(0.1, gt=0, le=1)
    """Fraction of the dataset's transitions to keep, as whole episodes in order of return (in (0, 1]; 1 = plain BC)."""
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


def top_episodes(returns: np.ndarray, lengths: np.ndarray, top_fraction: float) -> np.ndarray:
    """Boolean mask of the episodes %BC keeps.

    Episodes are ranked by return, highest first; equal returns keep their dataset order (the
    earlier episode ranks higher). The best episode is always kept; the next ones are added while
    the kept transitions stay within max(floor(top_fraction * sum(lengths)), 1), stopping at the
    first episode that does not fit.
    """
    budget = max(math.floor(top_fraction * int(np.sum(lengths))), 1)
    order = np.argsort(-np.asarray(returns, np.float64), kind="stable")
    keep = np.zeros(len(order), dtype=bool)
    total = 0
    for rank, episode in enumerate(order):
        if rank > 0 and total + lengths[episode] > budget:
            break
        keep[episode] = True
        total += lengths[episode]
    return keep


def prepare_dataset(config: Config, dataset: Dataset) -> Dataset:
    """Keep the top episodes by return (:func:`top_episodes`)."""
    return dataset.select_episodes(top_episodes(dataset.episode_returns(), dataset.episode_lengths(), config.top_fraction))


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    net = cloning_actor(config.policy, config.hidden_dims, spec.action_dim)
    params = net.init(key, jnp.zeros((1, spec.obs_dim)))
    actor = TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.actor_lr))
    return State(actor=actor, step=jnp.zeros((), jnp.int32))


def bc_loss(config: Config, actor: TrainState, params, batch: Batch) -> tuple[jax.Array, dict]:
    """Squared error (deterministic) or negative log-likelihood (Gaussian) of the kept data's actions."""
    return cloning_loss(actor.apply_fn(params, batch.observations), batch.actions, config.policy)


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: bc_loss(config, state.actor, p, batch), has_aux=True)(state.actor.params)
    return State(actor=state.actor.apply_gradients(grads=grads), step=state.step + 1), info


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return cloning_action(state.actor.apply_fn(state.actor.params, observations), config.policy, key, deterministic)


register(Algo(
    name="percent_bc",
    description="%BC: behaviour cloning on the top fraction of episodes by return (10%BC by default)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    normalize_observations=True,
    prepare_dataset=prepare_dataset,
))
