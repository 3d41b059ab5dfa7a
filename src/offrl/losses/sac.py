"""Soft actor-critic pieces shared by the SAC family (SAC, CQL, SAC-N/EDAC, MOPO, COMBO, MOBILE).

Haarnoja et al. 2018 ("SAC: Algorithms and Applications", v2), with a tanh-squashed Gaussian policy
and an ensemble of critics whose minimum is the value:

  soft value:  V(s') = min_i Q'_i(s', a') - temperature log pi(a'|s'),   a' ~ pi(.|s')
  actor:       L_pi = E_B[ temperature log pi(a~|s) - min_i Q_i(s, a~) ],  a~ ~ pi(.|s) (reparameterised)
  temperature: its target entropy, -action_dim unless set (``temperature_loss`` is eq. 18)

The functions take the networks' apply functions and parameters (as ``offrl.nets.q_on_action_sets``
does), so each algorithm keeps its own state and update order.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax

from offrl.nets import tanh_gaussian_sample_and_log_prob


def entropy_target(target_entropy: Optional[float], action_dim: int) -> float:
    """The entropy the temperature tuning aims at: ``target_entropy``, or -action_dim when None (SAC's heuristic)."""
    return -float(action_dim) if target_entropy is None else float(target_entropy)


def soft_next_value(actor_apply: Callable, actor_params, critic_apply: Callable, target_params, next_observations: jax.Array,
                    key: jax.Array, temperature: Optional[jax.Array] = None) -> jax.Array:
    """min_i Q'_i(s', a') - temperature log pi(a'|s') [B] with a' ~ pi(.|s') (``temperature`` None: no entropy term).

    The value of the soft (clipped double-Q, or ensemble-minimum) Bellman target; the caller builds
    the target (``td_target``) and stops its gradient.
    """
    mean, log_std = actor_apply(actor_params, next_observations)
    next_actions, next_log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, key)
    next_q = critic_apply(target_params, next_observations, next_actions).min(axis=0)
    if temperature is not None:
        next_q = next_q - temperature * next_log_probs
    return next_q


def sac_actor_loss(actor_apply: Callable, actor_params, critic_apply: Callable, critic_params, observations: jax.Array,
                   temperature: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
    """E_B[temperature log pi(a~|s) - min_i Q_i(s, a~)] with reparameterised a~ ~ pi(.|s); returns ``(loss, info)``.

    The gradient reaches ``actor_params`` only (the caller passes the temperature as a value).
    ``info`` has ``actor_loss`` and ``entropy`` (-mean log pi(a~|s), the temperature loss's input).
    """
    mean, log_std = actor_apply(actor_params, observations)
    actions, log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, key)
    q = critic_apply(critic_params, observations, actions).min(axis=0)
    loss = (temperature * log_probs - q).mean()
    return loss, {"actor_loss": loss, "entropy": -log_probs.mean()}
