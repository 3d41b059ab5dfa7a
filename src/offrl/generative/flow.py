"""Flow matching on the linear (rectified) path (Lipman et al. 2023; Liu et al. 2023), as FQL uses it.

  x_t = (1 - t) x_0 + t x_1,   x_0 ~ N(0, I), x_1 ~ data, t ~ U[0, 1]
  L = E || v_theta(x_t, t) - (x_1 - x_0) ||^2                                   (:func:`velocity_loss`)
  sampling: x_{t + h} = x_t + h v_theta(x_t, t),  h = 1 / steps, from t = 0     (:func:`euler_sample`)
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def flow_inputs(x1: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A training example of every row of ``x1`` [..., d]: ``(x_t, t, x_1 - x_0)``, x_0 ~ N(0, I), t ~ U[0, 1) [...]."""
    t_key, n_key = jax.random.split(key)
    t = jax.random.uniform(t_key, x1.shape[:-1])
    x0 = jax.random.normal(n_key, x1.shape, x1.dtype)
    return (1.0 - t[..., None]) * x0 + t[..., None] * x1, t, x1 - x0


def velocity_loss(predicted: jax.Array, velocity: jax.Array) -> jax.Array:
    """The flow-matching loss mean (v_theta - (x_1 - x_0))^2 over every element (as FQL averages it)."""
    return jnp.mean((predicted - velocity) ** 2)


def euler_sample(model: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, steps: int) -> jax.Array:
    """Integrate dx/dt = v(x, t) from t = 0 (``x`` = noise [..., d]) to t = 1 with ``steps`` Euler steps
    (one ``lax.scan``); the model gets t [...] broadcast over the rows."""
    h = 1.0 / steps
    t_shape = x.shape[:-1]

    def step(x, i):
        return x + h * model(x, jnp.full(t_shape, i * h, x.dtype)), None

    x, _ = jax.lax.scan(step, x, jnp.arange(steps, dtype=x.dtype))
    return x
