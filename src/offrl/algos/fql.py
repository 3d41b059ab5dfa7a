"""Flow Q-Learning (Park, Li & Levine 2025).

A flow-matching behaviour policy v_theta(s, x_t, t) and a one-step policy mu_w(s, z) distilled from it
and trained against Q; acting needs one network call (no sampling chain):
  critic:  L_Q  = sum_i E_D[ (r + discount (1 - d) Q'(s', clip(mu_w(s', z'))) - Q_i(s, a))^2 ],  Q' = agg_i Q'_i
  flow:    L_BC = E[ || v_theta(s, x_t, t) - (a - x_0) ||^2 ],  x_t = (1 - t) x_0 + t a,  x_0 ~ N(0, I)
  one-step: L_mu = alpha E_z[ || mu_w(s, z) - Euler_theta(s, z) ||^2 ] - E_z[ Q(s, clip(mu_w(s, z))) ]
with Euler_theta(s, z) the flow's action from noise z after ``flow_steps`` Euler steps (no gradient) and
Q = mean_i Q_i (``q_agg`` sets only the target's aggregation, as in the authors' code). As the authors'
code, all three losses are computed from the parameters before the update, then the target critic moves by
Polyak averaging.
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
from offrl.generative import euler_sample, flow_inputs, velocity_loss
from offrl.losses import ensemble_td_loss, polyak_update, td_target
from offrl.nets import MLP, Critic, Denoiser


@dataclass(frozen=True)
class Config(Checked):
    """FQL; defaults are the authors' (Park et al. 2025 and their ``agents/fql.py``) except the flow network's
    shape (offrl's shared denoiser: residual blocks, sinusoidal time embedding)."""

    alpha: float = number(10.0, ge=0)
    """Weight of the distillation loss (the paper tunes it per task; 10 is the code's default)."""
    flow_steps: int = integer(10, ge=1)
    """Euler steps of the flow policy when it makes the distillation targets."""
    q_agg: Literal["mean", "min"] = choice("mean")
    """How the two target critics combine in the TD target (the authors: mean; min on adroit and the large mazes).
    The policy's Q term always averages the two, as in the authors' code."""
    normalize_q_loss: bool = flag(False)
    """Divide the Q term by mean |Q| of the batch (held constant), as the authors' option."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    lr: float = number(3e-4, gt=0)
    """Adam learning rate of every network."""
    flow_hidden_dims: tuple[int, ...] = sizes((512, 512))
    """Residual blocks of the flow network (two 512-wide blocks = four 512-wide Dense layers, the paper's 4 x 512 MLP)."""
    actor_hidden_dims: tuple[int, ...] = sizes((512, 512, 512, 512))
    """Hidden layers of the one-step policy mu_w(s, z)."""
    critic_hidden_dims: tuple[int, ...] = sizes((512, 512, 512, 512))
    """Hidden layers of each critic (with LayerNorm, as the paper)."""
    actor_layer_norm: bool = flag(False)
    """LayerNorm in the flow network's residual blocks and the one-step policy (the paper: off)."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    flow: TrainState
    actor: TrainState
    critic: TrainState
    target_critic_params: dict
    step: jax.Array
    action_dim: int = struct.field(pytree_node=False, default=1)  # the noise's width at act time


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_flow, k_actor, k_critic = jax.random.split(key, 3)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    flow_net = Denoiser(config.flow_hidden_dims, spec.action_dim, layer_norm=config.actor_layer_norm)
    actor_net = MLP(config.actor_hidden_dims, spec.action_dim, layer_norm=config.actor_layer_norm)
    critic_net = Critic(config.critic_hidden_dims, layer_norm=True)
    flow = TrainState.create(apply_fn=flow_net.apply, params=flow_net.init(k_flow, acts, jnp.zeros((1,)), obs), tx=optax.adam(config.lr))
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, jnp.concatenate([obs, acts], -1)),
                              tx=optax.adam(config.lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.lr))
    return State(flow, actor, critic, critic.params, jnp.zeros((), jnp.int32), spec.action_dim)


def one_step_action(state: State, params, observations: jax.Array, noise: jax.Array) -> jax.Array:
    """mu_w(s, z), unclipped."""
    return state.actor.apply_fn(params, jnp.concatenate([observations, noise], axis=-1))


def flow_action(state: State, observations: jax.Array, noise: jax.Array, steps: int) -> jax.Array:
    """The flow policy's action from noise z: ``steps`` Euler steps of v_theta(s, ., t), clipped to the unit box."""
    field = lambda x, t: state.flow.apply_fn(state.flow.params, x, t, observations)
    return jnp.clip(euler_sample(field, noise, steps), -1.0, 1.0)


def aggregate(config: Config, q: jax.Array) -> jax.Array:
    return q.mean(axis=0) if config.q_agg == "mean" else q.min(axis=0)


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """TD regression of both Q_i(s, a) on r + discount (1 - d) agg_i Q'_i(s', clip(mu_w(s', z')))."""
    noise = jax.random.normal(key, batch.actions.shape)
    next_actions = jnp.clip(one_step_action(state, state.actor.params, batch.next_observations, noise), -1.0, 1.0)
    next_q = aggregate(config, state.critic.apply_fn(state.target_critic_params, batch.next_observations, next_actions))
    target = td_target(batch.rewards, batch.terminals, batch.discounts, next_q)
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def flow_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Flow matching of the dataset actions: || v_theta(s, x_t, t) - (a - x_0) ||^2."""
    x_t, t, velocity = flow_inputs(batch.actions, key)
    loss = velocity_loss(state.flow.apply_fn(params, x_t, t, batch.observations), velocity)
    return loss, {"flow_loss": loss}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """alpha || mu_w(s, z) - Euler_theta(s, z) ||^2 - mean_i Q_i(s, clip(mu_w(s, z)))."""
    noise = jax.random.normal(key, batch.actions.shape)
    target = jax.lax.stop_gradient(flow_action(state, batch.observations, noise, config.flow_steps))
    raw = one_step_action(state, params, batch.observations, noise)
    distill = jnp.mean((raw - target) ** 2)
    q = state.critic.apply_fn(state.critic.params, batch.observations, jnp.clip(raw, -1.0, 1.0)).mean(axis=0)
    q_loss = -q.mean()
    if config.normalize_q_loss:
        q_loss = q_loss / jax.lax.stop_gradient(jnp.abs(q).mean())
    loss = config.alpha * distill + q_loss
    return loss, {"actor_loss": loss, "distill_loss": distill, "actor_q_mean": q.mean()}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    critic_key, flow_key, actor_key = jax.random.split(key, 3)
    c_grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    f_grads, f_info = jax.grad(lambda p: flow_loss(config, state, p, batch, flow_key), has_aux=True)(state.flow.params)
    a_grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    critic = state.critic.apply_gradients(grads=c_grads)
    state = state.replace(
        critic=critic,
        flow=state.flow.apply_gradients(grads=f_grads),
        actor=state.actor.apply_gradients(grads=a_grads),
        target_critic_params=polyak_update(critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**c_info, **f_info, **a_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """clip(mu_w(s, z)), z ~ N(0, I): one network call; ``deterministic`` fixes the noise's key."""
    if deterministic:
        key = jax.random.PRNGKey(0)
    noise = jax.random.normal(key, observations.shape[:-1] + (state.action_dim,))
    return jnp.clip(one_step_action(state, state.actor.params, observations, noise), -1.0, 1.0)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return aggregate(config, state.critic.apply_fn(state.critic.params, observations, actions))


register(Algo(
    name="fql",
    description="Flow Q-Learning: flow-matching behaviour policy, one-step policy distilled from it against Q (Park et al. 2025)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))
