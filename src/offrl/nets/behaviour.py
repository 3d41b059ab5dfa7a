"""The behaviour-policy proxy pi_beta-hat(a|s): a tanh-squashed Gaussian mixture fitted by maximum likelihood.

Policy-constraint methods (e.g. BRAC, Wu, Tucker & Nachum 2019) need a density of the data's
behaviour policy to measure how far the learned policy strays from it. :class:`BehaviourPolicy`
outputs a mixture of ``num_components`` Gaussians over the pre-squash variable u, with
a = tanh(u) in the unit action box; ``num_components=1`` is the tanh-Gaussian of the SAC actor.
A distribution is the tuple ``(logits, means, log_stds)`` of shapes ``(..., K)``, ``(..., K, A)``,
``(..., K, A)``; :func:`behaviour_log_prob` evaluates log pi_beta-hat(a|s) of given actions and
:func:`behaviour_sample` draws actions. The fitting loss is ``offrl.losses.behaviour_nll_loss``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets import MLP

ACTION_EPS = 1e-6
"""Actions are clipped to [-1 + ACTION_EPS, 1 - ACTION_EPS] before atanh, so that data actions on the
bounds (and float32 samples that round to +-1) have a finite log-density."""

BehaviourDist = tuple  # (logits (..., K), means (..., K, A), log_stds (..., K, A))


class BehaviourPolicy(nn.Module):
    """pi_beta-hat(a|s) = sum_k w_k(s) [tanh # N(mu_k(s), diag(exp(log_std_k(s)))^2)].

    Returns the distribution tuple ``(logits, means, log_stds)`` (see the module docstring): mixture
    logits, and per component the pre-squash mean and log-std, clipped to
    ``[log_std_min, log_std_max]``. With ``num_components=1`` the logits are a constant 0.
    """

    hidden_dims: Sequence[int]
    action_dim: int
    num_components: int = 1
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, observations: jax.Array) -> BehaviourDist:
        k, a = self.num_components, self.action_dim
        if k < 1:
            raise ValueError(f"BehaviourPolicy: num_components must be >= 1, got {k}")
        extra = k if k > 1 else 0
        out = MLP(self.hidden_dims, extra + 2 * k * a)(observations)
        batch_shape = out.shape[:-1]
        logits = out[..., :extra] if k > 1 else jnp.zeros(batch_shape + (1,), out.dtype)
        means, log_stds = jnp.split(out[..., extra:].reshape(batch_shape + (k, 2 * a)), 2, axis=-1)
        return logits, means, jnp.clip(log_stds, self.log_std_min, self.log_std_max)


def _log_one_minus_tanh_sq(u: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), finite for large |u|."""
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, actions: jax.Array, eps: float = ACTION_EPS) -> jax.Array:
    """log-density of ``actions`` under a = tanh(u), u ~ N(mean, exp(log_std)^2), summed over the last axis.

    Change of variables: log p(a) = log N(atanh(a); mean, std^2) - sum_i log(1 - a_i^2), with the
    actions clipped to ``+-(1 - eps)`` first. Shapes broadcast; returns shape (...).
    """
    u = jnp.arctanh(jnp.clip(actions, -1.0 + eps, 1.0 - eps))
    z = (u - mean) * jnp.exp(-log_std)
    gaussian = jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)
    return gaussian - jnp.sum(_log_one_minus_tanh_sq(u), axis=-1)


def behaviour_log_prob(dist: BehaviourDist, actions: jax.Array, eps: float = ACTION_EPS) -> jax.Array:
    """log pi_beta-hat(a|s) of ``actions`` (..., A) under the mixture ``dist`` with batch shape (...).

    log p(a) = logsumexp_k [log softmax(logits)_k + log N(atanh(a); mu_k, sigma_k^2)] - sum_i log(1 - a_i^2).
    The batch shapes of ``dist`` and ``actions`` broadcast (use :func:`expand_dist` to evaluate n
    actions per state without repeating the network call).
    """
    return behaviour_log_prob_presquash(dist, jnp.arctanh(jnp.clip(actions, -1.0 + eps, 1.0 - eps)))


def behaviour_log_prob_presquash(dist: BehaviourDist, u: jax.Array) -> jax.Array:
    """:func:`behaviour_log_prob` of the actions ``tanh(u)``, given their pre-squash values ``u``.

    Exact where ``tanh(u)`` rounds to +-1 in float32 (no clip, no atanh): use it for samples whose
    ``u`` is at hand (e.g. :func:`offrl.nets.tanh_gaussian_presquash_sample`).
    """
    logits, means, log_stds = dist
    z = (u[..., None, :] - means) * jnp.exp(-log_stds)
    components = jnp.sum(-0.5 * z**2 - log_stds - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)
    mixture = jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=-1) + components, axis=-1)
    return mixture - jnp.sum(_log_one_minus_tanh_sq(u), axis=-1)


def expand_dist(dist: BehaviourDist, num_samples: int | None = None) -> BehaviourDist:
    """Insert a sample axis after the batch axes: batch shape (B,) becomes (B, 1), or (B, n) when
    ``num_samples`` is given, so the distribution of B states scores actions of shape (B, n, A)."""
    logits, means, log_stds = dist
    axis = logits.ndim - 1
    out = tuple(jnp.expand_dims(x, axis) for x in (logits, means, log_stds))
    if num_samples is None:
        return out
    return tuple(jnp.repeat(x, num_samples, axis=axis) for x in out)


def behaviour_sample(dist: BehaviourDist, key: jax.Array, num_samples: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Draw actions from ``dist``: a component k ~ softmax(logits), then a = tanh(mu_k + sigma_k eps).

    Returns ``(actions, log_probs)`` with shapes (..., A) and (...), or (..., n, A) and (..., n) with
    ``num_samples=n``. The component choice is not reparameterised; the samples carry no useful gradient.
    """
    if num_samples is not None:
        dist = expand_dist(dist, num_samples)
    logits, means, log_stds = dist
    k_comp, k_noise = jax.random.split(key)
    index = jax.random.categorical(k_comp, logits)[..., None, None]
    mean = jnp.take_along_axis(means, index, axis=-2)[..., 0, :]
    log_std = jnp.take_along_axis(log_stds, index, axis=-2)[..., 0, :]
    actions = jnp.tanh(mean + jnp.exp(log_std) * jax.random.normal(k_noise, mean.shape, mean.dtype))
    return actions, behaviour_log_prob(dist, actions)


def behaviour_mode(dist: BehaviourDist) -> jax.Array:
    """tanh of the mean of the most probable component: a deterministic action of pi_beta-hat."""
    logits, means, _ = dist
    index = jnp.argmax(logits, axis=-1)[..., None, None]
    return jnp.tanh(jnp.take_along_axis(means, index, axis=-2)[..., 0, :])
