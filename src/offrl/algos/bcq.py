"""Batch-Constrained deep Q-learning, continuous actions (Fujimoto, Meger & Precup 2019).

A conditional VAE G(s) models the behaviour policy; the policy only picks among VAE samples that a
perturbation network nudges by at most Phi (``perturbation_scale``) per action dimension:
  VAE:      L_G  = mean (D(s, z) - a)^2 + kl_weight * mean KL(N(mu, sigma^2) || N(0, I)),  z ~ q(.|s, a)
  perturb:  a~   = clip(a + Phi tanh(f_xi(s, a)), -1, 1),   a ~ G(s)  (latent clipped to [-0.5, 0.5])
  actor:    L_xi = -E_s[ Q_1(s, a~) ],  one VAE sample per state
  critic:   y = r + discount (1 - d) max_{j<=n} [ lmbda min_i Q'_i(s', a~'_j) + (1 - lmbda) max_i Q'_i(s', a~'_j) ]
            with a~'_j = perturbed by the target perturbation network, a_j ~ G(s'), j = 1..n
  act:      argmax_{j<=n} Q_1(s, a~_j)
Update order as the authors' code: VAE, critic (with the just-updated VAE), actor, then Polyak
averaging of the target critic and the target perturbation network. The n sampled actions of all
states go through each network as one flattened (B * n) batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import flax.linen as nn
import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, choice, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import ensemble_td_loss, polyak_update, td_target
from offrl.losses import vae_loss as cvae_loss
from offrl.nets import MLP, ActionVAE, Critic, vae_sample


@dataclass(frozen=True)
class Config(Checked):
    """BCQ; defaults from the authors' code release (continuous_BCQ: BCQ.py, main.py), see docs/algorithms/bcq.md."""

    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic and the target perturbation network."""
    lmbda: float = number(0.75, ge=0, le=1)
    """Weight of the min in the soft clipped double-Q target lmbda * min_i Q'_i + (1 - lmbda) * max_i Q'_i (1: plain min)."""
    perturbation_scale: float = number(0.05, ge=0)
    """Phi: the perturbation network moves each coordinate of a VAE action by at most this (unit action box)."""
    num_samples: int = integer(10, ge=1)
    """n: VAE actions sampled (and perturbed) per state for the critic target and for ``act``."""
    latent_clip: float = number(0.5, gt=0)
    """VAE samples use prior latents z ~ N(0, I) clipped to [-latent_clip, latent_clip]."""
    kl_weight: float = number(0.5, ge=0)
    """Weight of the KL term in the VAE loss (reconstruction + kl_weight * KL)."""
    actor_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the perturbation network."""
    critic_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the twin critic."""
    vae_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the VAE."""
    hidden_dims: tuple[int, ...] = sizes((400, 300))
    """Hidden layer sizes of the perturbation network and the critics."""
    vae_hidden_dims: tuple[int, ...] = sizes((750, 750))
    """Hidden layer sizes of the VAE encoder and of its decoder."""
    latent_dim: Optional[int] = integer(None, ge=1, optional=True)
    """Latent size of the VAE; None means 2 * action_dim."""
    batch_size: int = integer(100, ge=1)
    """Transitions per gradient step."""
    network_init: Literal["lecun_normal", "uniform_fan_in"] = choice("uniform_fan_in")
    """Initialisation of every Dense layer (VAE, perturbation network, critics): U(+-1/sqrt(fan_in)) for
    weights and biases as PyTorch's nn.Linear (the authors' code), or Flax's LeCun normal, whose critic
    diverged on hopper-medium-replay (docs/algorithms/bcq.md, Measured scores)."""


class Perturbation(nn.Module):
    """xi(s, a): a~ = clip(a + scale * tanh(MLP(s, a)), -1, 1), a bounded correction of the action a."""

    hidden_dims: Sequence[int]
    action_dim: int
    scale: float
    initializer: str = "lecun_normal"

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        xi = self.scale * jnp.tanh(MLP(self.hidden_dims, self.action_dim, initializer=self.initializer)(jnp.concatenate([observations, actions], axis=-1)))
        return jnp.clip(actions + xi, -1.0, 1.0)


@struct.dataclass
class State:
    vae: TrainState
    actor: TrainState
    critic: TrainState
    target_actor_params: dict
    target_critic_params: dict
    step: jax.Array
    action_dim: int = struct.field(pytree_node=False)
    """Static (not a parameter): the action size, to rebuild the VAE module for sampling."""


def vae_net(config: Config, action_dim: int) -> ActionVAE:
    return ActionVAE(config.vae_hidden_dims, action_dim, config.latent_dim or 2 * action_dim, initializer=config.network_init)


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_vae, k_actor, k_critic, k_sample = jax.random.split(key, 4)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    vae, critic_net = vae_net(config, spec.action_dim), Critic(config.hidden_dims, initializer=config.network_init)
    actor_net = Perturbation(config.hidden_dims, spec.action_dim, config.perturbation_scale, config.network_init)
    vae_state = TrainState.create(apply_fn=vae.apply, params=vae.init(k_vae, obs, acts, k_sample), tx=optax.adam(config.vae_lr))
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs, acts), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    return State(vae_state, actor, critic, actor.params, critic.params, jnp.zeros((), jnp.int32), spec.action_dim)


def perturbed_samples(config: Config, state: State, actor_params, observations: jax.Array, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """n perturbed VAE actions per state, flattened: ``(observations, actions)`` of shape (B * n, ...)."""
    sampled, _ = vae_sample(vae_net(config, state.action_dim), state.vae.params, observations, key, n, config.latent_clip)
    flat_obs = jnp.repeat(observations, n, axis=0)
    return flat_obs, state.actor.apply_fn(actor_params, flat_obs, sampled.reshape(-1, state.action_dim))


def vae_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Reconstruction + kl_weight * KL of the dataset actions (``offrl.losses.vae_loss``)."""
    recon, mean, log_std = state.vae.apply_fn(params, batch.observations, batch.actions, key)
    return cvae_loss(recon, batch.actions, mean, log_std, config.kl_weight)


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Twin-critic TD error against the soft clipped double-Q target maximised over n perturbed VAE actions."""
    n, batch_size = config.num_samples, batch.observations.shape[0]
    flat_obs, flat_actions = perturbed_samples(config, state, state.target_actor_params, batch.next_observations, key, n)
    next_qs = state.critic.apply_fn(state.target_critic_params, flat_obs, flat_actions)
    soft = config.lmbda * next_qs.min(axis=0) + (1.0 - config.lmbda) * next_qs.max(axis=0)
    next_v = soft.reshape(batch_size, n).max(axis=1)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_v))
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """-mean Q_1(s, a + xi(s, a)) with one VAE action a per state (deterministic policy gradient)."""
    flat_obs, actions = perturbed_samples(config, state, params, batch.observations, key, 1)
    loss = -state.critic.apply_fn(state.critic.params, flat_obs, actions)[0].mean()
    return loss, {"actor_loss": loss}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    vae_key, critic_key, actor_key = jax.random.split(key, 3)
    grads, v_info = jax.grad(lambda p: vae_loss(config, state, p, batch, vae_key), has_aux=True)(state.vae.params)
    state = state.replace(vae=state.vae.apply_gradients(grads=grads))
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    state = state.replace(
        target_actor_params=polyak_update(state.actor.params, state.target_actor_params, config.tau),
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**v_info, **c_info, **a_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """argmax_j Q_1(s, a~_j) over n perturbed VAE samples; ``deterministic`` fixes the sampling key,
    so the same state always gets the same action."""
    if deterministic:
        key = jax.random.PRNGKey(0)
    n, batch_size = config.num_samples, observations.shape[0]
    flat_obs, actions = perturbed_samples(config, state, state.actor.params, observations, key, n)
    q1 = state.critic.apply_fn(state.critic.params, flat_obs, actions)[0].reshape(batch_size, n)
    actions = actions.reshape(batch_size, n, -1)
    return jnp.take_along_axis(actions, jnp.argmax(q1, axis=1)[:, None, None], axis=1)[:, 0]


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="bcq",
    description="BCQ: Q-learning over VAE samples of the data's actions, perturbed by at most Phi (Fujimoto et al. 2019)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))
