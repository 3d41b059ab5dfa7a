"""The behaviour-policy proxy pi_beta-hat and the sampled KL, against numpy references.

References are float64 numpy written from the change of variables a = tanh(u):
p(a) = sum_k w_k N(atanh a; mu_k, sigma_k^2) / prod_i (1 - a_i^2), and from the closed-form KL of
two Gaussians (a KL is unchanged when the same bijection, here tanh, is applied to both sides).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from offrl.losses import behaviour_nll_loss, sampled_kl
from offrl.nets import (
    BehaviourPolicy, behaviour_log_prob, behaviour_mode, behaviour_sample, expand_dist, tanh_gaussian_log_prob,
)
from offrl.nets.behaviour import ACTION_EPS


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def ref_mixture_log_prob(logits, means, log_stds, actions, eps=ACTION_EPS):
    """log sum_k softmax(logits)_k prod_i N(atanh a_i; mu_ki, sigma_ki) - sum_i log(1 - a_i^2), clipped actions."""
    logits, means, log_stds = np64(logits), np64(means), np64(log_stds)
    a = np.clip(np64(actions), -1 + eps, 1 - eps)
    u = np.arctanh(a)[..., None, :]
    std = np.exp(log_stds)
    log_n = np.sum(-0.5 * ((u - means) / std) ** 2 - np.log(std * math.sqrt(2 * math.pi)), axis=-1)
    log_w = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    mix = np.log(np.sum(np.exp(log_w + log_n), axis=-1))
    return mix - np.sum(np.log(1 - a**2), axis=-1)


def ref_gaussian_kl(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)) for diagonal Gaussians, summed over the last axis."""
    return np.sum(np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5, axis=-1)


def _random_dist(rng, batch, k, a):
    return (rng.normal(size=(batch, k)).astype(np.float32), rng.normal(scale=0.8, size=(batch, k, a)).astype(np.float32),
            rng.uniform(-1.5, 0.3, size=(batch, k, a)).astype(np.float32))


# ----------------------------------------------------------------------------- log-density


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    rng = np.random.default_rng(0)
    mean, log_std = rng.normal(size=(50, 3)), rng.uniform(-2, 0.5, size=(50, 3))
    actions = rng.uniform(-0.999, 0.999, size=(50, 3))
    got = np64(tanh_gaussian_log_prob(*(jnp.asarray(x, jnp.float32) for x in (mean, log_std, actions))))
    ref = ref_mixture_log_prob(np.zeros((50, 1)), mean[:, None], log_std[:, None], actions.astype(np.float32))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_mixture_log_prob_matches_numpy_and_clips_the_bounds(k):
    rng = np.random.default_rng(k)
    logits, means, log_stds = _random_dist(rng, 40, k, 2)
    actions = rng.uniform(-0.99, 0.99, size=(40, 2)).astype(np.float32)
    actions[:4] = [[1.0, -1.0], [1.0, 1.0], [-1.0, 0.5], [0.0, 1.0]]  # data actions on the bounds
    got = np64(behaviour_log_prob((jnp.asarray(logits), jnp.asarray(means), jnp.asarray(log_stds)), jnp.asarray(actions)))
    ref = ref_mixture_log_prob(logits, means, log_stds, actions)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[4:], ref[4:], rtol=1e-4, atol=1e-4)
    # on the bounds float32 atanh(1 - 1e-6) carries ~1e-2 relative error in 1 - a^2; still the same value
    np.testing.assert_allclose(got[:4], ref[:4], rtol=2e-2, atol=0.3)


def test_mixture_density_integrates_to_one():
    """Integrate exp(log p(a)) of a 1-D, 3-component mixture on a fine grid of (-1, 1)."""
    dist = (jnp.array([[0.3, -1.0, 0.5]]), jnp.array([[[-1.0], [0.2], [1.5]]]), jnp.array([[[-0.5], [-1.5], [0.0]]]))
    grid = np.linspace(-1 + 1e-5, 1 - 1e-5, 400_001)
    p = np.exp(np64(behaviour_log_prob(dist, jnp.asarray(grid[:, None], jnp.float32))))
    assert abs(np.trapezoid(p, grid) - 1.0) < 2e-3


def test_sample_matches_the_density_and_the_mode():
    """Monte-Carlo mean of behaviour_sample = the mean from the density; log-probs match; mode = tanh(mu_argmax)."""
    dist = (jnp.array([[2.0, -1.0]]), jnp.array([[[-0.5, 1.0], [1.2, -0.3]]]), jnp.array([[[-1.0, -0.7], [-0.5, -2.0]]]))
    actions, log_probs = behaviour_sample(dist, jax.random.PRNGKey(0), 200_000)
    assert actions.shape == (1, 200_000, 2) and log_probs.shape == (1, 200_000)
    np.testing.assert_allclose(np64(log_probs)[0, :100], ref_mixture_log_prob(*dist, np64(actions)[0, :100]), rtol=1e-4, atol=1e-4)
    # reference mean: E[tanh(u)] per component by quadrature, weighted by softmax(logits)
    w = np.exp(np64(dist[0][0])) / np.exp(np64(dist[0][0])).sum()
    x, wq = np.polynomial.hermite_e.hermegauss(80)
    comp = np.tanh(np64(dist[1][0])[..., None] + np.exp(np64(dist[2][0]))[..., None] * x) @ wq / wq.sum()
    ref_mean = w @ comp
    std_err = np64(actions)[0].std(axis=0) / math.sqrt(200_000)
    assert np.all(np.abs(np64(actions)[0].mean(axis=0) - ref_mean) < 5 * std_err)
    np.testing.assert_allclose(np64(behaviour_mode(dist))[0], np.tanh([-0.5, 1.0]), rtol=1e-6)


def test_behaviour_policy_shapes_and_expand():
    net = BehaviourPolicy((16,), 2, num_components=3, log_std_min=-4.0, log_std_max=1.0)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)))
    logits, means, log_stds = net.apply(params, 50.0 * jax.random.normal(jax.random.PRNGKey(1), (8, 5)))
    assert logits.shape == (8, 3) and means.shape == log_stds.shape == (8, 3, 2)
    assert float(log_stds.min()) >= -4.0 and float(log_stds.max()) <= 1.0
    expanded = expand_dist((logits, means, log_stds), 4)
    assert expanded[0].shape == (8, 4, 3) and expanded[1].shape == (8, 4, 3, 2)
    actions = jax.random.uniform(jax.random.PRNGKey(2), (8, 4, 2), minval=-1, maxval=1)
    np.testing.assert_allclose(np64(behaviour_log_prob(expanded, actions)),
                               np64(behaviour_log_prob(expand_dist((logits, means, log_stds)), actions)), rtol=1e-6)


# ----------------------------------------------------------------------------- maximum likelihood fit


def test_fit_recovers_a_known_state_dependent_tanh_gaussian():
    """Actions drawn from tanh(N(mu(s), sigma(s)^2)) with s in {-1, +1}: the fitted pre-squash mean and std
    come within 0.05 and 10 % of the truth (4000 samples per state give standard errors ~0.01 and ~1 %)."""
    rng = np.random.default_rng(0)
    true_mean = {-1.0: np.array([-0.8, 0.3]), 1.0: np.array([0.6, -0.2])}
    true_std = {-1.0: np.array([0.3, 0.6]), 1.0: np.array([0.5, 0.2])}
    obs = np.repeat([-1.0, 1.0], 4000)[:, None].astype(np.float32)
    u = np.stack([rng.normal(true_mean[float(s)], true_std[float(s)]) for s in obs[:, 0]])
    actions = np.tanh(u).astype(np.float32)
    net = BehaviourPolicy((32, 32), 2)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt, idx):
        (loss, info), grads = jax.value_and_grad(
            lambda p: behaviour_nll_loss(net.apply, p, jnp.asarray(obs)[idx], jnp.asarray(actions)[idx]), has_aux=True)(params)
        updates, opt = tx.update(grads, opt)
        return optax.apply_updates(params, updates), opt, info

    opt = tx.init(params)
    for i in range(1500):
        params, opt, info = step(params, opt, jnp.asarray(rng.integers(0, len(obs), 256)))
    assert {"behaviour_loss", "behaviour_mse"} <= set(info)
    _, means, log_stds = net.apply(params, jnp.array([[-1.0], [1.0]]))
    for row, s in enumerate((-1.0, 1.0)):
        np.testing.assert_allclose(np64(means)[row, 0], true_mean[s], atol=0.05)
        np.testing.assert_allclose(np.exp(np64(log_stds))[row, 0], true_std[s], rtol=0.1)
    # the loss is the mean negative log-likelihood of the numpy reference
    loss, _ = behaviour_nll_loss(net.apply, params, jnp.asarray(obs[:64]), jnp.asarray(actions[:64]))
    dist = net.apply(params, jnp.asarray(obs[:64]))
    np.testing.assert_allclose(float(loss), -ref_mixture_log_prob(*dist, actions[:64]).mean(), rtol=1e-4)


# ----------------------------------------------------------------------------- sampled KL


@pytest.mark.parametrize("shift", [0.0, 8.0])
def test_sampled_kl_matches_the_closed_form_gaussian_kl(shift):
    """KL(tanh#N1 || tanh#N2) = KL(N1 || N2). With n = 20000 samples the estimate's standard error is
    std(log-ratio)/sqrt(n) (numpy, 1e6 draws); the check allows 5 standard errors per state.

    ``shift`` = 8 moves both pre-squash means to where tanh rounds to +-1 in float32: the samples are
    scored from their pre-squash values, so the estimate stays exact (scoring tanh(u) through a
    clipped atanh would put every such sample at atanh(1 - 1e-6) = 7.25).
    """
    rng = np.random.default_rng(1)
    b, a, n = 6, 2, 20_000
    sign = np.where(rng.random(size=(b, a)) < 0.5, -1.0, 1.0)
    m1, ls1 = rng.normal(scale=0.7, size=(b, a)) + shift * sign, rng.uniform(-1.0, 0.0, size=(b, a))
    m2, ls2 = rng.normal(scale=0.7, size=(b, a)) + shift * sign, rng.uniform(-0.8, 0.2, size=(b, a))
    dist = (jnp.zeros((b, 1)), jnp.asarray(m2[:, None], jnp.float32), jnp.asarray(ls2[:, None], jnp.float32))
    est = np64(sampled_kl(jax.random.PRNGKey(0), jnp.asarray(m1, jnp.float32), jnp.asarray(ls1, jnp.float32), dist, n))
    exact = ref_gaussian_kl(m1, np.exp(ls1), m2, np.exp(ls2))
    u = m1[:, None] + np.exp(ls1)[:, None] * rng.normal(size=(b, 1_000_000, a))
    log_ratio = np.sum(-0.5 * ((u - m1[:, None]) / np.exp(ls1)[:, None]) ** 2 - ls1[:, None]
                       + 0.5 * ((u - m2[:, None]) / np.exp(ls2)[:, None]) ** 2 + ls2[:, None], axis=-1)
    std_err = log_ratio.std(axis=1) / math.sqrt(n)
    assert est.shape == (b,)
    assert np.all(np.abs(est - exact) < 5 * std_err), (est, exact, std_err)
    assert np.all(exact > 10 * std_err)  # the check can tell the KL apart from 0


def test_sampled_kl_is_zero_for_equal_policies_and_its_minimiser_is_the_behaviour():
    """KL(pi || pi) = 0 sample by sample; descending the sampled KL over (mean, log_std) finds pi_b's parameters."""
    m2, ls2 = jnp.array([[0.4, -0.9]]), jnp.array([[-0.7, -0.2]])
    dist = (jnp.zeros((1, 1)), m2[:, None], ls2[:, None])
    np.testing.assert_allclose(np64(sampled_kl(jax.random.PRNGKey(0), m2, ls2, dist, 64)), 0.0, atol=1e-5)
    params = (jnp.zeros((1, 2)), jnp.zeros((1, 2)))
    tx = optax.adam(optax.cosine_decay_schedule(0.05, 1000))  # decaying steps average out the sampling noise
    opt = tx.init(params)
    grad = jax.jit(jax.grad(lambda p, k: sampled_kl(k, p[0], p[1], dist, 16).sum()))
    for i in range(1000):
        updates, opt = tx.update(grad(params, jax.random.PRNGKey(i)), opt)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np64(params[0]), np64(m2), atol=0.05)
    np.testing.assert_allclose(np64(params[1]), np64(ls2), atol=0.05)
