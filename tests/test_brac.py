"""BRAC (Wu, Tucker & Nachum 2019): the losses against numpy references, the dual alpha, the behaviour
warm-up, and the out-of-distribution trap (``tests/ood_trap.py``).

The references are float64 numpy written from the paper's equations: the networks are applied directly
(``Module.apply``) only to obtain their outputs, and the Gaussian noise is redrawn with the same keys
(``jax.random.split`` / ``jax.random.normal``) so the samples are the same ones.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import DataSpec, brac, get_algo
from offrl.data.sampling import Batch

from ood_trap import MARGIN, SUPPORT_HIGH, trained_action, true_reward

OBS_DIM, ACT_DIM, B, N = 4, 2, 16, 4
RTOL, ATOL = 2e-4, 2e-4


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def ref_tanh_gaussian(mean, log_std, eps):
    """a = tanh(u), u = mean + std eps; log pi(a) = log N(u; mean, std) + sum 2 log cosh(u)."""
    mean, log_std, eps = np64(mean), np64(log_std), np64(eps)
    u = mean + np.exp(log_std) * eps
    log_n = -0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi)
    return np.tanh(u), np.sum(log_n + 2.0 * np.log(np.cosh(u)), axis=-1)


def ref_behaviour_log_prob(dist, actions, eps=1e-6):
    """log sum_k w_k N(atanh a; mu_k, sigma_k) - sum log(1 - a^2), actions clipped to +-(1 - eps)."""
    logits, means, log_stds = (np64(x) for x in dist)
    a = np.clip(np64(actions), -1 + eps, 1 - eps)
    u = np.arctanh(a)[..., None, :]
    log_n = np.sum(-0.5 * ((u - means) / np.exp(log_stds)) ** 2 - log_stds - 0.5 * np.log(2 * np.pi), axis=-1)
    log_w = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.log(np.exp(log_w + log_n).sum(-1)) - np.sum(np.log(1 - a**2), axis=-1)


def ref_kl(state, mean, log_std, observations, key):
    """(1/n) sum_j [log pi(a_j|s) - log pi_b(a_j|s)] with the same n noise draws as ``sampled_kl``."""
    eps = jax.random.normal(key, mean.shape[:-1] + (N,) + mean.shape[-1:])
    a, log_pi = ref_tanh_gaussian(np64(mean)[:, None], np64(log_std)[:, None], eps)
    dist = [np64(x)[:, None] for x in state.behaviour.apply_fn(state.behaviour.params, observations)]
    return np.mean(log_pi - ref_behaviour_log_prob(dist, a.astype(np.float32)), axis=1)


def _setup(config=None, alpha=0.3):
    config = config or brac.Config(hidden_dims=(16, 16), num_samples=N, alpha=alpha)
    state = brac.init(config, DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(0), 10)
    # distinct target parameters, so a loss that used the online critic instead would fail
    state = state.replace(target_critic_params=jax.tree.map(lambda x: 0.9 * x + 0.01, state.critic.params))
    rng = np.random.default_rng(1)
    batch = Batch(
        observations=jnp.asarray(rng.normal(size=(B, OBS_DIM)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(B, ACT_DIM)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=B), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(B, OBS_DIM)), jnp.float32),
        terminals=jnp.asarray(rng.uniform(size=B) < 0.3, jnp.float32),
        discounts=jnp.full((B,), 0.99, jnp.float32),
    )
    return config, state, batch


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("value_penalty, temperature", [(False, 0.0), (True, 0.0), (True, 0.2)])
def test_critic_loss_matches_numpy(value_penalty, temperature):
    """y = r + discount (1 - d) [min_i Q'_i(s', a') - temperature log pi(a'|s') - vp alpha D(s')]."""
    cls = brac.ValuePenaltyConfig if value_penalty else brac.Config
    config, state, batch = _setup(cls(hidden_dims=(16, 16), num_samples=N, alpha=0.3, temperature=temperature))
    key = jax.random.PRNGKey(5)
    loss, info = brac.critic_loss(config, state, state.critic.params, batch, key)
    k_action, k_kl = jax.random.split(key)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.next_observations)
    next_a, next_logp = ref_tanh_gaussian(mean, log_std, jax.random.normal(k_action, mean.shape))
    next_q = np64(state.critic.apply_fn(state.target_critic_params, batch.next_observations, jnp.asarray(next_a, jnp.float32))).min(0)
    v = next_q - temperature * next_logp
    if value_penalty:
        kl = ref_kl(state, mean, log_std, batch.next_observations, k_kl)
        assert np.abs(kl).max() > 0.05  # the penalty is not negligible here
        v = v - 0.3 * kl
    y = np64(batch.rewards) + 0.99 * (1 - np64(batch.terminals)) * v
    q = np64(state.critic.apply_fn(state.critic.params, batch.observations, batch.actions))
    np.testing.assert_allclose(float(loss), ((q - y) ** 2).mean(axis=1).sum(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(info["target_mean"]), y.mean(), rtol=RTOL, atol=ATOL)


def test_value_penalty_is_the_discounted_kl_subtracted_from_the_reward():
    """brac_v's target minus brac_p's target = -discount (1 - d) alpha D(s'), i.e. r_bar = r - discount alpha D(s')."""
    config_p, state, batch = _setup()
    config_v = brac.ValuePenaltyConfig(**{f.name: getattr(config_p, f.name) for f in dataclasses.fields(config_p) if f.name != "value_penalty"})
    key = jax.random.PRNGKey(11)
    _, info_p = brac.critic_loss(config_p, state, state.critic.params, batch, key)
    _, info_v = brac.critic_loss(config_v, state, state.critic.params, batch, key)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.next_observations)
    kl = ref_kl(state, mean, log_std, batch.next_observations, jax.random.split(key)[1])
    expected = -0.99 * 0.3 * np.mean((1 - np64(batch.terminals)) * kl)
    np.testing.assert_allclose(float(info_v["target_mean"]) - float(info_p["target_mean"]), expected, rtol=1e-3, atol=1e-5)


def test_actor_loss_matches_numpy():
    """L = mean[alpha D(s) + temperature log pi(a~|s) - min_i Q_i(s, a~)]."""
    config, state, batch = _setup(brac.Config(hidden_dims=(16, 16), num_samples=N, alpha=0.3, temperature=0.1))
    key = jax.random.PRNGKey(6)
    loss, info = brac.actor_loss(config, state, state.actor.params, batch, key)
    k_action, k_kl = jax.random.split(key)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
    a, logp = ref_tanh_gaussian(mean, log_std, jax.random.normal(k_action, mean.shape))
    q = np64(state.critic.apply_fn(state.critic.params, batch.observations, jnp.asarray(a, jnp.float32))).min(0)
    kl = ref_kl(state, mean, log_std, batch.observations, k_kl)
    np.testing.assert_allclose(float(loss), np.mean(0.3 * kl + 0.1 * logp - q), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(info["kl_mean"]), kl.mean(), rtol=RTOL, atol=ATOL)
    # the gradient does not reach pi_b: the actor loss is a function of the actor's parameters only
    grads = jax.grad(lambda p: brac.actor_loss(config, state.replace(behaviour=state.behaviour.replace(params=p)),
                                               state.actor.params, batch, key)[0])(state.behaviour.params)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_behaviour_loss_is_the_negative_log_likelihood_of_the_data():
    config, state, batch = _setup()
    loss, info = brac.behaviour_loss(config, state, state.behaviour.params, batch)
    dist = state.behaviour.apply_fn(state.behaviour.params, batch.observations)
    np.testing.assert_allclose(float(loss), -ref_behaviour_log_prob(dist, batch.actions).mean(), rtol=1e-4)
    assert float(info["behaviour_loss"]) == float(loss)


@pytest.mark.parametrize("kl, target", [(0.9, 0.5), (0.1, 0.5), (0.4, None)])
def test_alpha_loss_and_its_gradient(kl, target):
    """L = -alpha (D - target); d L / d log alpha = -alpha (D - target): alpha rises while D > target."""
    config, state, batch = _setup(brac.Config(hidden_dims=(16, 16), alpha=0.3, target_divergence=target))
    goal = 0.0 if target is None else target
    loss, info = brac.alpha_loss(config, state, state.alpha.params, jnp.float32(kl))
    np.testing.assert_allclose(float(loss), -0.3 * (kl - goal), rtol=1e-5)
    np.testing.assert_allclose(float(info["alpha"]), 0.3, rtol=1e-6)
    grad = jax.grad(lambda p: brac.alpha_loss(config, state, p, jnp.float32(kl))[0])(state.alpha.params)
    np.testing.assert_allclose(float(grad["params"]["log_alpha"]), -0.3 * (kl - goal), rtol=1e-5)


# ----------------------------------------------------------------------------- update


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_fixed_alpha_stays_and_dual_alpha_moves():
    config, state, batch = _setup()
    fixed, metrics = jax.jit(lambda s, b, k: brac.update(config, s, b, k))(state, batch, jax.random.PRNGKey(0))
    assert _leaves_equal(fixed.alpha.params, state.alpha.params)
    assert {"behaviour_loss", "critic_loss", "q_mean", "actor_loss", "kl_mean", "alpha", "alpha_loss"} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    # the dual step lowers alpha while the KL is under its target (the sign itself: test_alpha_loss_and_its_gradient)
    dual = dataclasses.replace(config, target_divergence=1e3)
    moved, _ = jax.jit(lambda s, b, k: brac.update(dual, s, b, k))(state, batch, jax.random.PRNGKey(0))
    assert float(moved.alpha.apply_fn(moved.alpha.params)) < 0.3


def test_dual_alpha_stops_at_max_alpha_when_the_target_is_out_of_reach():
    # a target KL below any estimate keeps raising log alpha; Adam moves it about alpha_lr per step,
    # so with alpha_lr = 1 twenty steps would take alpha from 0.3 to about 1e8 without the bound
    config, state, batch = _setup(brac.Config(hidden_dims=(16, 16), num_samples=N, alpha=0.3, target_divergence=-1e3, alpha_lr=1.0))
    step = jax.jit(lambda s, b, k: brac.update(config, s, b, k))
    alphas = []
    for i in range(20):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
        alphas.append(float(state.alpha.apply_fn(state.alpha.params)))
        assert all(np.isfinite(float(v)) for v in metrics.values())
    assert alphas[0] > 0.3 and max(alphas) <= brac.MAX_ALPHA * (1 + 1e-5)
    assert brac.MAX_ALPHA == 500.0 and alphas[-1] == pytest.approx(brac.MAX_ALPHA, rel=1e-5)
    with pytest.raises(ValueError, match="must be <= 500 with target_divergence"):
        brac.init(brac.Config(alpha=600.0, target_divergence=1.0), DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(0), 10)
    brac.init(brac.Config(alpha=600.0), DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(0), 10)  # a fixed alpha is not bounded


def test_behaviour_warmup_trains_only_the_behaviour_policy():
    config, state, batch = _setup(brac.Config(hidden_dims=(16, 16), behaviour_warmup_steps=2, target_divergence=0.5))
    step = jax.jit(lambda s, b, k: brac.update(config, s, b, k))
    s1, m1 = step(state, batch, jax.random.PRNGKey(0))
    s2, m2 = step(s1, batch, jax.random.PRNGKey(1))
    for s in (s1, s2):
        assert _leaves_equal(s.actor, state.actor) and _leaves_equal(s.critic, state.critic)
        assert _leaves_equal(s.alpha, state.alpha) and _leaves_equal(s.target_critic_params, state.target_critic_params)
    assert not _leaves_equal(s1.behaviour.params, state.behaviour.params)
    assert not _leaves_equal(s2.behaviour.params, s1.behaviour.params)
    assert int(s2.step) == 2 and np.isfinite(float(m1["behaviour_loss"]))
    assert np.isnan(float(m1["critic_loss"])) and np.isnan(float(m2["actor_loss"]))  # not computed: NaN
    s3, m3 = step(s2, batch, jax.random.PRNGKey(2))  # warm-up over: everything trains
    for name in ("actor", "critic", "alpha", "behaviour"):
        assert not _leaves_equal(getattr(s3, name).params, getattr(s2, name).params), name
    assert np.isfinite(float(m3["critic_loss"])) and np.isfinite(float(m3["actor_loss"]))


def test_registry_names_and_bad_config():
    assert get_algo("brac-p").config_cls is brac.Config and get_algo("brac_v").config_cls is brac.ValuePenaltyConfig
    assert brac.Config().value_penalty is False and brac.ValuePenaltyConfig().value_penalty is True
    with pytest.raises(ValueError, match="num_samples = 0 is out of range: must be an int >= 1"):
        brac.init(brac.Config(num_samples=0), DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(0), 10)
    with pytest.raises(ValueError, match="alpha = 0.0 is out of range: must be > 0"):
        brac.init(brac.Config(alpha=0.0), DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(0), 10)


# ----------------------------------------------------------------------------- the OOD trap


@pytest.mark.parametrize("cls, seed", [(brac.Config, 0), (brac.ValuePenaltyConfig, 1)])
def test_brac_stays_in_the_support_of_the_ood_trap(cls, seed, tmp_path):
    """The KL penalty keeps the action inside the data: max coordinate <= SUPPORT_HIGH + MARGIN and true reward
    >= 0.7 (the behaviour's mean is 0.5, the in-support optimum 1.0), where naive SAC falls off the cliff.

    Dual alpha with target KL 0.7 (seeds 0-2 of brac_p gave rewards 0.77-0.79, max coordinates -0.35 to -0.12).
    A fixed alpha of 0.1 (the authors' script) leaves the support here: the tanh-Gaussian fit of the uniform
    data puts ~11 % of its mass beyond 0, and a KL constrains the density, not the support. In this bandit
    every transition is terminal, so the value penalty of brac_v has nothing to act on: both variants are
    held in by the actor's penalty. Learning rates are raised as in test_ood_trap.py (only biases learn).
    """
    config = cls(hidden_dims=(64, 64), batch_size=64, actor_lr=1e-2, critic_lr=1e-3, behaviour_lr=1e-2, target_divergence=0.7)
    action = trained_action(config, tmp_path / "brac", steps=3000, seed=seed)
    assert action.max() <= SUPPORT_HIGH + MARGIN, f"left the support: a = {action}"
    assert true_reward(action) >= 0.7, f"a = {action}, reward {true_reward(action)}"
