"""Known answers for the small pieces several algorithms share (offrl.losses, offrl.nets).

Each piece replaced lines that used to be repeated in the algorithm files; the references here are
numpy (float64) or direct network calls, not the library functions themselves.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.losses import ensemble_td_loss, periodic_target_update, temperature_loss, weighted_log_likelihood_loss
from offrl.nets import (Critic, LogScalar, cloning_action, gaussian_action, gaussian_samples, q_on_action_sets,
                        tanh_gaussian_action)
from offrl.nets.discrete import greedy_or_sampled


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- losses


def test_ensemble_td_loss_sums_each_members_mean_squared_error():
    rng = np.random.default_rng(0)
    q, y = rng.normal(size=(3, 7)), rng.normal(size=7)
    want = sum(np.mean((q[i] - y) ** 2) for i in range(3))
    got = ensemble_td_loss(jnp.asarray(q, jnp.float32), jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_weighted_log_likelihood_loss_matches_numpy():
    rng = np.random.default_rng(1)
    w, mean, log_std, a = rng.uniform(0, 3, 6), rng.normal(size=(6, 2)), rng.uniform(-2, 0.5, (6, 2)), rng.normal(size=(6, 2))
    var = np.exp(2 * log_std)
    log_prob = np.sum(-0.5 * np.log(2 * np.pi * var) - (a - mean) ** 2 / (2 * var), axis=-1)
    got = weighted_log_likelihood_loss(*(jnp.asarray(v, jnp.float32) for v in (w, mean, log_std, a)))
    np.testing.assert_allclose(float(got), -np.mean(w * log_prob), rtol=1e-5)


def test_temperature_loss_value_and_gradients():
    """temperature * (entropy - target): d/d temperature = entropy - target, no gradient into the entropy."""
    value = temperature_loss(jnp.float32(0.3), jnp.float32(-1.5), -2.0)
    np.testing.assert_allclose(float(value), 0.3 * 0.5, rtol=1e-6)
    d_temp, d_entropy = jax.grad(lambda t, h: temperature_loss(t, h, -2.0), argnums=(0, 1))(jnp.float32(0.3), jnp.float32(-2.5))
    np.testing.assert_allclose(float(d_temp), -0.5, rtol=1e-6)  # entropy below the target: the temperature rises
    assert float(d_entropy) == 0.0


def test_periodic_target_update_moves_only_on_every_periodth_step():
    online, target = {"w": jnp.full((2,), 1.0)}, {"w": jnp.zeros((2,))}
    for step, moved in [(1, False), (2, False), (3, True), (6, True), (7, False)]:
        got = periodic_target_update(online, target, 0.25, jnp.int32(step), 3)["w"]
        np.testing.assert_allclose(np64(got), 0.25 if moved else 0.0)
    # period 1 with tau 1 copies every step; a long period with tau 1 is the DQN target network
    np.testing.assert_allclose(np64(periodic_target_update(online, target, 1.0, jnp.int32(5), 1)["w"]), 1.0)


# ----------------------------------------------------------------------------- nets


def test_q_on_action_sets_matches_one_call_per_pair():
    rng = np.random.default_rng(2)
    obs = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    actions = jnp.asarray(rng.uniform(-1, 1, (4, 5, 2)), jnp.float32)
    critic = Critic((16, 16), num_qs=3)
    params = critic.init(jax.random.PRNGKey(0), obs[:1], actions[:1, 0])
    got = np64(q_on_action_sets(critic.apply, params, obs, actions))
    assert got.shape == (3, 4, 5)
    for b in range(4):
        for j in range(5):
            want = np64(critic.apply(params, obs[b:b + 1], actions[b, j][None]))[:, 0]
            np.testing.assert_allclose(got[:, b, j], want, rtol=1e-5, atol=1e-6)


def test_gaussian_action_is_the_clipped_mean_or_a_clipped_sample():
    mean = jnp.asarray([[0.2, -0.95], [0.99, 0.0]], jnp.float32)
    log_std = jnp.asarray([[-1.0, 0.5], [0.0, -3.0]], jnp.float32)
    key = jax.random.PRNGKey(4)
    np.testing.assert_array_equal(np64(gaussian_action(mean, log_std, key, True)), np64(mean))
    eps = np64(jax.random.normal(key, mean.shape))
    want = np.clip(np64(mean) + np.exp(np64(log_std)) * eps, -1, 1)
    np.testing.assert_allclose(np64(gaussian_action(mean, log_std, key, False)), want, rtol=1e-6)


def test_gaussian_samples_shape_clip_and_distribution():
    mean = jnp.asarray([[0.0, 0.9]], jnp.float32)
    log_std = jnp.log(jnp.asarray([[0.1, 1.0]], jnp.float32))
    s = np64(gaussian_samples(mean, log_std, jax.random.PRNGKey(5), 20_000))
    assert s.shape == (1, 20_000, 2)
    assert s.min() >= -1.0 and s.max() <= 1.0
    np.testing.assert_allclose(s[0, :, 0].std(), 0.1, rtol=0.03)  # far from the bounds: the plain Gaussian
    assert np.mean(s[0, :, 1] == 1.0) > 0.4  # N(0.9, 1) is above 1 with probability 0.46: clipped there


def test_tanh_gaussian_action_squashes_the_mean_or_a_sample():
    mean, log_std = jnp.asarray([[3.0, -0.2]], jnp.float32), jnp.asarray([[-1.0, 0.0]], jnp.float32)
    key = jax.random.PRNGKey(6)
    np.testing.assert_allclose(np64(tanh_gaussian_action(mean, log_std, key, True)), np.tanh(np64(mean)), rtol=1e-6)
    eps = np64(jax.random.normal(key, mean.shape))
    want = np.tanh(np64(mean) + np.exp(np64(log_std)) * eps)
    np.testing.assert_allclose(np64(tanh_gaussian_action(mean, log_std, key, False)), want, rtol=1e-5)


def test_cloning_action_of_each_policy_class():
    key = jax.random.PRNGKey(7)
    out = jnp.asarray([[0.5, -1.0]], jnp.float32)
    np.testing.assert_array_equal(np64(cloning_action(out, "deterministic", key, False)), np64(out))
    mean, log_std = jnp.asarray([[0.5, -0.5]], jnp.float32), jnp.asarray([[-2.0, -2.0]], jnp.float32)
    np.testing.assert_array_equal(np64(cloning_action((mean, log_std), "gaussian", key, True)), np64(mean))
    assert not np.allclose(np64(cloning_action((mean, log_std), "gaussian", key, False)), np64(mean))


@pytest.mark.parametrize("name", ["log_alpha", "log_temperature"])
def test_log_scalar_stores_the_log_under_its_checkpoint_name(name):
    module = LogScalar(0.1, name)
    params = module.init(jax.random.PRNGKey(0))
    assert list(params["params"]) == [name]
    np.testing.assert_allclose(float(params["params"][name]), math.log(0.1), rtol=1e-6)
    np.testing.assert_allclose(float(module.apply(params)), 0.1, rtol=1e-6)


def test_greedy_or_sampled_argmax_and_softmax_frequencies():
    logits = jnp.asarray([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(greedy_or_sampled(logits, jax.random.PRNGKey(0), True)), [1, 0])
    keys = jax.random.split(jax.random.PRNGKey(1), 20_000)
    draws = np.asarray(jax.vmap(lambda k: greedy_or_sampled(logits[:1], k, False))(keys))[:, 0]
    assert draws.dtype == np.int32
    probs = np.exp([0.0, 1.0, -1.0]) / np.exp([0.0, 1.0, -1.0]).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / len(draws), probs, atol=0.015)
