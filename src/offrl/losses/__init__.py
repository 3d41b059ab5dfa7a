"""Loss primitives shared by the algorithms.

Each function is a small pure piece of a paper's equation, tested against a numpy reference in
``tests/test_losses.py``. Algorithms combine them; they never import each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from offrl.nets import gaussian_log_prob


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


def ensemble_td_loss(q_values: jax.Array, targets: jax.Array) -> jax.Array:
    """sum_i E_B[(Q_i(s, a) - y)^2]: each member of a critic ensemble (axis 0 of ``q_values``, [K, B])
    regressed on the same target ``targets`` [B]."""
    return ((q_values - targets) ** 2).mean(axis=1).sum()


def gradient_diversity(action_grads: jax.Array, eps: float = 1e-10) -> jax.Array:
    """EDAC's ensemble-gradient diversity penalty (An et al. 2021, eq. 6, in the authors' form):

        E_B[ 1/(K-1) sum_{i != j} <g_i, g_j> / (||g_i|| ||g_j||) ],   g_i = grad_a Q_i(s, a)

    the cosine similarities of every ordered pair of members' action gradients (``action_grads``
    [K, B, act_dim], e.g. from ``offrl.nets.ensemble_action_gradients``), summed, divided by K - 1 and
    averaged over the batch. Each norm gets ``eps`` added, as in the authors' code. K when all
    gradients point the same way, at least -K/(K-1) (sum_{i != j} <u_i, u_j> = ||sum_i u_i||^2 - K); a
    minimiser turns the members' gradients apart, so the ensemble disagrees off the data. Needs K >= 2.
    """
    unit = action_grads / (jnp.linalg.norm(action_grads, axis=-1, keepdims=True) + eps)
    cosine = jnp.einsum("ibd,jbd->bij", unit, unit)  # [B, K, K]
    off_diagonal = cosine.sum(axis=(1, 2)) - jnp.trace(cosine, axis1=1, axis2=2)
    return off_diagonal.mean() / (action_grads.shape[0] - 1)


def weighted_log_likelihood_loss(weights: jax.Array, mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> jax.Array:
    """-E_B[w log N(a; mean, exp(log_std)^2)]: the weighted maximum likelihood of the advantage-weighted
    family (AWR, AWAC, CRR, IQL's extraction), with ``weights`` [B] held constant by the caller."""
    return -(weights * gaussian_log_prob(mean, log_std, actions)).mean()


def temperature_loss(temperature: jax.Array, entropy: jax.Array, target_entropy: float) -> jax.Array:
    """temperature * (entropy - target_entropy), SAC's temperature objective (Haarnoja et al. 2018, eq. 18).

    ``entropy`` is -mean log pi of fresh policy samples and carries no gradient: the gradient lowers the
    temperature while the policy is more random than the target and raises it while it is less random.
    """
    return temperature * (jax.lax.stop_gradient(entropy) - target_entropy)


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


# Soft actor-critic pieces: the soft target value, the actor loss, the entropy target (SAC and its family).
from offrl.losses.sac import entropy_target, sac_actor_loss, soft_next_value  # noqa: E402,F401


# CQL(H)'s importance-sampled log-sum-exp over a continuous action box (CQL, later Cal-QL).
from offrl.losses.conservative import (  # noqa: E402,F401
    calibrated_q, cql_logsumexp, cql_proposals, cql_q_and_logsumexp, uniform_log_density,
)


# Discrete-action pieces (action-indexed Q-values, CQL(H) penalty, double-Q targets, TD losses).
from offrl.losses.discrete import (  # noqa: E402,F401
    action_values, categorical_log_prob, discrete_cql_penalty, double_q_next_values, periodic_target_update,
    td_regression_loss,
)
