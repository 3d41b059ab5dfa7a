"""Diffusion-QL (Wang, Hunt & Zhou 2023): a diffusion policy trained by denoising plus Q through its chain.

  critic: L_Q  = sum_i E_D[ (r + discount (1 - d) min_i Q'_i(s', a') - Q_i(s, a))^2 ],  a' ~ p_ema(. | s')
  actor:  L_pi = L_eps(theta) - alpha E_s[ Q_j(s, a_theta) ] / E_s[ |Q_{j'}(s, a_theta)| ]
          L_eps = E_{k, eps}[ || eps_theta(sqrt(abar_k) a + sqrt(1 - abar_k) eps, k | s) - eps ||^2 ]
          a_theta ~ p_theta(. | s): K ancestral steps (clipped to [-1, 1]), differentiated through the whole chain;
          j is one critic drawn at random each update, j' the other, and the denominator holds no gradient
  EMA:    theta_ema <- theta until ``ema_start`` updates, then every ``ema_every`` updates
          theta_ema <- ema_decay theta_ema + (1 - ema_decay) theta; the target critic moves by Polyak averaging
  act:    a_1..a_N ~ p_theta(. | s), one drawn with probability softmax(min_i Q'_i(s, a_j)) (or the argmax)
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
from offrl.losses import ensemble_td_loss, polyak_update, td_target
from offrl.nets import Critic, Denoiser, choose_by_q, q_on_action_sets


@dataclass(frozen=True)
class Config(Checked):
    """Diffusion-QL; defaults are the authors' D4RL locomotion settings (Wang et al. 2023, hyperparameter table, and their code)."""

    alpha: float = number(1.0, ge=0)
    """Weight of the normalised Q term against the denoising loss, larger is greedier (the paper's eta: 1.0 on
    every locomotion dataset)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    lr: float = number(3e-4, gt=0)
    """Adam learning rate of policy and critic (cosine-decayed over the run when ``cosine_lr``)."""
    cosine_lr: bool = flag(False)
    """Decay both learning rates to zero with a cosine schedule over the run's updates. Off: the authors'
    ``lr_decay`` steps its cosine once per 50,000 updates over 2,000 steps, so their rate ends at 0.999 x ``lr``."""
    max_grad_norm: float = number(9.0, ge=0)
    """Clip of each network's gradient norm (0: no clip). The authors set it per dataset, 1 to 9 on the locomotion
    nine; 9 is theirs for halfcheetah-medium and hopper-medium."""
    diffusion_steps: int = integer(5, ge=1)
    """Diffusion steps K of the policy (the paper: 5)."""
    schedule: Literal["vp", "linear", "cosine"] = choice("vp")
    """Noise schedule (``offrl.generative.make_schedule``)."""
    ema_decay: float = number(0.995, ge=0, lt=1)
    """Decay of the EMA policy that makes the critic's next actions."""
    ema_start: int = integer(1000, ge=0)
    """Updates before the EMA policy starts averaging (until then it copies the policy; the authors' keeps its
    initial weights)."""
    ema_every: int = integer(5, ge=1)
    """Updates between two EMA steps."""
    num_samples: int = integer(50, ge=1)
    """Policy samples N per state at act time, among which Q chooses."""
    selection: Literal["argmax", "softmax"] = choice("softmax")
    """How Q chooses among the samples: drawn from softmax(Q) as the authors' code, or the greedy one."""
    actor_hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Residual blocks of the denoiser (two blocks = four 256-wide Dense layers; the paper: a 3 x 256 Mish MLP)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256, 256))
    """Hidden layers of each critic (the paper: 3 x 256)."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    ema_params: dict
    target_critic_params: dict
    step: jax.Array
    action_dim: int = struct.field(pytree_node=False, default=1)  # the samples' width


def _optimizer(config: Config, total_steps: int):
    lr = optax.cosine_decay_schedule(config.lr, max(total_steps, 1)) if config.cosine_lr else config.lr
    adam = optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam) if config.max_grad_norm > 0 else adam


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net = Denoiser(config.actor_hidden_dims, spec.action_dim, layer_norm=False)
    critic_net = Critic(config.hidden_dims)
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, acts, jnp.zeros((1,)), obs),
                              tx=_optimizer(config, total_steps))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=_optimizer(config, total_steps))
    return State(actor, critic, actor.params, critic.params, jnp.zeros((), jnp.int32), spec.action_dim)


def sample_actions(config: Config, state: State, params, observations: jax.Array, key: jax.Array) -> jax.Array:
    """a ~ p_params(. | s) for every row of ``observations``: K ancestral steps, clipped to [-1, 1] (differentiable)."""
    noise_key, chain_key = jax.random.split(key)
    x = jax.random.normal(noise_key, observations.shape[:-1] + (state.action_dim,))
    model = lambda x, t: state.actor.apply_fn(params, x, t, observations)
    schedule = make_schedule(config.schedule, config.diffusion_steps)
    return jnp.clip(ddpm_sample(model, schedule, x, chain_key, clip=1.0), -1.0, 1.0)


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """TD regression of both Q_i(s, a) on r + discount (1 - d) min_i Q'_i(s', a'), a' from the EMA policy."""
    next_actions = sample_actions(config, state, state.ema_params, batch.next_observations, key)
    next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations, next_actions).min(axis=0)
    target = td_target(batch.rewards, batch.terminals, batch.discounts, next_q)
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Denoising loss plus alpha times the normalised Q of actions sampled through the whole chain."""
    bc_key, sample_key, member_key = jax.random.split(key, 3)
    noisy, t, eps = diffusion_inputs(make_schedule(config.schedule, config.diffusion_steps), batch.actions, bc_key)
    bc = epsilon_loss(state.actor.apply_fn(params, noisy, t, batch.observations), eps)
    actions = sample_actions(config, state, params, batch.observations, sample_key)
    q = state.critic.apply_fn(state.critic.params, batch.observations, actions)  # [2, B]
    j = jax.random.bernoulli(member_key).astype(jnp.int32)
    q_loss = -q[j].mean() / jax.lax.stop_gradient(jnp.abs(q[1 - j]).mean())
    loss = bc + config.alpha * q_loss
    return loss, {"actor_loss": loss, "bc_loss": bc, "q_loss": q_loss}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    critic_key, actor_key = jax.random.split(key)
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=grads)
    step = state.step + 1
    average = (step >= config.ema_start) & (step % config.ema_every == 0)
    ema = jax.tree.map(lambda e, p: jnp.where(step < config.ema_start, p, jnp.where(average, config.ema_decay * e + (1 - config.ema_decay) * p, e)),
                       state.ema_params, actor.params)
    state = state.replace(
        actor=actor,
        ema_params=ema,
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=step,
    )
    return state, {**c_info, **a_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """One of N policy samples chosen by min_i Q'_i; ``deterministic`` fixes the sampling key."""
    if deterministic:
        key = jax.random.PRNGKey(0)
    sample_key, choice_key = jax.random.split(key)
    b, n = observations.shape[0], config.num_samples
    actions = sample_actions(config, state, state.actor.params, jnp.repeat(observations, n, axis=0), sample_key).reshape(b, n, -1)
    q = q_on_action_sets(state.critic.apply_fn, state.target_critic_params, observations, actions).min(axis=0)
    return choose_by_q(actions, q, choice_key, config.selection)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="diffusion_ql",
    description="Diffusion-QL: diffusion policy trained by denoising plus Q through its sampling chain (Wang et al. 2023)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))
