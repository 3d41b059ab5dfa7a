"""Advantage-Weighted Regression (Peng, Kumar, Zhang & Levine 2019), on a static dataset.

Two supervised steps on Monte-Carlo returns of the dataset's own episodes:
  returns: G_t = sum_{k=t}^{T} discount^(k-t) r_k + discount^(T-t+1) (1 - d_T) V(s'_T)
           (the second term only for an episode cut by a time limit; offrl.data.discounted_returns)
  value:   L_V  = E_D[ (G_t - V(s_t))^2 ]
  actor:   L_pi = -E_D[ min(exp(beta A), max_weight) log pi(a_t|s_t) ],   A = G_t - V(s_t)
The discounted reward sums, the bootstrap factors and s'_T are computed once on the host by
``device_extras`` and reach ``update`` as ``batch.extras``. This is the paper's plain Monte-Carlo
form (its TD(lambda) with lambda = 1); V(s'_T) comes from the current value network.
Update order as the paper's iteration: value, then actor with the value network just updated.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, flag, integer, number, sizes
from offrl.data import Dataset, discounted_returns
from offrl.data.sampling import Batch
from offrl.losses import advantage_weights, weighted_log_likelihood_loss
from offrl.nets import GaussianActor, ValueNet, gaussian_action

#: Names of the per-transition arrays ``device_extras`` adds (they arrive as ``batch.extras[name]``).
EXTRAS = ("mc_return", "mc_bootstrap_discount", "mc_last_next_observation")
ADV_EPS = 1e-5  # the authors' code: (A - mean) / (std + 1e-5)


@dataclass(frozen=True)
class Config(Checked):
    """AWR; weights and discount from Peng et al. (2019) as in the authors' released configs."""

    beta: float = number(1.0, ge=0)
    """Inverse temperature of the advantage weights exp(beta * A); the paper's temperature 1.0 is 1 / beta."""
    max_weight: float = number(20.0, gt=0)
    """Clip of the advantage weights (the paper's weight clip, 20)."""
    normalize_advantages: bool = flag(True)
    """Standardise A over the batch, (A - mean) / (std + 1e-5), before weighting (the authors' code, over its buffer)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma of the Monte-Carlo returns."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy (the paper: SGD with momentum 0.9, 5e-5)."""
    value_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the value network (the paper: SGD with momentum 0.9, 1e-2, on normalised targets)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor and value network (the paper: (128, 64))."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step (the paper: 256)."""


@struct.dataclass
class State:
    actor: TrainState
    value: TrainState
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_value = jax.random.split(key)
    obs = jnp.zeros((1, spec.obs_dim))
    actor_net, value_net = GaussianActor(config.hidden_dims, spec.action_dim), ValueNet(config.hidden_dims)
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    value = TrainState.create(apply_fn=value_net.apply, params=value_net.init(k_value, obs), tx=optax.adam(config.value_lr))
    return State(actor, value, jnp.zeros((), jnp.int32))


def device_extras(config: Config, arrays: dict, dataset: Dataset) -> dict:
    """The data-level pieces of G_t from the transformed (scaled) rewards, once, on the host."""
    mc = discounted_returns(arrays["rewards"], arrays["terminals"], dataset.episode_ends, config.discount)
    return {
        "mc_return": mc.returns.astype(np.float32),
        "mc_bootstrap_discount": mc.bootstrap_discounts.astype(np.float32),
        "mc_last_next_observation": np.asarray(arrays["next_observations"], np.float32)[mc.end_index],
    }


def mc_returns(state: State, batch: Batch) -> jax.Array:
    """G_t = discounted reward sum + discount^(T-t+1) (1 - d_T) V(s'_T), V from the current value network."""
    missing = [name for name in EXTRAS if name not in batch.extras]
    if missing:
        raise KeyError(f"awr: batch.extras lacks {missing}; build the device data with "
                       "to_device(arrays, dataset, algo.device_extras(config, arrays, dataset)) as offrl.fit does")
    next_v = state.value.apply_fn(state.value.params, batch.extras["mc_last_next_observation"])
    return batch.extras["mc_return"] + batch.extras["mc_bootstrap_discount"] * jax.lax.stop_gradient(next_v)


def value_loss(config: Config, state: State, params, batch: Batch, returns: jax.Array) -> tuple[jax.Array, dict]:
    """Regression of V(s) on the Monte-Carlo return G."""
    v = state.value.apply_fn(params, batch.observations)
    loss = ((returns - v) ** 2).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean(), "mc_return_mean": returns.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, returns: jax.Array) -> tuple[jax.Array, dict]:
    """-E[min(exp(beta A), max_weight) log pi(a|s)] with A = G - V(s) (standardised over the batch if asked)."""
    adv = returns - state.value.apply_fn(state.value.params, batch.observations)
    scaled = (adv - adv.mean()) / (adv.std() + ADV_EPS) if config.normalize_advantages else adv
    weights = advantage_weights(scaled, config.beta, config.max_weight)
    mean, log_std = state.actor.apply_fn(params, batch.observations)
    loss = weighted_log_likelihood_loss(weights, mean, log_std, batch.actions)
    return loss, {"actor_loss": loss, "adv_mean": adv.mean(), "adv_weight_mean": weights.mean()}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    returns = mc_returns(state, batch)
    grads, v_info = jax.grad(lambda p: value_loss(config, state, p, batch, returns), has_aux=True)(state.value.params)
    state = state.replace(value=state.value.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, returns), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads), step=state.step + 1)
    return state, {**v_info, **a_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


register(Algo(
    name="awr",
    description="Advantage-Weighted Regression: Monte-Carlo value, exp-advantage-weighted policy (Peng et al. 2019)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    normalize_observations=True,
    device_extras=device_extras,
))
