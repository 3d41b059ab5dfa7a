"""Bootstrapping Error Accumulation Reduction, BEAR-QL (Kumar, Fu, Tucker & Levine 2019).

A conditional VAE G(s) models the behaviour policy; a tanh-Gaussian actor maximises a conservative
ensemble Q while a Lagrange multiplier alpha holds its MMD to the VAE's samples near a threshold eps:
  VAE:     L_G  = mean (D(s, z) - a)^2 + kl_weight * mean KL(N(mu, sigma^2) || N(0, I))
  critic:  y = r + discount (1 - d) max_{j<=n} [ lmbda min_k Q'_k(s', a'_j) + (1 - lmbda) max_k Q'_k(s', a'_j) ],
           a'_j ~ pi'(.|s') (target actor), j = 1..n;  L_Q = sum_k E[(Q_k(s, a) - y)^2]
  actor:   L_pi = E_s[ -Qc(s) + ensemble_std_coef * std_k Q_k + alpha * MMD(G(s), pi(.|s)) ],
           Qc = min_k (or mean_k) of the mean of Q_k over m policy samples; during the first
           ``warmstart_steps`` updates L_pi = E_s[ alpha * MMD ] only
  alpha:   L_alpha = -alpha * (E_s[MMD] - eps)  (dual gradient ascent on log alpha, clipped to [-5, 10]),
           or a fixed alpha when ``mmd_threshold`` is None
  act:     argmax_{j<=n} Q_1(s, a_j),  a_j ~ pi(.|s)
MMD = sqrt(MMD^2 + 1e-6) with the biased MMD^2 of ``offrl.losses.mmd_squared`` on m samples per
state, computed on the pre-tanh actions of both models, and the m samples of both models use
standard-normal noise / latents clipped to [-latent_clip, latent_clip] (all as the authors' code).
With ``clip_all_samples`` (the default) the policy samples of the critic target and of ``act`` use
the same clipped noise, so every action the agent bootstraps from or executes comes from the
distribution the MMD constraint checks. The authors' code samples those two unclipped; on the OOD
trap of tests/test_bear.py that choice (``clip_all_samples=False``) picked actions 0.37-0.68 beyond
the support in seeds 0-2 (reward -1), the default stays inside.
Update order as the authors' code: VAE, critic, actor, alpha, then Polyak averaging of the target
critic and the target actor. Sampled actions of all states go through each network as one flat
(B * n) batch; the actor's Gaussian is computed once per state and sampled n times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, ConfigError, choice, flag, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import ensemble_td_loss, mmd_squared, polyak_update, td_target
from offrl.losses import vae_loss as cvae_loss
from offrl.nets import ActionVAE, Critic, LogScalar, TanhGaussianActor, q_on_action_sets, vae_sample


@dataclass(frozen=True)
class Config(Checked):
    """BEAR-QL; defaults from the authors' code release (BEAR: algos.py, main.py, readme), see docs/algorithms/bear.md."""

    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critics and the target actor."""
    lmbda: float = number(0.75, ge=0, le=1)
    """Weight of the min in the critic target lmbda * min_k Q'_k + (1 - lmbda) * max_k Q'_k (1: plain min)."""
    num_samples: int = integer(10, ge=1)
    """n: policy actions sampled per next state for the critic target (max over them) and per state in ``act``."""
    num_mmd_samples: int = integer(5, ge=1)
    """m: samples per state from the actor and from the VAE for the MMD (and for the actor's Q term)."""
    mmd_kernel: Literal["laplacian", "gaussian"] = choice("laplacian")
    """MMD kernel: laplacian exp(-||x-y||_1 / (2 mmd_sigma)) or gaussian exp(-||x-y||_2^2 / (2 mmd_sigma))."""
    mmd_sigma: float = number(10.0, gt=0)
    """Kernel bandwidth sigma (the authors' recommendation: 10 with laplacian, 20 with gaussian)."""
    alpha: float = number(1.0, gt=0)
    """Weight of the MMD term in the actor loss (larger stays closer to the data); the initial value when trained."""
    mmd_threshold: Optional[float] = number(0.05, ge=0, optional=True)
    """eps. None: alpha stays fixed. A number: alpha is a Lagrange multiplier trained so the batch-mean MMD tracks eps."""
    alpha_lr: float = number(1e-3, gt=0)
    """Adam learning rate of log alpha (used only with ``mmd_threshold``)."""
    log_alpha_min: float = number(-5.0)
    """log alpha is clipped to [log_alpha_min, log_alpha_max] after each update."""
    log_alpha_max: float = number(10.0)
    """Upper clip of log alpha."""
    warmstart_steps: int = integer(20_000, ge=0)
    """For the first ``warmstart_steps`` updates the actor minimises alpha * MMD only (support matching before Q maximisation)."""
    num_qs: int = integer(2, ge=1)
    """K: Q functions in the critic ensemble."""
    actor_q: Literal["min", "mean"] = choice("min")
    """How the actor loss combines the ensemble: min_k Q_k or mean_k Q_k."""
    ensemble_std_coef: float = number(0.0, ge=0)
    """Weight of the ensemble standard deviation subtracted from the actor's Q (0: off, as the authors recommend)."""
    latent_clip: float = number(0.5, gt=0)
    """VAE latents, and the actor's standard-normal noise for the m MMD samples, are clipped to +-latent_clip."""
    clip_all_samples: bool = flag(True)
    """Clip the actor's noise to +-latent_clip in the critic target and ``act`` too (False: MMD samples only, as the authors' code)."""
    kl_weight: float = number(0.5, ge=0)
    """Weight of the KL term in the VAE loss (reconstruction + kl_weight * KL)."""
    actor_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the actor."""
    critic_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the critic ensemble."""
    vae_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the VAE."""
    hidden_dims: tuple[int, ...] = sizes((400, 300))
    """Hidden layer sizes of the actor and the critics."""
    vae_hidden_dims: tuple[int, ...] = sizes((750, 750))
    """Hidden layer sizes of the VAE encoder and of its decoder."""
    latent_dim: Optional[int] = integer(None, ge=1, optional=True)
    """Latent size of the VAE; None means 2 * action_dim."""
    batch_size: int = integer(100, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    vae: TrainState
    actor: TrainState
    critic: TrainState
    alpha: TrainState
    target_actor_params: dict
    target_critic_params: dict
    step: jax.Array
    action_dim: int = struct.field(pytree_node=False)
    """Static (not a parameter): the action size, to rebuild the VAE module for sampling."""


def validate(config: Config) -> None:
    """The rule between fields (each field's own range is declared in ``Config``)."""
    if config.log_alpha_min > config.log_alpha_max:
        raise ConfigError(f"bear: log_alpha_min must be <= log_alpha_max; got {config.log_alpha_min} > {config.log_alpha_max}")


def vae_net(config: Config, action_dim: int) -> ActionVAE:
    return ActionVAE(config.vae_hidden_dims, action_dim, config.latent_dim or 2 * action_dim)


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    validate(config)
    k_vae, k_actor, k_critic, k_sample = jax.random.split(key, 4)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    vae, actor_net = vae_net(config, spec.action_dim), TanhGaussianActor(config.hidden_dims, spec.action_dim)
    critic_net, alpha_net = Critic(config.hidden_dims, num_qs=config.num_qs), LogScalar(config.alpha, "log_alpha")
    vae_state = TrainState.create(apply_fn=vae.apply, params=vae.init(k_vae, obs, acts, k_sample), tx=optax.adam(config.vae_lr))
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    alpha = TrainState.create(apply_fn=alpha_net.apply, params=alpha_net.init(k_sample), tx=optax.adam(config.alpha_lr))
    return State(vae_state, actor, critic, alpha, actor.params, critic.params, jnp.zeros((), jnp.int32), spec.action_dim)


def policy_samples(state: State, actor_params, observations: jax.Array, key: jax.Array, n: int,
                   noise_clip: Optional[float] = None) -> tuple[jax.Array, jax.Array]:
    """n samples per state of the tanh-Gaussian policy from ONE actor call: ``(actions, raw)``, (B, n, action_dim).

    ``raw`` = mean + std * eps is the pre-tanh sample; eps ~ N(0, I), clipped to +-``noise_clip`` when given.
    """
    mean, log_std = state.actor.apply_fn(actor_params, observations)
    eps = jax.random.normal(key, (mean.shape[0], n, mean.shape[-1]), mean.dtype)
    if noise_clip is not None:
        eps = jnp.clip(eps, -noise_clip, noise_clip)
    raw = mean[:, None] + jnp.exp(log_std)[:, None] * eps
    return jnp.tanh(raw), raw


def vae_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Reconstruction + kl_weight * KL of the dataset actions (``offrl.losses.vae_loss``)."""
    recon, mean, log_std = state.vae.apply_fn(params, batch.observations, batch.actions, key)
    return cvae_loss(recon, batch.actions, mean, log_std, config.kl_weight)


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Ensemble TD error against lmbda * min + (1 - lmbda) * max over Q', maximised over n target-actor samples."""
    noise_clip = config.latent_clip if config.clip_all_samples else None
    next_actions, _ = policy_samples(state, state.target_actor_params, batch.next_observations, key, config.num_samples, noise_clip)
    next_qs = q_on_action_sets(state.critic.apply_fn, state.target_critic_params, batch.next_observations, next_actions)
    next_v = (config.lmbda * next_qs.min(axis=0) + (1.0 - config.lmbda) * next_qs.max(axis=0)).max(axis=1)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_v))
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """E[-Qc + ensemble_std_coef * std + alpha * MMD]; alpha * MMD only during the warm start."""
    policy_key, vae_key = jax.random.split(key)
    m = config.num_mmd_samples
    actions, raw = policy_samples(state, params, batch.observations, policy_key, m, config.latent_clip)
    _, vae_raw = vae_sample(vae_net(config, state.action_dim), state.vae.params, batch.observations, vae_key, m, config.latent_clip)
    mmd2 = mmd_squared(jax.lax.stop_gradient(vae_raw), raw, config.mmd_kernel, config.mmd_sigma)
    mmd = jnp.sqrt(jnp.maximum(mmd2, 0.0) + 1e-6)
    qs = q_on_action_sets(state.critic.apply_fn, state.critic.params, batch.observations, actions).mean(axis=2)  # (K, B): mean over the m samples
    q = qs.min(axis=0) if config.actor_q == "min" else qs.mean(axis=0)
    alpha = state.alpha.apply_fn(state.alpha.params)
    improve = -q + alpha * mmd
    if config.ensemble_std_coef:  # sqrt(var + tiny): std's gradient is 0/0 = NaN where the K heads agree exactly
        improve = improve + config.ensemble_std_coef * jnp.sqrt(qs.var(axis=0) + 1e-12)
    loss = jnp.where(state.step < config.warmstart_steps, alpha * mmd, improve).mean()
    return loss, {"actor_loss": loss, "mmd_mean": mmd.mean(), "actor_q_mean": q.mean()}


def alpha_loss(config: Config, state: State, params, mmd_mean: jax.Array) -> tuple[jax.Array, dict]:
    """-alpha * (E[MMD] - eps): its descent raises alpha while the MMD is above eps and lowers it below."""
    alpha = state.alpha.apply_fn(params)
    eps = 0.0 if config.mmd_threshold is None else config.mmd_threshold
    loss = -alpha * (jax.lax.stop_gradient(mmd_mean) - eps)
    return loss, {"alpha_loss": loss, "alpha": alpha}


def alpha_step(config: Config, state: State, mmd_mean: jax.Array) -> tuple[State, dict]:
    """One Adam step on log alpha along -grad ``alpha_loss``, then log alpha clipped to [log_alpha_min, log_alpha_max]."""
    grads, info = jax.grad(lambda p: alpha_loss(config, state, p, mmd_mean), has_aux=True)(state.alpha.params)
    if config.mmd_threshold is None:
        return state, info
    alpha = state.alpha.apply_gradients(grads=grads)
    clipped = jax.tree.map(lambda x: jnp.clip(x, config.log_alpha_min, config.log_alpha_max), alpha.params)
    return state.replace(alpha=alpha.replace(params=clipped)), info


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    vae_key, critic_key, actor_key = jax.random.split(key, 3)
    grads, v_info = jax.grad(lambda p: vae_loss(config, state, p, batch, vae_key), has_aux=True)(state.vae.params)
    state = state.replace(vae=state.vae.apply_gradients(grads=grads))
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    state, t_info = alpha_step(config, state, a_info["mmd_mean"])  # on this update's MMD estimate, as the authors' code
    state = state.replace(
        target_actor_params=polyak_update(state.actor.params, state.target_actor_params, config.tau),
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**v_info, **c_info, **a_info, **t_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """argmax_j Q_1(s, a_j) over n policy samples; ``deterministic`` fixes the sampling key, so the
    same state always gets the same action."""
    if deterministic:
        key = jax.random.PRNGKey(0)
    noise_clip = config.latent_clip if config.clip_all_samples else None
    actions, _ = policy_samples(state, state.actor.params, observations, key, config.num_samples, noise_clip)
    q1 = q_on_action_sets(state.critic.apply_fn, state.critic.params, observations, actions)[0]
    return jnp.take_along_axis(actions, jnp.argmax(q1, axis=1)[:, None, None], axis=1)[:, 0]


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="bear",
    description="BEAR-QL: ensemble actor-critic whose policy keeps its MMD to a VAE of the data under a threshold (Kumar et al. 2019)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))
