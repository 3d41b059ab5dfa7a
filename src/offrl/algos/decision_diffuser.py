"""Decision Diffuser (Ajay et al. 2023): return-conditioned diffusion over state sequences plus inverse dynamics.

A denoiser over windows x = (s_t, ..., s_{t+H-1}) of H consecutive states, conditioned on the normalised
discounted return y in [0, 1] from s_t, and an inverse-dynamics head that reads the action off two states:
  diffusion: L_eps = E[ || eps_theta(x_k, k | y * m, m)[1:] - eps[1:] ||^2 ],  x_k = sqrt(abar_k) x + sqrt(1 - abar_k) eps
             with the current state inpainted (x_k[0] = s_t) and m ~ Bernoulli(1 - p_drop) dropping the condition
  inverse:   L_f   = E_D[ || f_phi(s_t, s_{t+1}) - a_t ||^2 ]
  plan:      eps = eps_theta(x, k | 0, 0) + w (eps_theta(x, k | y*, 1) - eps_theta(x, k | 0, 0))  (classifier-free guidance)
             DDIM from noise with x[0] = s at every step, then a = f_phi(s, x[1])
The planner replans from the current state at every step, so acting keeps no memory. Windows are cut from
the episodes on the device (:func:`make_batch`); past an episode's end the last state repeats. Defaults are
sized for a CPU: H = 8, K = 50 diffusion steps, 10 DDIM steps, a residual MLP over the flattened window
(the paper: H = 100, K = 200, a temporal U-Net).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, ConfigError, choice, integer, number, sizes
from offrl.data.dataset import Dataset
from offrl.data.sampling import Batch, DeviceData
from offrl.generative import ddim_sample, diffusion_inputs, epsilon_loss, guided_epsilon, make_schedule
from offrl.nets import MLP, Denoiser


@dataclass(frozen=True)
class Config(Checked):
    """Decision Diffuser; the guidance, condition dropout and target return are the paper's (Ajay et al. 2023);
    horizon, diffusion steps and network are reduced so that planning every step is practical on a CPU."""

    planning_horizon: int = integer(8, ge=2)
    """States H per planned window (the paper: 100 on locomotion)."""
    diffusion_steps: int = integer(50, ge=1)
    """Diffusion steps K of training (the paper: 200)."""
    sampling_steps: int = integer(10, ge=1)
    """DDIM steps when planning (at most ``diffusion_steps``)."""
    schedule: Literal["vp", "linear", "cosine"] = choice("cosine")
    """Noise schedule (``offrl.generative.make_schedule``; the paper: cosine)."""
    guidance: float = number(1.2, ge=0)
    """Classifier-free guidance weight w (0: unconditional; 1: conditional; the paper: 1.2)."""
    condition_dropout: float = number(0.25, ge=0, lt=1)
    """Probability of dropping the return condition in training (the paper: 0.25)."""
    target_return: float = number(0.9, ge=0, le=1)
    """Normalised return y* the planner asks for (0 = the dataset's worst discounted return-to-go, 1 its best).
    The paper's 0.9 is on another scale (discounted return divided by a fixed 400); 0.9 here asks for 90% of the
    way from the data's worst to its best."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount of the returns the model is conditioned on."""
    lr: float = number(2e-4, gt=0)
    """Adam learning rate of both networks (the paper: 2e-4)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256, 256))
    """Residual LayerNorm blocks of the denoiser."""
    inverse_hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layers of the inverse-dynamics MLP f_phi(s, s')."""
    batch_size: int = integer(256, ge=1)
    """Windows (and transitions) per gradient step."""


@struct.dataclass
class State:
    diffuser: TrainState
    inverse: TrainState
    step: jax.Array
    obs_dim: int = struct.field(pytree_node=False, default=1)


def device_extras(config: Config, arrays: dict, dataset: Dataset) -> dict:
    """``condition``: the discounted return from each transition to its episode's end (transformed rewards),
    min-max normalised to [0, 1] over the dataset."""
    rewards = np.asarray(arrays["rewards"], np.float64)
    start, end = dataset.episode_start_index, dataset.episode_end_index
    powers = config.discount ** (np.arange(len(rewards)) - start).astype(np.float64)  # gamma^(t - episode start)
    running = np.cumsum(rewards * powers)
    returns = (running[end] - running + rewards * powers) / powers
    low, high = returns.min(), returns.max()
    return {"condition": ((returns - low) / max(high - low, 1e-8)).astype(np.float32)}


def make_batch(config: Config, data: DeviceData, key: jax.Array) -> Batch:
    """Uniform transitions plus ``extras["window"]`` [B, H, obs_dim] (the H states from each, the last state
    repeated past the episode's end) and ``extras["condition"]`` [B]."""
    idx = jax.random.randint(key, (config.batch_size,), 0, data.size)
    steps = jnp.minimum(idx[:, None] + jnp.arange(config.planning_horizon), data.episode_end_index[idx][:, None])
    return Batch(observations=data.observations[idx], actions=data.actions[idx], rewards=data.rewards[idx],
                 next_observations=data.next_observations[idx], terminals=data.terminals[idx],
                 discounts=jnp.full((config.batch_size,), config.discount),
                 extras={"window": data.observations[steps], "condition": data.extras["condition"][idx]})


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    if config.sampling_steps > config.diffusion_steps:
        raise ConfigError(f"decision_diffuser.Config.sampling_steps = {config.sampling_steps} exceeds diffusion_steps = "
                          f"{config.diffusion_steps}: DDIM visits a subsequence of the trained steps. Fix: set "
                          f"--algo.sampling-steps at most {config.diffusion_steps}")
    k_diffuser, k_inverse = jax.random.split(key)
    flat = jnp.zeros((1, config.planning_horizon * spec.obs_dim))
    diffuser_net = Denoiser(config.hidden_dims, config.planning_horizon * spec.obs_dim)
    inverse_net = MLP(config.inverse_hidden_dims, spec.action_dim)
    diffuser = TrainState.create(apply_fn=diffuser_net.apply, params=diffuser_net.init(k_diffuser, flat, jnp.zeros((1,)), jnp.zeros((1, 2))),
                                 tx=optax.adam(config.lr))
    inverse = TrainState.create(apply_fn=inverse_net.apply, params=inverse_net.init(k_inverse, jnp.zeros((1, 2 * spec.obs_dim))),
                                tx=optax.adam(config.lr))
    return State(diffuser, inverse, jnp.zeros((), jnp.int32), spec.obs_dim)


def diffusion_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Denoising of the windows with the first state inpainted and the return condition dropped at random."""
    noise_key, drop_key = jax.random.split(key)
    d = state.obs_dim
    x0 = batch.extras["window"].reshape(batch.observations.shape[0], -1)
    noisy, t, eps = diffusion_inputs(make_schedule(config.schedule, config.diffusion_steps), x0, noise_key)
    noisy = jnp.concatenate([x0[:, :d], noisy[:, d:]], axis=-1)
    keep = jax.random.bernoulli(drop_key, 1.0 - config.condition_dropout, t.shape).astype(jnp.float32)
    condition = jnp.stack([batch.extras["condition"] * keep, keep], axis=-1)
    loss = epsilon_loss(state.diffuser.apply_fn(params, noisy, t, condition)[:, d:], eps[:, d:])
    return loss, {"diffusion_loss": loss}


def inverse_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """Regression of the dataset action on (s, s')."""
    pred = state.inverse.apply_fn(params, jnp.concatenate([batch.observations, batch.next_observations], axis=-1))
    loss = jnp.mean((pred - batch.actions) ** 2)
    return loss, {"inverse_loss": loss}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, d_info = jax.grad(lambda p: diffusion_loss(config, state, p, batch, key), has_aux=True)(state.diffuser.params)
    state = state.replace(diffuser=state.diffuser.apply_gradients(grads=grads))
    grads, i_info = jax.grad(lambda p: inverse_loss(config, state, p, batch), has_aux=True)(state.inverse.params)
    state = state.replace(inverse=state.inverse.apply_gradients(grads=grads), step=state.step + 1)
    return state, {**d_info, **i_info}


def plan(config: Config, state: State, observations: jax.Array, key: jax.Array, target: float, guidance: float) -> jax.Array:
    """Windows [B, H, obs_dim] from the current states: guided DDIM with x[0] = s at every step."""
    b, d = observations.shape[0], state.obs_dim
    fix = lambda x: jnp.concatenate([observations, x[:, d:]], axis=-1)
    cond, uncond = jnp.broadcast_to(jnp.asarray([target, 1.0]), (b, 2)), jnp.zeros((b, 2))

    def model(x, t):
        eps = lambda c: state.diffuser.apply_fn(state.diffuser.params, x, t, c)
        return guided_epsilon(eps(uncond), eps(cond), guidance)

    x = jax.random.normal(key, (b, config.planning_horizon * d))
    schedule = make_schedule(config.schedule, config.diffusion_steps)
    return ddim_sample(model, schedule, x, config.sampling_steps, constrain=fix).reshape(b, config.planning_horizon, d)


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """a = f_phi(s, s_1) with s_1 the planned next state; ``deterministic`` fixes the planner's noise."""
    if deterministic:
        key = jax.random.PRNGKey(0)
    window = plan(config, state, observations, key, config.target_return, config.guidance)
    pred = state.inverse.apply_fn(state.inverse.params, jnp.concatenate([observations, window[:, 1]], axis=-1))
    return jnp.clip(pred, -1.0, 1.0)


register(Algo(
    name="decision_diffuser",
    description="Decision Diffuser: return-conditioned diffusion over state windows, guidance, inverse dynamics (Ajay et al. 2023)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    make_batch=make_batch,
    device_extras=device_extras,
    normalize_observations=True,
))
