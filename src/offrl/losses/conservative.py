"""The conservative term of CQL(H) for continuous actions (Kumar, Zhou, Tucker & Levine 2020).

CQL(H) pushes down ``log sum_a exp Q(s, a)`` and pushes up ``E_{a ~ D} Q(s, a)``. Over a continuous
action box the sum is the integral ``log \\int exp Q(s, a) da``, which the paper (App. F) estimates by
importance sampling: draw actions from proposals p_k (uniform on the box, the current policy) and
average ``exp Q(s, a_i) / p(a_i)``. Each proposal's average is an unbiased estimate of the integral,
so the mean over all M = sum_k N_k samples is too, and its logarithm is

    log \\int exp Q(s, a) da  ~=  logsumexp_i( Q(s, a_i) - log p(a_i) ) - log M.

The authors' code omits the constant ``- log M`` (same gradient; it shifts the value of the gap by
log M, see ``docs/algorithms/cql.md``).

``cql_proposals`` draws the actions of CQL(H)'s estimate (uniform, pi(.|s), pi(.|s')) and
``cql_q_and_logsumexp`` evaluates the critic on them and on the data's actions in one call: the two
pieces of the conservative term that CQL, Cal-QL and COMBO share.
"""

from __future__ import annotations

import math

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from offrl.nets import q_on_action_sets, tanh_gaussian_sample_and_log_prob


def uniform_log_density(action_dim: int) -> float:
    """log of the uniform density on the unit action box [-1, 1]^d: log(0.5^d) = -d log 2."""
    return -float(action_dim) * math.log(2.0)


def cql_logsumexp(q_values: jax.Array, log_densities: jax.Array, axis: int = -1) -> jax.Array:
    """Importance-sampled estimate of ``log \\int exp Q(s, a) da`` from sampled actions a_i ~ p.

    ``q_values`` holds Q(s, a_i) with the samples along ``axis``; ``log_densities`` holds log p(a_i)
    of the proposal each a_i came from (``uniform_log_density`` for uniform actions, the policy's
    log pi(a_i|s) for policy actions), broadcastable to ``q_values``. Returns
    ``logsumexp(q - log p, axis) - log M`` with M the number of samples: the log of the average of the
    importance weights ``exp(q_i) / p(a_i)``. Gradients flow into ``q_values`` only if the caller lets
    them; the densities should carry none (the caller stops them).
    """
    q_values, log_densities = jnp.broadcast_arrays(q_values, log_densities)
    num = q_values.shape[axis]
    return jax.scipy.special.logsumexp(q_values - log_densities, axis=axis) - math.log(num)


def calibrated_q(q_values: jax.Array, reference: jax.Array, floored: jax.Array) -> jax.Array:
    """Cal-QL's calibration (Nakamoto et al. 2023, eq. 5): ``max(Q(s, a_j), V_ref(s))`` for the sampled
    actions where ``floored`` is true (the policy's), ``Q(s, a_j)`` elsewhere (the uniform ones).

    ``q_values`` [..., B, M]; ``reference`` [B] (a Monte-Carlo return of the data's behaviour at s;
    ``-inf`` means no floor); ``floored`` [M] bool. The floor keeps the conservative term from pushing
    the policy's Q below the value of the behaviour policy, whose return the data shows.
    """
    return jnp.where(floored, jnp.maximum(q_values, reference[..., :, None]), q_values)


def cql_proposals(actor_apply: Callable, actor_params, observations: jax.Array, next_observations: jax.Array, num_samples: int,
                  key: jax.Array) -> dict:
    """The 3N proposal actions per state and their log-densities, plus the policy's actions at s'.

    One actor call on [s; s'] (2B rows) of a tanh-Gaussian policy; N reparameterised samples per
    state (no gradient reaches the actor unless the caller differentiates ``actor_params``). Returns
    ``actions`` [B, 3N, act] in the order (uniform on [-1, 1]^d, pi(.|s), pi(.|s')), their
    ``log_densities`` [B, 3N], and ``next_actions`` / ``next_log_probs`` [B, N, act] / [B, N] (the
    policy's samples at s', for a target).
    """
    b = observations.shape[0]
    k_unif, k_pi = jax.random.split(key)
    mean, log_std = actor_apply(actor_params, jnp.concatenate([observations, next_observations]))
    act_dim = mean.shape[-1]
    mean, log_std = (jnp.broadcast_to(x[:, None], (2 * b, num_samples, act_dim)) for x in (mean, log_std))
    pi_actions, pi_log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, k_pi)
    uniform = jax.random.uniform(k_unif, (b, num_samples, act_dim), minval=-1.0, maxval=1.0)
    uniform_log = jnp.full((b, num_samples), uniform_log_density(act_dim))
    return {
        "actions": jnp.concatenate([uniform, pi_actions[:b], pi_actions[b:]], axis=1),
        "log_densities": jnp.concatenate([uniform_log, pi_log_probs[:b], pi_log_probs[b:]], axis=1),
        "next_actions": pi_actions[b:],
        "next_log_probs": pi_log_probs[b:],
    }


def cql_q_and_logsumexp(critic_apply: Callable, params, observations: jax.Array, data_actions: jax.Array, proposals: dict,
                        reference: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
    """Q_i(s, a) of the data's actions [K, B] and LSE_i(s) [K, B], CQL(H)'s ``cql_logsumexp`` over the proposals.

    One flat critic call on the [B * (M + 1)] pairs (the data action first, then the M = 3N actions of
    ``proposals``, as ``cql_proposals`` returns them); the proposals' log-densities carry no gradient.
    With ``reference`` [B] (Cal-QL), the policy's proposals (all but the first M/3, the uniform ones)
    count with max(Q_i(s, a_j), reference(s)) (``calibrated_q``). The caller forms the gap LSE - Q.
    """
    actions = jnp.concatenate([data_actions[:, None], proposals["actions"]], axis=1)  # [B, M + 1, act]: data action first
    q_all = q_on_action_sets(critic_apply, params, observations, actions)  # (K, B, M + 1)
    q, q_samples = q_all[..., 0], q_all[..., 1:]
    if reference is not None:
        m = q_samples.shape[-1]
        q_samples = calibrated_q(q_samples, reference, jnp.arange(m) >= m // 3)
    return q, cql_logsumexp(q_samples, jax.lax.stop_gradient(proposals["log_densities"]))
