"""TD3+BC (Fujimoto & Gu 2021): TD3 whose actor loss adds a behaviour-cloning term.

  critic:  y = r + discount (1 - d) min_i Q'_i(s', clip(pi'(s') + clip(eps, -c, c), -1, 1))
  actor:   pi = argmax_pi E_D[ lambda Q_1(s, pi(s)) - (pi(s) - a)^2 ],  lambda = alpha / mean|Q|
States are normalised with the dataset's mean and std (the paper's preprocessing).
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
from offrl.losses import ensemble_td_loss, polyak_update, td3bc_actor_loss, td_target
from offrl.nets import Critic, DeterministicActor


@dataclass(frozen=True)
class Config(Checked):
    """TD3+BC; defaults from Fujimoto & Gu (2021), Table 3."""

    alpha: float = number(2.5, ge=0)
    """Weight of the Q term relative to BC: lambda = alpha / mean|Q(s, pi(s))|."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target networks."""
    policy_noise: float = number(0.2, ge=0)
    """Std of the target policy smoothing noise (unit action box)."""
    noise_clip: float = number(0.5, ge=0)
    """Clip of the target policy smoothing noise."""
    policy_freq: int = integer(2, ge=1)
    """Actor and target updates happen every ``policy_freq`` critic updates."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the actor."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor and critics."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_actor_params: dict
    target_critic_params: dict
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net, critic_net = DeterministicActor(config.hidden_dims, spec.action_dim), Critic(config.hidden_dims)
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    return State(actor, critic, actor.params, critic.params, jnp.zeros((), jnp.int32))


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Twin-critic TD error against the clipped double-Q target with target policy smoothing."""
    next_actions = state.actor.apply_fn(state.target_actor_params, batch.next_observations)
    noise = jnp.clip(config.policy_noise * jax.random.normal(key, next_actions.shape), -config.noise_clip, config.noise_clip)
    next_actions = jnp.clip(next_actions + noise, -1.0, 1.0)
    next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations, next_actions).min(axis=0)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_q))
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """-lambda Q_1(s, pi(s)) + (pi(s) - a)^2."""
    actions = state.actor.apply_fn(params, batch.observations)
    q1 = state.critic.apply_fn(state.critic.params, batch.observations, actions)[0]
    loss, lmbda = td3bc_actor_loss(q1, actions, batch.actions, config.alpha)
    return loss, {"actor_loss": loss, "lambda": lmbda, "action_mse": jnp.mean((actions - batch.actions) ** 2)}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: critic_loss(config, state, p, batch, key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads), step=state.step + 1)

    def actor_step(state: State) -> tuple[State, dict]:
        grads, actor_info = jax.grad(lambda p: actor_loss(config, state, p, batch), has_aux=True)(state.actor.params)
        actor = state.actor.apply_gradients(grads=grads)
        return state.replace(
            actor=actor,
            target_actor_params=polyak_update(actor.params, state.target_actor_params, config.tau),
            target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        ), actor_info

    def skip(state: State) -> tuple[State, dict]:  # delayed policy update: no actor step; NaN metrics are skipped in averages
        return state, {"actor_loss": jnp.nan, "lambda": jnp.nan, "action_mse": jnp.nan}

    state, actor_info = jax.lax.cond(state.step % config.policy_freq == 0, actor_step, skip, state)
    return state, {**info, **actor_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="td3bc",
    description="TD3+BC: TD3 with a behaviour-cloning term in the actor loss (Fujimoto & Gu 2021)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    normalize_observations=True,
))
