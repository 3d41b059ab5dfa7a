"""Loss primitives shared by the algorithms.

Each function is a small pure piece of a paper's equation, tested against a numpy reference in
``tests/test_losses.py``. Algorithms combine them; they never import each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """Asymmetric squared loss L_tau(u) = |tau - 1(u < 0)| u^2, elementwise (IQL eq. 5).

    ``diff`` is u = Q(s, a) - V(s); ``expectile`` is tau in (0, 1). tau = 0.5 is half the MSE;
    tau -> 1 approaches the in-sample maximum.
    """
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def td_target(rewards: jax.Array, terminals: jax.Array, discounts: jax.Array, next_values: jax.Array) -> jax.Array:
    """y = r + discount * (1 - terminal) * V(s'), with ``discounts`` the per-sample bootstrap factor."""
    return rewards + discounts * (1.0 - terminals) * next_values


def advantage_weights(advantages: jax.Array, beta: float, max_weight: float = 100.0) -> jax.Array:
    """w = min(exp(beta * A), max_weight): the clipped exponential advantage weights of AWR/IQL."""
    return jnp.minimum(jnp.exp(beta * advantages), max_weight)


def binary_filter(advantages: jax.Array) -> jax.Array:
    """w = 1[A > 0]: CRR's binary filter (Wang et al. 2020, eq. 3); keeps only better-than-policy actions."""
    return (advantages > 0).astype(advantages.dtype)


def batch_softmax_weights(advantages: jax.Array, beta: float) -> jax.Array:
    """w_i = B softmax(beta * A)_i over the batch axis 0: exp(beta A_i) / mean_j exp(beta A_j).

    The exponential advantage weights normalised to mean 1 over the batch, as the AWAC authors' code
    does (Nair et al. 2020); it never overflows and needs no clip.
    """
    return advantages.shape[0] * jax.nn.softmax(beta * advantages, axis=0)


def td3bc_actor_loss(q_values: jax.Array, policy_actions: jax.Array, data_actions: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
    """TD3+BC actor loss: -lambda * mean Q(s, pi(s)) + mean ||pi(s) - a||^2 (Fujimoto & Gu 2021, eq. 3).

    lambda = alpha / mean|Q(s, pi(s))| over the batch (``q_values``), held constant (no gradient), as the
    authors' code computes it.
    The squared error is averaged over batch and action dimensions, as the reference code does.
    Returns ``(loss, lambda)``.
    """
    lmbda = jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q_values)))
    bc = jnp.mean((policy_actions - data_actions) ** 2)
    return -lmbda * jnp.mean(q_values) + bc, lmbda


def polyak_update(params, target_params, tau: float):
    """theta' <- tau * theta + (1 - tau) * theta' (soft target update)."""
    return optax.incremental_update(params, target_params, tau)


# Behaviour-model pieces of the support-constraint family (BCQ, BEAR), each in its own module.
from offrl.losses.mmd import MMD_KERNELS, mmd_kernel_matrix, mmd_squared  # noqa: E402,F401
from offrl.losses.vae import vae_loss  # noqa: E402,F401


# Behaviour-policy pieces: pi_beta-hat's likelihood, the sampled KL of BRAC, the shared BC loss.
from offrl.losses.behaviour import behaviour_nll_loss, cloning_loss, sampled_kl  # noqa: E402,F401


# CQL(H)'s importance-sampled log-sum-exp over a continuous action box (CQL, later Cal-QL).
from offrl.losses.conservative import calibrated_q, cql_logsumexp, uniform_log_density  # noqa: E402,F401


# Discrete-action pieces (action-indexed Q-values, CQL(H) penalty, double-Q targets, TD losses).
from offrl.losses.discrete import (  # noqa: E402,F401
    action_values, categorical_log_prob, discrete_cql_penalty, double_q_next_values, td_regression_loss,
)
