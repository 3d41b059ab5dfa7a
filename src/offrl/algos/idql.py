"""Implicit Diffusion Q-Learning (Hansen-Estruch et al. 2023).

IQL's critic trained in-sample, and a behaviour diffusion policy trained by plain denoising; the critic
enters only at act time, re-sampling N behaviour samples by Q:
  value:   L_V   = E_D[ L_tau( min_i Q'_i(s, a) - V(s) ) ],       L_tau(u) = |tau - 1(u<0)| u^2
  critic:  L_Q   = sum_i E_D[ (r + discount (1 - d) V(s') - Q_i(s, a))^2 ]
  policy:  L_eps = E_{k, eps}[ || eps_theta(sqrt(abar_k) a + sqrt(1 - abar_k) eps, k | s) - eps ||^2 ]
  act:     a_1..a_N ~ p_theta_bar(. | s) (K ancestral steps, clipped to [-1, 1]; theta_bar the Polyak average
           of theta that the authors act with),
           a = argmax_j min_i Q'_i(s, a_j)   or   a_j drawn with probability softmax(beta Q)_j
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
from offrl.generative import ddpm_sample, diffusion_inputs, epsilon_loss, make_schedule
from offrl.losses import ensemble_td_loss, expectile_loss, polyak_update, td_target
from offrl.nets import Critic, Denoiser, ValueNet, choose_by_q, q_on_action_sets


@dataclass(frozen=True)
class Config(Checked):
    """IDQL; defaults follow the paper's locomotion setting (Hansen-Estruch et al. 2023):
    IQL's critic, an LN-ResNet denoiser with 3 blocks of 256, 5 VP diffusion steps."""

    expectile: float = number(0.7, gt=0, lt=1)
    """Expectile tau of the value loss (IQL's locomotion value)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic and the value network."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the denoiser (cosine-decayed over the run when ``cosine_actor_lr``)."""
    cosine_actor_lr: bool = flag(True)
    """Decay the denoiser's learning rate to zero with a cosine schedule over the run's updates."""
    diffusion_steps: int = integer(5, ge=1)
    """Diffusion steps K of the behaviour policy."""
    schedule: Literal["vp", "linear", "cosine"] = choice("vp")
    """Noise schedule (``offrl.generative.make_schedule``)."""
    num_samples: int = integer(32, ge=1)
    """Behaviour samples N per state at act time, among which Q chooses."""
    selection: Literal["argmax", "softmax"] = choice("argmax")
    """How Q chooses among the samples: the greedy one, or one drawn from softmax(beta Q)."""
    beta: float = number(1.0, gt=0)
    """Inverse temperature of the ``softmax`` selection."""
    actor_hidden_dims: tuple[int, ...] = sizes((256, 256, 256))
    """Residual LayerNorm blocks of the denoiser (``offrl.nets.Denoiser``)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layers of the critics and the value network."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""
    actor_ema_tau: float = number(0.001, gt=0, le=1)
    """Polyak rate of the averaged denoiser theta_bar that act samples from, once per update (the authors'
    ``actor_tau`` 0.001; 1 samples from the live denoiser)."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    value: TrainState
    target_critic_params: dict
    ema_actor_params: dict
    step: jax.Array
    action_dim: int = struct.field(pytree_node=False, default=1)  # the samples' width at act time


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net = Denoiser(config.actor_hidden_dims, spec.action_dim)
    critic_net, value_net = Critic(config.hidden_dims), ValueNet(config.hidden_dims)
    actor_lr = optax.cosine_decay_schedule(config.actor_lr, max(total_steps, 1)) if config.cosine_actor_lr else config.actor_lr
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, acts, jnp.zeros((1,)), obs),
                              tx=optax.adam(actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    value = TrainState.create(apply_fn=value_net.apply, params=value_net.init(k_value, obs), tx=optax.adam(config.critic_lr))
    return State(actor, critic, value, critic.params, actor.params, jnp.zeros((), jnp.int32), spec.action_dim)


def value_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """Expectile regression of V(s) on min_i Q'_i(s, a) over dataset actions."""
    q = state.critic.apply_fn(state.target_critic_params, batch.observations, batch.actions).min(axis=0)
    v = state.value.apply_fn(params, batch.observations)
    loss = expectile_loss(q - v, config.expectile).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def critic_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """TD regression of both Q_i(s, a) on r + discount (1 - d) V(s')."""
    next_v = state.value.apply_fn(state.value.params, batch.next_observations)
    target = td_target(batch.rewards, batch.terminals, batch.discounts, next_v)
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Denoising of the dataset actions: || eps_theta(a_k, k | s) - eps ||^2."""
    schedule = make_schedule(config.schedule, config.diffusion_steps)
    noisy, t, eps = diffusion_inputs(schedule, batch.actions, key)
    loss = epsilon_loss(state.actor.apply_fn(params, noisy, t, batch.observations), eps)
    return loss, {"actor_loss": loss}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, v_info = jax.grad(lambda p: value_loss(config, state, p, batch), has_aux=True)(state.value.params)
    state = state.replace(value=state.value.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, key), has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=grads)
    state = state.replace(actor=actor, ema_actor_params=polyak_update(actor.params, state.ema_actor_params, config.actor_ema_tau))
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch), has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    state = state.replace(
        critic=critic,
        target_critic_params=polyak_update(critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**v_info, **a_info, **c_info}


def behaviour_samples(config: Config, state: State, observations: jax.Array, key: jax.Array) -> jax.Array:
    """N samples of the averaged diffusion policy per state, [B, N, act_dim]: all states' chains in one ``lax.scan``."""
    b, n = observations.shape[0], config.num_samples
    obs = jnp.repeat(observations, n, axis=0)
    noise_key, chain_key = jax.random.split(key)
    x = jax.random.normal(noise_key, (b * n, state.action_dim))
    model = lambda x, t: state.actor.apply_fn(state.ema_actor_params, x, t, obs)
    actions = ddpm_sample(model, make_schedule(config.schedule, config.diffusion_steps), x, chain_key, clip=1.0)
    return jnp.clip(actions, -1.0, 1.0).reshape(b, n, -1)


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """One of N behaviour samples chosen by min_i Q'_i; ``deterministic`` fixes the sampling key."""
    if deterministic:
        key = jax.random.PRNGKey(0)
    sample_key, choice_key = jax.random.split(key)
    actions = behaviour_samples(config, state, observations, sample_key)
    q = q_on_action_sets(state.critic.apply_fn, state.target_critic_params, observations, actions).min(axis=0)
    return choose_by_q(actions, q, choice_key, config.selection, 1.0 / config.beta)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="idql",
    description="Implicit Diffusion Q-Learning: IQL critic, behaviour diffusion policy re-sampled by Q (Hansen-Estruch et al. 2023)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    reward_scaling="iql_locomotion",
))
