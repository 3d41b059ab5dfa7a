"""Flax Linen building blocks shared by every algorithm.

All modules are used functionally: ``params = module.init(key, x)``, ``module.apply(params, x)``.
Actions live in the unit box [-1, 1]; the data transforms map them to and from env units.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


NETWORK_INITS = ("lecun_normal", "uniform_fan_in", "small_output")
"""Initialisations of the Dense layers of :class:`MLP`: ``lecun_normal`` (Flax's default: kernel
~ truncated normal with variance 1/fan_in, bias 0), ``uniform_fan_in`` (kernel and bias ~
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the default of PyTorch's ``nn.Linear`` and so of the PyTorch
reference implementations) and ``small_output`` (hidden kernels ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
hidden biases 0.1, the output layer's kernel and bias ~ U(-s, s) with s = ``output_init_scale``: the
initialisation of An et al.'s EDAC code, which ReBRAC's reference code reuses; the networks start
with outputs near 0)."""


def _uniform(bound: float) -> Callable:
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _dense(features: int, fan_in: int, init: str, output: bool = False, output_scale: float = 3e-3) -> nn.Dense:
    if init == "lecun_normal":
        return nn.Dense(features)
    if init == "uniform_fan_in":
        uniform = _uniform(1.0 / float(fan_in) ** 0.5)
        return nn.Dense(features, kernel_init=uniform, bias_init=uniform)
    if init == "small_output":
        if output:
            return nn.Dense(features, kernel_init=_uniform(output_scale), bias_init=_uniform(output_scale))
        return nn.Dense(features, kernel_init=_uniform(1.0 / float(fan_in) ** 0.5), bias_init=nn.initializers.constant(0.1))
    raise ValueError(f"unknown network init {init!r}; valid values: {', '.join(NETWORK_INITS)}")


class MLP(nn.Module):
    """A multilayer perceptron: hidden layers with ``activation``, then a linear output layer.

    ``initializer`` names the Dense layers' initialisation (see :data:`NETWORK_INITS`; ``output_init_scale``
    is the output layer's bound under ``small_output``). ``layer_norm`` puts a LayerNorm in every hidden
    layer: Dense -> LayerNorm -> activation, or Dense -> activation -> LayerNorm with
    ``layer_norm_after_activation`` (the order of ReBRAC's and EDAC's reference code).
    """

    hidden_dims: Sequence[int]
    output_dim: int
    activation: Callable = nn.relu
    layer_norm: bool = False
    dropout_rate: float = 0.0
    initializer: str = "lecun_normal"
    layer_norm_after_activation: bool = False
    output_init_scale: float = 3e-3

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        for size in self.hidden_dims:
            x = _dense(size, x.shape[-1], self.initializer)(x)
            if self.layer_norm and not self.layer_norm_after_activation:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
            if self.layer_norm and self.layer_norm_after_activation:
                x = nn.LayerNorm()(x)
            if self.dropout_rate > 0.0:
                x = nn.Dropout(self.dropout_rate, deterministic=not training)(x)
        return _dense(self.output_dim, x.shape[-1], self.initializer, output=True, output_scale=self.output_init_scale)(x)


class DeterministicActor(nn.Module):
    """a = tanh(MLP(s)): a deterministic policy in the unit action box (``layer_norm``, ``initializer`` and
    ``layer_norm_after_activation`` as :class:`MLP`'s; under ``small_output`` the last layer starts within +-1e-3)."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    initializer: str = "lecun_normal"
    layer_norm_after_activation: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.hidden_dims, self.action_dim, layer_norm=self.layer_norm, initializer=self.initializer,
                            layer_norm_after_activation=self.layer_norm_after_activation, output_init_scale=1e-3)(observations))


LOG_STD_BOUNDS = ("clip", "sigmoid")


class GaussianActor(nn.Module):
    """pi(a|s) = N(tanh(mu(s)), diag(exp(log_std))^2).

    The mean is squashed into the unit box but the density is a plain Gaussian, so
    log pi(a|s) of dataset actions is exact and cheap (IQL/AWR-style extraction). ``log_std`` is a
    free parameter per action dimension unless ``state_dependent_std``.
    """

    hidden_dims: Sequence[int]
    action_dim: int
    state_dependent_std: bool = False
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    dropout_rate: float = 0.0
    initializer: str = "lecun_normal"
    log_std_bound: str = "clip"

    @nn.compact
    def __call__(self, observations: jax.Array, training: bool = False) -> tuple[jax.Array, jax.Array]:
        """Returns ``(mean, log_std)``, both of shape (..., action_dim)."""
        if self.log_std_bound not in LOG_STD_BOUNDS:
            raise ValueError(f"unknown log_std_bound {self.log_std_bound!r}; valid values: {', '.join(LOG_STD_BOUNDS)}")
        out_dim = self.action_dim * (2 if self.state_dependent_std else 1)
        out = MLP(self.hidden_dims, out_dim, dropout_rate=self.dropout_rate, initializer=self.initializer)(observations, training)
        if self.state_dependent_std:
            mean, log_std = jnp.split(out, 2, axis=-1)
        else:
            mean = out
            log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
            log_std = jnp.broadcast_to(log_std, mean.shape)
        if self.log_std_bound == "sigmoid":
            log_std = self.log_std_min + (self.log_std_max - self.log_std_min) * jax.nn.sigmoid(log_std)
        else:
            log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return jnp.tanh(mean), log_std


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> jax.Array:
    """log N(actions; mean, exp(log_std)^2), summed over the last axis."""
    z = (actions - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def gaussian_action(mean: jax.Array, log_std: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
    """The action of a :class:`GaussianActor`: its mean (``deterministic``) or a sample, clipped to the unit box."""
    if not deterministic:
        mean = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return jnp.clip(mean, -1.0, 1.0)


CLONING_POLICIES = ("deterministic", "gaussian")
"""Policy classes of behaviour cloning (``bc``, ``percent_bc``): :class:`DeterministicActor` fitted by
squared error, or :class:`GaussianActor` fitted by log-likelihood."""


def cloning_actor(policy: str, hidden_dims: Sequence[int], action_dim: int) -> nn.Module:
    """The policy network of behaviour cloning for ``policy`` in :data:`CLONING_POLICIES`."""
    if policy == "gaussian":
        return GaussianActor(hidden_dims, action_dim)
    return DeterministicActor(hidden_dims, action_dim)


def cloning_action(outputs, policy: str, key: jax.Array, deterministic: bool) -> jax.Array:
    """The action of a :func:`cloning_actor` from its outputs: :func:`gaussian_action`, or the clipped deterministic output."""
    if policy == "gaussian":
        return gaussian_action(*outputs, key, deterministic)
    return jnp.clip(outputs, -1.0, 1.0)


def gaussian_samples(mean: jax.Array, log_std: jax.Array, key: jax.Array, num: int) -> jax.Array:
    """``num`` samples a ~ N(mean, exp(log_std)^2) per state, clipped to the unit box: shape [B, num, act_dim]."""
    eps = jax.random.normal(key, (mean.shape[0], num, mean.shape[-1]))
    return jnp.clip(mean[:, None] + jnp.exp(log_std)[:, None] * eps, -1.0, 1.0)


class Critic(nn.Module):
    """An ensemble of ``num_qs`` Q functions Q_i(s, a), run as one vmapped module.

    Returns an array of shape (num_qs, ...). Every member sees the same ``(observations, actions)``;
    with ``per_member=True`` both carry a leading axis of size ``num_qs`` and member i sees row i
    (the same parameters: :func:`ensemble_action_gradients` differentiates each member at its own copy).
    """

    hidden_dims: Sequence[int]
    num_qs: int = 2
    layer_norm: bool = False
    initializer: str = "lecun_normal"
    layer_norm_after_activation: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array, per_member: bool = False) -> jax.Array:
        ensemble = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=0 if per_member else None,
            out_axes=0,
            axis_size=self.num_qs,
        )
        x = jnp.concatenate([observations, actions], axis=-1)
        return ensemble(self.hidden_dims, 1, layer_norm=self.layer_norm, initializer=self.initializer,
                        layer_norm_after_activation=self.layer_norm_after_activation)(x)[..., 0]


def ensemble_action_gradients(apply_fn: Callable, params, observations: jax.Array, actions: jax.Array,
                              num_qs: int) -> tuple[jax.Array, jax.Array]:
    """Q_i(s, a) [K, B] of a :class:`Critic` and each member's action gradient grad_a Q_i(s, a) [K, B, act_dim].

    One forward and one backward pass: the inputs are copied once per member (``per_member=True``), so
    member i's output depends only on copy i and the gradient of sum_i,b Q_i(s_b, a_ib) with respect
    to copy i is grad_a Q_i. Differentiable in ``params`` (EDAC's diversity penalty trains through it).
    """
    obs = jnp.broadcast_to(observations, (num_qs,) + observations.shape)
    acts = jnp.broadcast_to(actions, (num_qs,) + actions.shape)
    q, vjp = jax.vjp(lambda a: apply_fn(params, obs, a, per_member=True), acts)
    return q, vjp(jnp.ones_like(q))[0]


def q_on_action_sets(apply_fn: Callable, params, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """Q_k(s_b, a_bj) of a :class:`Critic` for n actions per state (actions [B, n, act_dim]): shape (K, B, n).

    One critic call on the B * n flattened pairs; row b * n + j of the flat batch is state b's j-th action.
    """
    b, n, action_dim = actions.shape
    q = apply_fn(params, jnp.repeat(observations, n, axis=0), actions.reshape(b * n, action_dim))
    return q.reshape(q.shape[0], b, n)


class ValueNet(nn.Module):
    """V(s): a state-value MLP with a scalar output."""

    hidden_dims: Sequence[int]
    layer_norm: bool = False
    initializer: str = "lecun_normal"

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, 1, layer_norm=self.layer_norm, initializer=self.initializer)(observations)[..., 0]


class LogScalar(nn.Module):
    """A positive scalar exp(v), trained through its logarithm v (an entropy temperature, a Lagrange multiplier).

    ``param_name`` names the one parameter in the checkpoint (``log_temperature``, ``log_alpha``, ...).
    """

    initial: float = 1.0
    param_name: str = "log_value"

    @nn.compact
    def __call__(self) -> jax.Array:
        return jnp.exp(self.param(self.param_name, lambda _: jnp.full((), math.log(self.initial), jnp.float32)))


class TanhGaussianActor(nn.Module):
    """The SAC policy: a = tanh(u), u ~ N(mu(s), diag(exp(log_std(s)))^2).

    Unlike :class:`GaussianActor`, the Gaussian lives *before* the squashing, so samples are in the
    unit box (open in exact arithmetic; float32 tanh rounds to +-1 for |u| > 9) and the density of
    ``a`` carries the tanh Jacobian (:func:`tanh_gaussian_sample_and_log_prob`). Mean and log-std
    are both state dependent; the log-std is clipped to ``[log_std_min, log_std_max]`` (the SAC
    reference code's -20 and 2).
    """

    hidden_dims: Sequence[int]
    action_dim: int
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    initializer: str = "lecun_normal"
    """:data:`NETWORK_INITS`; under ``small_output`` the mean and log-std layer starts within +-1e-3."""

    @nn.compact
    def __call__(self, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns the pre-squash ``(mean, log_std)``, both of shape (..., action_dim)."""
        out = MLP(self.hidden_dims, 2 * self.action_dim, initializer=self.initializer, output_init_scale=1e-3)(observations)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_gaussian_sample_and_log_prob(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample ``a = tanh(mean + exp(log_std) * eps)`` and ``log pi(a)``.

    By the change of variables a = tanh(u),
    ``log pi(a) = log N(u; mean, std^2) - sum_i log(1 - tanh(u_i)^2)`` (Haarnoja et al. 2018, eq. 21),
    summed over the last axis. The Jacobian term is computed as
    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``, which stays finite where
    ``1 - tanh(u)^2`` rounds to zero. Gradients flow to ``mean`` and ``log_std`` (the reparameterisation trick).
    Returns ``(actions, log_probs)`` of shapes (..., action_dim) and (...).
    """
    u, log_probs = tanh_gaussian_presquash_sample(mean, log_std, key)
    return jnp.tanh(u), log_probs


def tanh_gaussian_action(mean: jax.Array, log_std: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
    """The action of a :class:`TanhGaussianActor`: tanh(mean) (``deterministic``) or a sample of the squashed Gaussian."""
    if deterministic:
        return jnp.tanh(mean)
    return tanh_gaussian_sample_and_log_prob(mean, log_std, key)[0]


def tanh_gaussian_presquash_sample(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """As :func:`tanh_gaussian_sample_and_log_prob`, but returns the pre-squash sample ``u`` (the action
    is ``tanh(u)``): other densities of the same action are then scored from ``u`` itself, never from
    ``atanh(tanh(u))``, which float32 rounding makes inexact (and its gradient noisy) where tanh saturates."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * eps
    gaussian = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)
    log_det = jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return u, gaussian - log_det


# The conditional action VAE of BCQ/BEAR lives in its own module (it uses MLP above).
from offrl.nets.vae import ActionVAE, vae_sample  # noqa: E402,F401

# The behaviour-policy proxy pi_beta-hat (tanh-Gaussian mixture) lives in its own module (it uses MLP above).
from offrl.nets.behaviour import (  # noqa: E402,F401
    BehaviourPolicy, behaviour_log_prob, behaviour_log_prob_presquash, behaviour_mode, behaviour_sample, expand_dist,
    tanh_gaussian_log_prob,
)

# Discrete-action Q ensembles (one output per action) live in their own module (they use MLP above).
from offrl.nets.discrete import DiscreteCritic  # noqa: E402,F401

# The denoiser of the diffusion and flow policies (residual LayerNorm blocks, sinusoidal time embedding).
from offrl.nets.generative import SELECTIONS, Denoiser, choose_by_q, sinusoidal_embedding  # noqa: E402,F401
