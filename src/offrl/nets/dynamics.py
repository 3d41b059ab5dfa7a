"""The probabilistic dynamics ensemble of model-based offline RL (PETS / MBPO / MOPO lineage).

Each member i maps a normalised (s, a) to a diagonal Gaussian over the target (Delta s, r):
mean_i(s, a) and log-variance logvar_i(s, a). The members are one vmapped module (their parameters
carry a leading member axis), so an ensemble call is one batched matmul per layer. The log-variance
is kept inside learned soft bounds (Chua et al. 2018, App. A.1):

    logvar = max_logvar - softplus(max_logvar - raw);  logvar = min_logvar + softplus(logvar - min_logvar)

``max_logvar`` / ``min_logvar`` are parameters of each member, pulled towards each other by the small
regulariser ``bound_weight * (sum max_logvar - sum min_logvar)`` of the training loss.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def soft_bound_logvar(raw: jax.Array, max_logvar: jax.Array, min_logvar: jax.Array) -> jax.Array:
    """The raw log-variance softly clamped into (min_logvar, max_logvar) by two softplus steps."""
    logvar = max_logvar - jax.nn.softplus(max_logvar - raw)
    return min_logvar + jax.nn.softplus(logvar - min_logvar)


class GaussianMember(nn.Module):
    """One member: ``len(hidden_dims)`` swish layers, then (mean, soft-bounded logvar) of size ``out_dim`` each."""

    hidden_dims: Sequence[int]
    out_dim: int
    init_max_logvar: float = 0.5
    init_min_logvar: float = -10.0

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        for i, size in enumerate(self.hidden_dims):
            x = nn.swish(nn.Dense(size, name=f"layer_{i}")(x))
        out = nn.Dense(2 * self.out_dim, name=f"layer_{len(self.hidden_dims)}")(x)
        mean, raw = jnp.split(out, 2, axis=-1)
        max_logvar = self.param("max_logvar", nn.initializers.constant(self.init_max_logvar), (self.out_dim,))
        min_logvar = self.param("min_logvar", nn.initializers.constant(self.init_min_logvar), (self.out_dim,))
        return mean, soft_bound_logvar(raw, max_logvar, min_logvar)


class DynamicsEnsemble(nn.Module):
    """``num_members`` :class:`GaussianMember` run as one vmapped module: returns (mean, logvar), each [M, ..., out_dim].

    ``x`` is either shared by every member ([..., in_dim]) or one batch per member ([M, ..., in_dim],
    with ``per_member=True``: bootstrapped minibatches during training).
    """

    hidden_dims: Sequence[int]
    out_dim: int
    num_members: int = 7
    per_member: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        ensemble = nn.vmap(GaussianMember, variable_axes={"params": 0}, split_rngs={"params": True},
                           in_axes=0 if self.per_member else None, out_axes=0, axis_size=self.num_members)
        return ensemble(self.hidden_dims, self.out_dim, name="members")(x)


def layer_weight_decays(num_layers: int, first: float = 2.5e-5, last: float = 1e-4) -> list[float]:
    """Weight decay of each Dense layer, growing with depth (MBPO's 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4 for 5 layers)."""
    if num_layers == 5:
        return [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4]
    if num_layers == 1:
        return [last]
    return [first + (last - first) * i / (num_layers - 1) for i in range(num_layers)]
