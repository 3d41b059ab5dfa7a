"""Implicit Q-Learning (Kostrikov, Nair & Levine 2021).

Never queries Q on actions outside the dataset:
  value:   L_V  = E_D[ L_tau( min_i Q'_i(s, a) - V(s) ) ],      L_tau(u) = |tau - 1(u<0)| u^2
  critic:  L_Q  = E_D[ (r + discount (1 - d) V(s') - Q_i(s, a))^2 ]  for both Q_i
  actor:   L_pi = -E_D[ min(exp(beta (Q'(s, a) - V(s))), 100) log pi(a|s) ]
Update order as the reference code: value, actor, critic, then the Polyak target.
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
from offrl.losses import advantage_weights, ensemble_td_loss, expectile_loss, polyak_update, td_target, weighted_log_likelihood_loss
from offrl.nets import Critic, GaussianActor, ValueNet, gaussian_action


@dataclass(frozen=True)
class Config(Checked):
    """IQL; defaults are the paper's MuJoCo locomotion settings (Kostrikov et al. 2021, App. B)."""

    expectile: float = number(0.7, gt=0, lt=1)
    """Expectile tau of the value loss (0.5 = mean; -> 1 approaches the in-sample max)."""
    beta: float = number(3.0, ge=0)
    """Inverse temperature of the advantage weights exp(beta * A)."""
    max_weight: float = number(100.0, gt=0)
    """Clip of the advantage weights."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy (cosine-decayed over the run when ``cosine_actor_lr``)."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    value_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the value network."""
    cosine_actor_lr: bool = flag(True)
    """Decay the actor learning rate to zero with a cosine schedule over the run's updates."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor, critics and value network."""
    actor_dropout: float = number(0.0, ge=0, lt=1)
    """Dropout rate in the actor (the paper uses 0.1 on Kitchen/Adroit only)."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""
    log_std_bound: Literal["clip", "sigmoid"] = choice("sigmoid")
    """How the policy's state-independent log-std stays in [-5, 2] (``offrl.nets.GaussianActor``): ``sigmoid``
    (-5 + 7 sigmoid(theta), starting at -1.5; measured steadier here) or ``clip`` (the IQL authors' clipped free
    parameter starting at 0)."""
    network_init: Literal["lecun_normal", "uniform_fan_in"] = choice("uniform_fan_in")
    """Initialisation of every network's Dense layers (``offrl.nets.NETWORK_INITS``): ``uniform_fan_in`` (PyTorch's
    ``nn.Linear`` init, measured better here) or ``lecun_normal`` (Flax's)."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    value: TrainState
    target_critic_params: dict
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    hidden, init_name = config.hidden_dims, config.network_init
    actor_net = GaussianActor(hidden, spec.action_dim, dropout_rate=config.actor_dropout, initializer=init_name,
                              log_std_bound=config.log_std_bound)
    critic_net, value_net = Critic(hidden, initializer=init_name), ValueNet(hidden, initializer=init_name)
    actor_lr = optax.cosine_decay_schedule(config.actor_lr, max(total_steps, 1)) if config.cosine_actor_lr else config.actor_lr
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    value = TrainState.create(apply_fn=value_net.apply, params=value_net.init(k_value, obs), tx=optax.adam(config.value_lr))
    return State(actor, critic, value, critic.params, jnp.zeros((), jnp.int32))


def target_q(state: State, batch: Batch) -> jax.Array:
    """min_i Q'_i(s, a) of the target critics on dataset pairs (shared by the value and actor losses)."""
    return state.critic.apply_fn(state.target_critic_params, batch.observations, batch.actions).min(axis=0)


def value_loss(config: Config, state: State, params, batch: Batch, q: jax.Array) -> tuple[jax.Array, dict]:
    """Expectile regression of V(s) on q = min_i Q'_i(s, a) over dataset actions."""
    v = state.value.apply_fn(params, batch.observations)
    loss = expectile_loss(q - v, config.expectile).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, q: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
    """Advantage-weighted regression: -E[min(exp(beta A), max_weight) log pi(a|s)], A = q - V(s)."""
    v = state.value.apply_fn(state.value.params, batch.observations)
    weights = advantage_weights(q - v, config.beta, config.max_weight)
    mean, log_std = state.actor.apply_fn(params, batch.observations, training=True, rngs={"dropout": key})
    loss = weighted_log_likelihood_loss(weights, mean, log_std, batch.actions)
    return loss, {"actor_loss": loss, "adv_weight_mean": weights.mean(), "adv_mean": (q - v).mean()}


def critic_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """TD regression of both Q_i(s, a) on r + discount (1 - d) V(s')."""
    next_v = state.value.apply_fn(state.value.params, batch.next_observations)
    target = td_target(batch.rewards, batch.terminals, batch.discounts, next_v)
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    q = target_q(state, batch)
    grads, v_info = jax.grad(lambda p: value_loss(config, state, p, batch, q), has_aux=True)(state.value.params)
    state = state.replace(value=state.value.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, q, key), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch), has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    state = state.replace(
        critic=critic,
        target_critic_params=polyak_update(critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**v_info, **a_info, **c_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="iql",
    description="Implicit Q-Learning: expectile value, in-sample TD, advantage-weighted policy (Kostrikov et al. 2021)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    reward_scaling="iql_locomotion",
))
