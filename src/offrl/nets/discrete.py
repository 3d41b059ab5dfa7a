"""Networks of the discrete-action algorithms: one output per action.

A single Q-network or a policy's logits are a plain :class:`offrl.nets.MLP` with ``num_actions``
outputs; :class:`DiscreteCritic` is an ensemble of such Q-networks (IQL's twin critics).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets import MLP

__all__ = ["DiscreteCritic", "greedy_or_sampled"]


class DiscreteCritic(nn.Module):
    """An ensemble of ``num_qs`` Q-networks s -> (Q_i(s, a))_a, run as one vmapped module.

    Returns an array of shape (num_qs, ..., num_actions).
    """

    hidden_dims: Sequence[int]
    num_actions: int
    num_qs: int = 2
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_qs,
        )
        return ensemble(self.hidden_dims, self.num_actions, layer_norm=self.layer_norm)(observations)


def greedy_or_sampled(logits: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
    """argmax_a logits[a] (``deterministic``) or a ~ softmax(logits): the action of a discrete policy
    or of a Q-network (softmax of Q: CQL(H)'s mu); int32 [B]."""
    if deterministic:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
