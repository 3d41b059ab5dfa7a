"""Evaluation and behaviour policies as pure JAX functions of raw observations, with their densities.

A :class:`Policy` is one of five kinds, each with the distribution its ``outputs(obs)`` describe:

* ``categorical``: ``outputs`` are logits [B, K]; pi(a|s) = softmax(logits)[a];
* ``greedy``: ``outputs`` are logits or Q values [B, K]; pi(a|s) = 1[a = argmax] (a deterministic
  discrete policy: its importance weights are 0 or 1/pi_beta);
* ``gaussian``: ``outputs`` are ``(mean, log_std)`` in the unit box; pi(u|s) = N(u; mean, std^2)
  (:class:`offrl.nets.GaussianActor`; samples are clipped to the box, the density ignores the clip);
* ``tanh_gaussian``: ``outputs`` are the pre-squash ``(mean, log_std)``; u = tanh(x), x ~ N
  (:class:`offrl.nets.TanhGaussianActor`; density with the tanh Jacobian);
* ``mixture``: ``outputs`` are a :class:`offrl.nets.BehaviourPolicy` distribution (the behaviour proxy);
* ``deterministic``: ``outputs`` are unit-box actions [B, A]: no density, so importance sampling refuses
  it unless :func:`smoothed` turns it into a ``gaussian`` of a stated std.

Continuous actions live in env units outside this module: ``a = offset + scale * u``, so the density
in env units is ``pi(u|s) / prod(scale)`` (:func:`log_prob` returns it in env units, the units of a
dataset's ``actions`` and ``behaviour_log_probs``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from offrl.nets import gaussian_log_prob
from offrl.nets.behaviour import behaviour_log_prob, behaviour_mode, behaviour_sample, tanh_gaussian_log_prob
from offrl.ope.episodes import OPEError

KINDS = ("categorical", "greedy", "gaussian", "tanh_gaussian", "mixture", "deterministic")
DENSITY_KINDS = ("categorical", "greedy", "gaussian", "tanh_gaussian", "mixture")


@dataclass(frozen=True)
class Policy:
    """A policy over env-unit actions: ``outputs(obs [B, obs_dim]) -> the distribution's parameters``."""

    kind: str
    outputs: Callable[[jax.Array], Any]
    obs_dim: int
    num_actions: int | None = None
    action_scale: Any = None  # [A] env = offset + scale * unit (continuous); None: unit box = env units
    action_offset: Any = None
    name: str = "policy"
    note: str = ""  # why the policy is this kind (e.g. "deterministic actor")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown policy kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None

    @property
    def has_density(self) -> bool:
        return self.kind in DENSITY_KINDS

    def _scale(self, action_dim: int):
        scale = jnp.ones(action_dim) if self.action_scale is None else jnp.asarray(self.action_scale, jnp.float32)
        offset = jnp.zeros(action_dim) if self.action_offset is None else jnp.asarray(self.action_offset, jnp.float32)
        return scale, offset

    def to_unit(self, actions: jax.Array) -> jax.Array:
        scale, offset = self._scale(actions.shape[-1])
        return (actions - offset) / scale

    def to_env(self, unit: jax.Array) -> jax.Array:
        scale, offset = self._scale(unit.shape[-1])
        return offset + scale * unit


def smoothed(policy: Policy, sigma: float) -> Policy:
    """A deterministic continuous policy made stochastic: N(pi(s), sigma^2) per unit-box dimension."""
    if policy.kind != "deterministic":
        return policy
    if not sigma > 0:
        raise OPEError(f"the Gaussian smoothing std must be > 0, got {sigma}")
    base = policy.outputs

    def outputs(obs):
        mean = base(obs)
        return mean, jnp.full_like(mean, float(np.log(sigma)))

    return replace(policy, kind="gaussian", outputs=outputs, note=f"{policy.note}; smoothed N(pi(s), {sigma:g}^2)".strip("; "))


def action_probs(policy: Policy, obs: jax.Array) -> jax.Array:
    """pi(.|s) [B, K] of a discrete policy."""
    out = policy.outputs(obs)
    if policy.kind == "greedy":
        return jax.nn.one_hot(jnp.argmax(out, axis=-1), out.shape[-1])
    return jax.nn.softmax(out, axis=-1)


def log_prob(policy: Policy, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """log pi(a|s) [B] of env-unit ``actions`` (int indices [B] when discrete); -inf where pi(a|s) = 0."""
    if policy.discrete:
        probs = action_probs(policy, obs)
        p = jnp.take_along_axis(probs, actions.astype(jnp.int32)[:, None], axis=-1)[:, 0]
        if policy.kind == "greedy":
            return jnp.where(p > 0, 0.0, -jnp.inf)
        return jnp.take_along_axis(jax.nn.log_softmax(policy.outputs(obs), axis=-1), actions.astype(jnp.int32)[:, None],
                                   axis=-1)[:, 0]
    if policy.kind == "deterministic":
        raise OPEError(f"{policy.name}'s policy is deterministic ({policy.note or 'no density'}): pi(a|s) is not a density, "
                       "so importance weights are undefined. Fix: use FQE or model-based evaluation (--estimators fqe,mb), or "
                       "state a Gaussian smoothing of the actions (--smoothing SIGMA)")
    unit = policy.to_unit(actions)
    scale, _ = policy._scale(actions.shape[-1])
    log_jac = -jnp.sum(jnp.log(jnp.abs(scale)))
    out = policy.outputs(obs)
    if policy.kind == "gaussian":
        lp = gaussian_log_prob(out[0], out[1], unit)
    elif policy.kind == "tanh_gaussian":
        lp = tanh_gaussian_log_prob(out[0], out[1], unit)
    else:  # mixture
        lp = behaviour_log_prob(out, unit)
    return lp + log_jac


def sample(policy: Policy, obs: jax.Array, key: jax.Array) -> jax.Array:
    """One action per observation, env units (int32 indices when discrete)."""
    out = policy.outputs(obs)
    if policy.discrete:
        if policy.kind == "greedy":
            return jnp.argmax(out, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, out, axis=-1).astype(jnp.int32)
    if policy.kind == "deterministic":
        unit = out
    elif policy.kind == "gaussian":
        unit = out[0] + jnp.exp(out[1]) * jax.random.normal(key, out[0].shape)
    elif policy.kind == "tanh_gaussian":
        unit = jnp.tanh(out[0] + jnp.exp(out[1]) * jax.random.normal(key, out[0].shape))
    else:
        unit = behaviour_sample(out, key)[0]
    return policy.to_env(jnp.clip(unit, -1.0, 1.0))


def mode(policy: Policy, obs: jax.Array) -> jax.Array:
    """The most probable action (env units; indices when discrete)."""
    out = policy.outputs(obs)
    if policy.discrete:
        return jnp.argmax(out, axis=-1).astype(jnp.int32)
    if policy.kind == "deterministic":
        unit = out
    elif policy.kind == "gaussian":
        unit = out[0]
    elif policy.kind == "tanh_gaussian":
        unit = jnp.tanh(out[0])
    else:
        unit = behaviour_mode(out)
    return policy.to_env(jnp.clip(unit, -1.0, 1.0))


BLOCK = 4096
"""Rows per compiled call of the batched helpers: every call is padded to it, so each function compiles once."""


def in_blocks(fn: Callable, *arrays: np.ndarray, key: jax.Array | None = None, block: int = BLOCK) -> np.ndarray:
    """``fn(*rows[, key])`` over the rows of ``arrays`` in padded blocks of ``block`` rows; numpy float64 (or the
    output dtype when integer) of the first ``len(arrays[0])`` rows."""
    n = len(arrays[0])
    keys = None if key is None else jax.random.split(key, max(1, -(-n // block)))
    out = []
    for j, i in enumerate(range(0, n, block)):
        rows = [np.asarray(a[i:i + block]) for a in arrays]
        m = len(rows[0])
        rows = [np.concatenate([r, np.repeat(r[-1:], block - m, axis=0)]) if m < block else r for r in rows]
        args = [jnp.asarray(r) for r in rows] + ([] if keys is None else [keys[j]])
        out.append(np.asarray(fn(*args))[:m])
    res = np.concatenate(out)
    return res if np.issubdtype(res.dtype, np.integer) else res.astype(np.float64)


def batched_log_prob(policy: Policy, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """:func:`log_prob` over a whole dataset in compiled blocks (numpy float64 [N])."""
    check_observations(policy, observations)
    return in_blocks(jax.jit(lambda o, a: log_prob(policy, o, a)), observations, actions)


def check_observations(policy: Policy, observations: np.ndarray) -> None:
    """:class:`OPEError` when the dataset's observations do not fit the policy's input."""
    dim = int(np.shape(observations)[-1])
    if dim != policy.obs_dim:
        raise OPEError(f"{policy.name} takes observations of {policy.obs_dim} dimensions but the dataset's have {dim}: the "
                       "policy was trained on another observation space. Fix: evaluate it on a dataset of its own environment")
