"""The denoiser network of the diffusion and flow policies: eps_theta(x, t | c) or v_theta(x, t | c).

  e   = MLP(sinusoidal(t))                                   time embedding, t in [0, 1]
  h_0 = Dense([x, e, c])
  h_i = h_{i-1} + Dense(mish(Dense(LayerNorm(h_{i-1}))))      one residual block per entry of hidden_dims
  out = Dense(mish(h_n))

IDQL's LN-ResNet denoiser (Hansen-Estruch et al. 2023) with the block's inner width equal to its outer
width; ``layer_norm=False`` leaves plain residual MLP blocks.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def mish(x: jax.Array) -> jax.Array:
    """x tanh(softplus(x)) (Misra 2019), the activation of the Diffusion-QL and IDQL denoisers."""
    return x * jnp.tanh(jax.nn.softplus(x))


def sinusoidal_embedding(t: jax.Array, dim: int, max_frequency: float = 1000.0) -> jax.Array:
    """[sin(f_i t), cos(f_i t)] with dim/2 frequencies f_i spaced geometrically from 1 to ``max_frequency``,
    for t in [0, 1] (a diffusion step's or a flow's time): shape t.shape + (dim,)."""
    half = dim // 2
    freqs = jnp.exp(jnp.linspace(0.0, math.log(max_frequency), half))
    angles = t[..., None].astype(jnp.float32) * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Denoiser(nn.Module):
    """A noise (or velocity) predictor of ``output_dim`` values from ``x`` [..., d], time ``t`` [...] in [0, 1]
    and an optional condition [..., c] (a state, a return); residual blocks of widths ``hidden_dims``."""

    hidden_dims: Sequence[int]
    output_dim: int
    time_dim: int = 16
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, condition: jax.Array | None = None) -> jax.Array:
        emb = sinusoidal_embedding(t, self.time_dim)
        emb = nn.Dense(self.time_dim)(mish(nn.Dense(2 * self.time_dim)(emb)))
        parts = [x, emb] + ([] if condition is None else [condition])
        h = jnp.concatenate(parts, axis=-1)
        for width in self.hidden_dims:
            if h.shape[-1] != width:
                h = nn.Dense(width)(h)
            inner = nn.LayerNorm()(h) if self.layer_norm else h
            h = h + nn.Dense(width)(mish(nn.Dense(width)(inner)))
        return nn.Dense(self.output_dim)(mish(h))


SELECTIONS = ("argmax", "softmax")
"""How a sampling policy picks one of its N candidate actions by their Q-values (:func:`choose_by_q`)."""


def choose_by_q(actions: jax.Array, q: jax.Array, key: jax.Array, selection: str, temperature: float = 1.0) -> jax.Array:
    """One action per state from candidates ``actions`` [B, N, d] with values ``q`` [B, N]: the argmax, or a draw
    from softmax(q / temperature) (Diffusion-QL's and IDQL's re-sampling of behaviour samples by Q); [B, d]."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid values: {', '.join(SELECTIONS)}")
    if selection == "argmax":
        index = jnp.argmax(q, axis=1)
    else:
        index = jax.random.categorical(key, q / temperature, axis=1)
    return jnp.take_along_axis(actions, index[:, None, None], axis=1)[:, 0]
