"""The conservative term of CQL(H) for continuous actions (Kumar, Zhou, Tucker & Levine 2020).

CQL(H) pushes down ``log sum_a exp Q(s, a)`` and pushes up ``E_{a ~ D} Q(s, a)``. Over a continuous
action box the sum is the integral ``log \\int exp Q(s, a) da``, which the paper (App. F) estimates by
importance sampling: draw actions from proposals p_k (uniform on the box, the current policy) and
average ``exp Q(s, a_i) / p(a_i)``. Each proposal's average is an unbiased estimate of the integral,
so the mean over all M = sum_k N_k samples is too, and its logarithm is

    log \\int exp Q(s, a) da  ~=  logsumexp_i( Q(s, a_i) - log p(a_i) ) - log M.

The authors' code omits the constant ``- log M`` (same gradient; it shifts the value of the gap by
log M, see ``docs/algorithms/cql.md``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


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
