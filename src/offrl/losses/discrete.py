"""Loss pieces of the discrete-action algorithms (bc_discrete, dqn_offline, cql_discrete, iql_discrete).

Q-networks output one value per action, ``q_values[..., a] = Q(s, a)``; actions are int32 indices.
Every function is elementwise over the batch (the algorithm takes the mean) and is checked against
numpy references in ``tests/test_discrete.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from offrl.losses import polyak_update

__all__ = ["action_values", "categorical_log_prob", "discrete_cql_penalty", "double_q_next_values",
           "periodic_target_update", "td_regression_loss", "TD_LOSSES"]

#: Valid values of ``td_loss`` (the ``kind`` of :func:`td_regression_loss`).
TD_LOSSES = ("huber", "mse")


def action_values(values: jax.Array, actions: jax.Array) -> jax.Array:
    """``values[..., actions]``: Q(s, a) (or a logit) of the given int actions; [..., A], [...] -> [...].

    Leading axes of ``values`` beyond those of ``actions`` (e.g. an ensemble axis) broadcast.
    """
    idx = jnp.broadcast_to(actions.astype(jnp.int32), values.shape[:-1])[..., None]
    return jnp.take_along_axis(values, idx, axis=-1)[..., 0]


def categorical_log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """log pi(a|s) = logits[a] - logsumexp(logits) of a softmax policy; [B, A], [B] -> [B]."""
    return action_values(jax.nn.log_softmax(logits, axis=-1), actions)


def discrete_cql_penalty(q_values: jax.Array, actions: jax.Array, policy_probs: jax.Array | None = None) -> jax.Array:
    """The CQL regulariser per state (Kumar et al. 2020), [B, A], [B] -> [B].

    ``policy_probs=None``: CQL(H), eq. 4: ``logsumexp_a Q(s, a) - Q(s, a_data)``, the maximising
    distribution mu(a|s) proportional to exp Q(s, a) with an entropy regulariser, in closed form.
    ``policy_probs`` given ([B, A], rows summing to 1): eq. 2 with mu = that policy,
    ``E_{a~mu}[Q(s, a)] - Q(s, a_data)`` (the policy-evaluation objective of Theorem 3.2).
    Multiplied by ``alpha`` and added to the TD loss, its gradient in Q(s, a) is
    ``alpha (mu(a|s) - 1[a = a_data])``: down on the actions mu favours, up on the data's action.
    """
    if policy_probs is None:
        pushed_down = jax.nn.logsumexp(q_values, axis=-1)
    else:
        pushed_down = jnp.sum(policy_probs * q_values, axis=-1)
    return pushed_down - action_values(q_values, actions)


def double_q_next_values(next_target_q: jax.Array, next_online_q: jax.Array | None = None) -> jax.Array:
    """Bootstrap value V(s') from [B, A] action values of the next state -> [B].

    With ``next_online_q``: double Q-learning (van Hasselt et al. 2016), the online network picks the
    action and the target network values it, ``Q'(s', argmax_a Q(s', a))``. Without: the DQN
    target ``max_a Q'(s', a)`` (Mnih et al. 2015). No gradient flows through the result.
    """
    if next_online_q is None:
        return jax.lax.stop_gradient(jnp.max(next_target_q, axis=-1))
    best = jnp.argmax(next_online_q, axis=-1)
    return jax.lax.stop_gradient(action_values(next_target_q, best))


def td_regression_loss(predictions: jax.Array, targets: jax.Array, kind: str = "huber") -> jax.Array:
    """Elementwise TD regression loss of ``u = predictions - targets``.

    ``"mse"``: u^2 / 2 (the 1/2 of the CQL paper's objective, so its ``alpha`` keeps its scale);
    ``"huber"``: u^2 / 2 for |u| <= 1, |u| - 1/2 beyond (the DQN error clipping, Mnih et al. 2015).
    """
    if kind == "huber":
        return optax.huber_loss(predictions, targets, delta=1.0)
    if kind == "mse":
        return 0.5 * (predictions - targets) ** 2
    raise ValueError(f"td_loss must be one of {', '.join(TD_LOSSES)}; got {kind!r}")


def periodic_target_update(params, target_params, tau: float, step: jax.Array, period: int):
    """theta' <- tau theta + (1 - tau) theta' on every ``period``-th update (``step`` counts from 1), else theta'.

    ``period`` 1 is Polyak averaging every update; ``tau`` 1 with a long period is the DQN target
    network, copied every ``period`` updates (Mnih et al. 2015).
    """
    moved = polyak_update(params, target_params, tau)
    due = step % period == 0
    return jax.tree.map(lambda new, old: jnp.where(due, new, old), moved, target_params)
