"""Denoising diffusion (DDPM, Ho et al. 2020; DDIM, Song et al. 2021) as pure functions.

Forward process over K steps with betas b_k (k = 0..K-1), alpha_k = 1 - b_k, abar_k = prod_{j<=k} alpha_j:
  q(x_k | x_{k-1}) = N(sqrt(alpha_k) x_{k-1}, b_k I),    q(x_k | x_0) = N(sqrt(abar_k) x_0, (1 - abar_k) I)
Training (epsilon prediction): L = E_{k, x_0, eps} || eps_theta(x_k, k) - eps ||^2   (:func:`epsilon_loss`).
Ancestral reverse step (:func:`ddpm_sample`), with x0_hat = (x_k - sqrt(1 - abar_k) eps_theta) / sqrt(abar_k):
  x_{k-1} = sqrt(abar_{k-1}) b_k / (1 - abar_k) x0_hat + sqrt(alpha_k) (1 - abar_{k-1}) / (1 - abar_k) x_k
            + sqrt(b_k (1 - abar_{k-1}) / (1 - abar_k)) z,      z ~ N(0, I), no noise at k = 0
DDIM step from k to an earlier k' (:func:`ddim_sample`; eta = 0 is deterministic):
  x_{k'} = sqrt(abar_{k'}) x0_hat + sqrt(1 - abar_{k'} - sigma^2) eps_theta + sigma z,
  sigma = eta sqrt((1 - abar_{k'}) / (1 - abar_k) (1 - abar_k / abar_{k'}))
Classifier-free guidance (Ho & Salimans 2022): eps = eps_uncond + w (eps_cond - eps_uncond)  (:func:`guided_epsilon`).
"""

from __future__ import annotations

import math
from typing import Callable

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("vp", "linear", "cosine")
"""Noise schedules of :func:`make_schedule`: ``vp`` (the variance-preserving SDE discretised to K steps,
beta(t) from 0.1 to 10, as Diffusion-QL and IDQL use for K = 5), ``linear`` (DDPM's betas 1e-4 .. 2e-2 for K = 1000, scaled by 1000 / K as in Nichol & Dhariwal 2021 so that
abar_K is at most about e^-10 for any K; clipped at 0.999) and
``cosine`` (Nichol & Dhariwal 2021, s = 0.008, betas clipped at 0.999)."""

Model = Callable[[jax.Array, jax.Array], jax.Array]
"""A noise predictor ``(x [..., d], t [...]) -> eps [..., d]`` with ``t`` the time input of :func:`diffusion_time`."""


@struct.dataclass
class DiffusionSchedule:
    """The K betas of a forward process and the products derived from them, float32 arrays of shape [K]."""

    betas: jax.Array
    alphas: jax.Array
    alpha_bars: jax.Array

    @property
    def steps(self) -> int:
        return self.betas.shape[0]


def _vp_betas(k: int) -> np.ndarray:
    t = np.arange(1, k + 1, dtype=np.float64)
    b_min, b_max = 0.1, 10.0
    alpha = np.exp(-b_min / k - 0.5 * (b_max - b_min) * (2 * t - 1) / k**2)
    return 1.0 - alpha


def _cosine_betas(k: int, s: float = 0.008) -> np.ndarray:
    x = np.linspace(0, k, k + 1, dtype=np.float64)
    abar = np.cos(((x / k) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)


def make_schedule(name: str, steps: int) -> DiffusionSchedule:
    """The schedule ``name`` (one of :data:`SCHEDULES`) over ``steps`` diffusion steps (computed in float64)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")
    if steps < 1:
        raise ValueError(f"a diffusion schedule needs at least one step, got {steps}")
    if name == "vp":
        betas = _vp_betas(steps)
    elif name == "linear":
        scale = 1000.0 / steps
        betas = np.clip(np.linspace(scale * 1e-4, scale * 2e-2, steps, dtype=np.float64), 0.0, 0.999)
    else:
        betas = _cosine_betas(steps)
    alphas = 1.0 - betas
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return DiffusionSchedule(f32(betas), f32(alphas), f32(np.cumprod(alphas)))


def diffusion_time(k: jax.Array, steps: int) -> jax.Array:
    """The network's time input of diffusion step k (0-based) of K: (k + 1) / K in (0, 1]."""
    return (jnp.asarray(k, jnp.float32) + 1.0) / steps


def diffusion_inputs(schedule: DiffusionSchedule, x0: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A training example of every row of ``x0`` [..., d]: ``(x_k, t, eps)`` with k ~ U{0..K-1} per row,
    eps ~ N(0, I) and x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps; ``t`` is k's time input [...]."""
    k_key, e_key = jax.random.split(key)
    k = jax.random.randint(k_key, x0.shape[:-1], 0, schedule.steps)
    eps = jax.random.normal(e_key, x0.shape, x0.dtype)
    abar = schedule.alpha_bars[k][..., None]
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps, diffusion_time(k, schedule.steps), eps


def epsilon_loss(predicted: jax.Array, noise: jax.Array) -> jax.Array:
    """The epsilon-prediction loss mean (eps_theta - eps)^2 over every element (the mean of DDPM's L_simple per
    dimension, as the Diffusion-QL and IDQL code average it)."""
    return jnp.mean((predicted - noise) ** 2)


def guided_epsilon(eps_uncond: jax.Array, eps_cond: jax.Array, weight: float) -> jax.Array:
    """Classifier-free guidance eps_u + w (eps_c - eps_u): w = 0 is the unconditional model, w = 1 the
    conditional one, w > 1 pushes further towards the condition."""
    return eps_uncond + weight * (eps_cond - eps_uncond)


def _x0_and_eps(x, eps, abar, clip):
    x0 = (x - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)
    if clip is not None:  # keep the predicted sample in the data's box, and the noise consistent with it
        x0 = jnp.clip(x0, -clip, clip)
        eps = (x - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
    return x0, eps


def _step_noise(key: jax.Array, steps: int, x: jax.Array) -> jax.Array:
    """z ~ N(0, I) for every step, [steps, *x.shape]; drawn row-major in the rows of x ([*x.shape[:-1], steps, d])
    so that each row's noise does not depend on how many rows there are (the ONNX exporter tabulates it)."""
    z = jax.random.normal(key, x.shape[:-1] + (steps, x.shape[-1]), x.dtype)
    return jnp.moveaxis(z, -2, 0)


def ddpm_sample(model: Model, schedule: DiffusionSchedule, x: jax.Array, key: jax.Array, clip: float | None = None,
                constrain: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
    """Ancestral sampling: K reverse steps from ``x`` = x_K ~ N(0, I) [..., d] as one ``lax.scan``.

    ``clip`` bounds the predicted x_0 at every step (Diffusion-QL clips actions to [-1, 1]); ``constrain``
    is applied to x after every step (inpainting: fix known coordinates). The noise of all steps is drawn
    from ``key`` at once, so a fixed key gives a fixed sampler.
    """
    k_total = schedule.steps
    t_shape = x.shape[:-1]
    noise = _step_noise(key, k_total, x)
    constrain = constrain or (lambda v: v)

    def step(x, inputs):
        k, z = inputs
        abar = schedule.alpha_bars[k]
        abar_prev = jnp.where(k > 0, schedule.alpha_bars[jnp.maximum(k - 1, 0)], 1.0)
        eps = model(x, jnp.full(t_shape, diffusion_time(k, k_total)))
        x0, _ = _x0_and_eps(x, eps, abar, clip)
        beta = schedule.betas[k]
        mean = (jnp.sqrt(abar_prev) * beta / (1.0 - abar)) * x0 + (jnp.sqrt(schedule.alphas[k]) * (1.0 - abar_prev) / (1.0 - abar)) * x
        std = jnp.where(k > 0, jnp.sqrt(beta * (1.0 - abar_prev) / (1.0 - abar)), 0.0)
        return constrain(mean + std * z), None

    x, _ = jax.lax.scan(step, constrain(x), (jnp.arange(k_total - 1, -1, -1), noise))
    return x


def ddim_timesteps(total: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``steps`` diffusion steps a DDIM sampler visits (evenly spaced over 0..total-1, last first) and the
    step each one jumps to (-1: the data)."""
    if not 1 <= steps <= total:
        raise ValueError(f"DDIM steps must be in [1, {total}] (the diffusion steps), got {steps}")
    ks = np.unique(np.round(np.linspace(0, total - 1, steps)).astype(np.int32))[::-1]
    return ks, np.append(ks[1:], -1).astype(np.int32)


def ddim_sample(model: Model, schedule: DiffusionSchedule, x: jax.Array, steps: int, key: jax.Array | None = None,
                eta: float = 0.0, clip: float | None = None,
                constrain: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
    """DDIM: ``steps`` reverse steps (a subsequence of the K trained ones) from x_K = ``x`` as one ``lax.scan``.

    ``eta = 0`` is deterministic (``key`` unused); ``eta = 1`` matches the ancestral variance. ``clip`` and
    ``constrain`` as in :func:`ddpm_sample`.
    """
    ks, prev = ddim_timesteps(schedule.steps, steps)
    t_shape = x.shape[:-1]
    constrain = constrain or (lambda v: v)
    if eta > 0:
        noise = _step_noise(key, len(ks), x)
    else:
        noise = jnp.zeros((len(ks),) + (1,) * x.ndim, x.dtype)

    def step(x, inputs):
        k, k_prev, z = inputs
        abar = schedule.alpha_bars[k]
        abar_prev = jnp.where(k_prev >= 0, schedule.alpha_bars[jnp.maximum(k_prev, 0)], 1.0)
        eps = model(x, jnp.full(t_shape, diffusion_time(k, schedule.steps)))
        x0, eps = _x0_and_eps(x, eps, abar, clip)
        sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
        direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma**2, 0.0))
        return constrain(jnp.sqrt(abar_prev) * x0 + direction * eps + sigma * z), None

    x, _ = jax.lax.scan(step, constrain(x), (jnp.asarray(ks), jnp.asarray(prev), noise))
    return x
