"""Loss pieces around the behaviour-policy proxy pi_beta-hat (``offrl.nets.BehaviourPolicy``).

- :func:`behaviour_nll_loss`: maximum likelihood of the dataset's actions, -E_D[log pi_beta-hat(a|s)].
- :func:`cloning_loss`: the behaviour-cloning loss of ``bc`` and ``percent_bc`` (squared error of a
  deterministic policy, or Gaussian negative log-likelihood).
- :func:`sampled_kl`: the sample estimate of D_KL(pi(.|s) || pi_beta-hat(.|s)) of BRAC
  (Wu, Tucker & Nachum 2019, Sec. 3 and their "primal" KL estimate), for a tanh-Gaussian pi.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from offrl.nets import gaussian_log_prob, tanh_gaussian_presquash_sample
from offrl.nets.behaviour import BehaviourDist, behaviour_log_prob, behaviour_log_prob_presquash, behaviour_mode, expand_dist


def behaviour_nll_loss(apply_fn: Callable, params, observations: jax.Array, actions: jax.Array) -> tuple[jax.Array, dict]:
    """-mean_D log pi_beta-hat(a|s) of the data actions (unit box, clipped to +-(1 - 1e-6) before atanh).

    ``apply_fn(params, observations)`` returns a ``BehaviourPolicy`` distribution. Returns
    ``(loss, {"behaviour_loss", "behaviour_mse"})``; ``behaviour_mse`` is the squared error of the
    mode (tanh of the most probable component's mean) against the data actions, a readable fit check.
    """
    dist = apply_fn(params, observations)
    loss = -behaviour_log_prob(dist, actions).mean()
    mse = jnp.mean((behaviour_mode(dist) - actions) ** 2)
    return loss, {"behaviour_loss": loss, "behaviour_mse": mse}


def cloning_loss(outputs, actions: jax.Array, policy: str) -> tuple[jax.Array, dict]:
    """Behaviour cloning of the data ``actions`` from the policy network's ``outputs``.

    ``policy="deterministic"``: ``outputs`` are actions, loss = mean ||pi(s) - a||^2 (over batch and
    action dimensions). ``policy="gaussian"``: ``outputs`` are ``(mean, log_std)`` of a
    ``GaussianActor``, loss = -mean log N(a; mean, std^2). Returns ``(loss, {"bc_loss", "action_mse"})``.
    """
    if policy == "gaussian":
        mean, log_std = outputs
        loss = -gaussian_log_prob(mean, log_std, actions).mean()
        return loss, {"bc_loss": loss, "action_mse": jnp.mean((mean - actions) ** 2)}
    if policy != "deterministic":
        raise ValueError(f"cloning_loss: policy must be 'deterministic' or 'gaussian', got {policy!r}")
    loss = jnp.mean((outputs - actions) ** 2)
    return loss, {"bc_loss": loss, "action_mse": loss}


def sampled_kl(key: jax.Array, mean: jax.Array, log_std: jax.Array, behaviour_dist: BehaviourDist,
               num_samples: int) -> jax.Array:
    """D_KL(pi || pi_beta-hat)(s) ~= (1/n) sum_j [log pi(a_j|s) - log pi_beta-hat(a_j|s)],  a_j ~ pi(.|s).

    ``pi`` is the tanh-Gaussian with pre-squash ``mean`` and ``log_std`` of shape (B, A);
    ``behaviour_dist`` is pi_beta-hat at the same B states. The n = ``num_samples`` actions per state
    are reparameterised (gradients reach ``mean`` and ``log_std``; pass a stop-gradient
    ``behaviour_dist`` to keep pi_beta-hat fixed) and scored by broadcasting, without another
    network call. Unbiased; its standard error is std(log-ratio) / sqrt(n). Returns shape (B,).
    """
    mean_n = jnp.repeat(mean[..., None, :], num_samples, axis=-2)
    log_std_n = jnp.repeat(log_std[..., None, :], num_samples, axis=-2)
    u, log_pi = tanh_gaussian_presquash_sample(mean_n, log_std_n, key)  # actions tanh(u), scored from u
    log_beta = behaviour_log_prob_presquash(expand_dist(behaviour_dist), u)
    return jnp.mean(log_pi - log_beta, axis=-1)
