"""RvS (Emmons, Eysenbach, Kostrikov & Levine 2021): reinforcement learning via supervised learning,
an MLP policy conditioned on an outcome: the return-to-go (RvS-R) or a goal (RvS-G).

The policy imitates the whole dataset conditioned on what each action led to:

  loss:  L = E_D ||pi(s_t, omega_t) - a_t||^2 / act_dim,   pi = MLP([s, omega])   (`action_loss`)

* RvS-R (``conditioning="return"``): omega_t = c R_t, the return-to-go R_t = sum_{k>=t} r_k
  (``offrl.data.sequences``, the same convention as ``dt``) times c = ``return_scale``. At evaluation R_0 is
  the requested return and R_{t+1} = R_t - r_t (each env carries its own R_t: ``act_carry``), so asking for
  a high return selects the actions that led to high returns in the data. Emmons et al. condition RvS-R on
  the average reward-to-go over the remaining steps; this file conditions on the return-to-go itself (the
  quantity ``dt`` uses), so the two are compared on one conditioning.
* RvS-G (``conditioning="goal"``): omega_t = g, the ``goal_dims`` of an observation the episode reached
  later (hindsight relabelling, `hindsight_goals`: g = s'_u[goal_dims] with u uniform in t..T, T the
  episode's last step, so every action is labelled with a state it led to). At evaluation g is ``goal``,
  or, by default, where the data's task pays: the mean of ``goal_dims`` over the next observations of
  the transitions with the dataset's highest reward (`evaluation_goal`; on the maze datasets, the
  evaluation goal's neighbourhood). The goal is kept in the agent's state (``State.goal``, written by
  every update), so a checkpoint carries it.

Acting clips pi to the unit box. The output layer is linear: with a tanh head the squared error's
gradient vanishes once the head saturates (measured on pendulum-mixed: the loss stuck at E(1 - a)^2 = 1.33
with every action at the bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, ConfigError, choice, indices, integer, number, sizes, vector
from offrl.data.dataset import DatasetError
from offrl.data.sequences import Context, check_sequence_data, new_context, push, record_actions, sample_windows
from offrl.nets import MLP


@dataclass(frozen=True)
class Config(Checked):
    """RvS; network and optimiser from Emmons et al. 2021 (two hidden layers of 1024, Adam 1e-3)."""

    hidden_dims: tuple[int, ...] = sizes((1024, 1024))
    """Hidden layer sizes of the policy MLP (paper: 2 x 1024)."""
    learning_rate: float = number(1e-3, gt=0)
    """Adam learning rate (paper: 1e-3)."""
    dropout: float = number(0.0, ge=0, lt=1)
    """Dropout after each hidden layer (paper: 0 on the Gym tasks)."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""
    conditioning: Literal["return", "goal"] = choice("return")
    """What the policy is conditioned on: "return" (RvS-R, the return-to-go) or "goal" (RvS-G, hindsight goals)."""
    return_scale: float = number(1e-3, gt=0)
    """RvS-R: factor c on the return-to-go at the policy's input (as ``dt``'s; 1/1000 suits returns in the thousands)."""
    target_return: Optional[float] = number(None, optional=True)
    """RvS-R: return asked for at evaluation, in the env's reward units; None: the highest episode return in the dataset."""
    goal_dims: tuple[int, ...] = indices((0, 1))
    """RvS-G: the observation dimensions a goal is made of (the maze datasets' x, y position)."""
    goal: Optional[tuple[float, ...]] = vector(None, optional=True)
    """RvS-G: the goal asked for at evaluation (env units, one value per ``goal_dims``); None: the mean of
    ``goal_dims`` over the next observations of the data's highest-reward transitions."""

    def __post_init__(self) -> None:
        super().__post_init__()
        validate(self)


def validate(config: Config) -> None:
    """The rule between fields (each field's own range is declared in ``Config``)."""
    if config.goal is not None and len(config.goal) != len(config.goal_dims):
        raise ConfigError(f"rvs: goal has {len(config.goal)} values but goal_dims names {len(config.goal_dims)} "
                          f"dimensions {config.goal_dims}; Fix: one goal value per goal dimension")


def condition_size(config: Config) -> int:
    """Width of omega at the policy's input: 1 (a return) or len(goal_dims)."""
    return 1 if config.conditioning == "return" else len(config.goal_dims)


@struct.dataclass
class State:
    actor: TrainState
    goal: jax.Array  # [len(goal_dims)] RvS-G's evaluation goal in the training's observation units ([0] for RvS-R)
    step: jax.Array


@struct.dataclass
class Batch:
    observations: jax.Array  # [B, obs_dim]
    actions: jax.Array  # [B, act_dim]
    conditions: jax.Array  # [B, condition_size] omega: c R_t, or the hindsight goal
    goal: jax.Array  # [len(goal_dims)] the evaluation goal ([0] for RvS-R)


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    net = MLP(config.hidden_dims, spec.action_dim, dropout_rate=config.dropout)
    params = net.init(key, jnp.zeros((1, spec.obs_dim + condition_size(config))))
    actor = TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.learning_rate))
    goal = jnp.zeros((len(config.goal_dims) if config.conditioning == "goal" else 0,), jnp.float32)
    return State(actor=actor, goal=goal, step=jnp.zeros((), jnp.int32))


def policy(config: Config, actor: TrainState, params, observations, conditions, key: jax.Array | None = None):
    """a = MLP([s, omega]) (linear output) for observations [B, obs_dim] and conditions [B, condition_size]."""
    x = jnp.concatenate([observations, conditions], axis=-1)
    training = key is not None and config.dropout > 0
    return actor.apply_fn(params, x, training, rngs={"dropout": key} if training else None)


def action_loss(config: Config, actor: TrainState, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Squared error of the conditioned policy's actions."""
    pred = policy(config, actor, params, batch.observations, batch.conditions, key)
    loss = jnp.mean((pred - batch.actions) ** 2)
    return loss, {"action_loss": loss}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: action_loss(config, state.actor, p, batch, key), has_aux=True)(state.actor.params)
    return State(actor=state.actor.apply_gradients(grads=grads), goal=batch.goal, step=state.step + 1), info


def hindsight_goals(data, key: jax.Array, batch_size: int, goal_dims: tuple[int, ...]):
    """Transitions t drawn uniformly, each with a goal reached later in its episode: (t [B], goals [B, g]),
    goals = next_observations[u, goal_dims] with u uniform in t..T (T = ``episode_end_index[t]``)."""
    k_t, k_u = jax.random.split(key)
    t = jax.random.randint(k_t, (batch_size,), 0, data.size, dtype=jnp.int32)
    end = data.episode_end_index[t]
    offset = jnp.floor(jax.random.uniform(k_u, (batch_size,)) * (end - t + 1).astype(jnp.float32)).astype(jnp.int32)
    u = jnp.minimum(t + offset, end)
    return t, data.next_observations[u][:, jnp.asarray(goal_dims)]


def make_batch(config: Config, data, key: jax.Array) -> Batch:
    if config.conditioning == "return":
        w = sample_windows(data, key, config.batch_size, 1)  # uniform transitions with their R_t
        return Batch(observations=w.observations[:, -1], actions=w.actions[:, -1],
                     conditions=config.return_scale * w.returns_to_go[:, -1:], goal=jnp.zeros((0,), jnp.float32))
    t, goals = hindsight_goals(data, key, config.batch_size, config.goal_dims)
    return Batch(observations=data.observations[t], actions=data.actions[t], conditions=goals,
                 goal=data.extras["goal"][0])


def evaluation_goal(config: Config, arrays: dict, dataset) -> np.ndarray:
    """RvS-G's evaluation goal in the training's observation units (``arrays``: the transformed dataset).

    ``config.goal`` (env units) goes through the same per-dimension affine map as the observations (read off
    the raw and transformed next observations: normalisation or none); without it, the mean of the
    transformed ``goal_dims`` over the transitions whose reward is the dataset's highest."""
    dims = list(config.goal_dims)
    out = np.asarray(arrays["next_observations"], np.float64)[:, dims]
    if config.goal is None:
        rewards = np.asarray(dataset.rewards, np.float64)
        best = rewards >= rewards.max() - 1e-6 * max(1.0, abs(rewards.max()))
        return out[best].mean(axis=0)
    raw = np.asarray(dataset.next_observations, np.float64)[:, dims]
    spread = raw.std(axis=0)
    slope = np.where(spread > 0, out.std(axis=0) / np.where(spread > 0, spread, 1.0), 1.0)
    return slope * (np.asarray(config.goal, np.float64) - raw.mean(axis=0)) + out.mean(axis=0)


def device_extras(config: Config, arrays: dict, dataset) -> dict:
    if config.conditioning == "return":
        return {}
    goal = evaluation_goal(config, arrays, dataset).astype(np.float32)
    return {"goal": np.broadcast_to(goal, (dataset.num_transitions, goal.size))}  # read at row 0 by make_batch


def init_carry(config: Config, spec: DataSpec, targets: jax.Array) -> Context:
    return new_context(jnp.shape(targets)[0], 1, spec.obs_dim, spec.action_dim, targets)


def act_carry(config: Config, state: State, carry: Context, observations, rewards, starts, key: jax.Array,
              deterministic: bool = True) -> tuple[jax.Array, Context]:
    """Update each env's R_t (RvS-R) and act on it or on the goal, clipped to the unit box (deterministic:
    ``key`` is unused)."""
    carry = push(carry, observations, rewards, starts)
    if config.conditioning == "return":
        conditions = config.return_scale * carry.window.returns_to_go[:, -1:]
    else:
        conditions = jnp.broadcast_to(state.goal, (observations.shape[0], state.goal.shape[0]))
    actions = jnp.clip(policy(config, state.actor, state.actor.params, observations, conditions), -1, 1)
    return actions, record_actions(carry, actions)


def prepare_dataset(config: Config, dataset):
    check_sequence_data(dataset, 1, "rvs")
    if config.conditioning == "goal" and max(config.goal_dims) >= dataset.obs_dim:
        raise DatasetError(f"rvs: goal_dims {config.goal_dims} name observation dimensions beyond the "
                           f"{dataset.obs_dim} of {dataset.info.name or 'the dataset'}; "
                           f"Fix: --algo.goal-dims with values in 0..{dataset.obs_dim - 1}")
    return dataset


register(Algo(
    name="rvs",
    description="RvS: an MLP policy conditioned on the return-to-go (RvS-R) or on a goal (RvS-G, hindsight goals)",
    config_cls=Config,
    init=init,
    update=update,
    act=None,
    make_batch=make_batch,
    normalize_observations=True,
    prepare_dataset=prepare_dataset,
    device_extras=device_extras,
    init_carry=init_carry,
    act_carry=act_carry,
    return_conditioned=lambda config: config.conditioning == "return",
))
