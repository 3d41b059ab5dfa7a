"""Loss primitives and each algorithm's loss functions against independent numpy references.

The references below are written from the papers' equations, not from the library code: numpy in
float64, with the networks applied directly (``Module.apply``) only to obtain their outputs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import DataSpec, bc, iql, td3bc
from offrl.data.sampling import Batch
from offrl.losses import advantage_weights, expectile_loss, polyak_update, td3bc_actor_loss, td_target
from offrl.nets import Critic, DeterministicActor, GaussianActor, ValueNet, gaussian_log_prob

RTOL = 1e-5
ATOL = 1e-6


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- primitives


def ref_expectile(u: np.ndarray, tau: float) -> np.ndarray:
    """L_tau(u) = |tau - 1(u < 0)| u^2."""
    return np.abs(tau - (u < 0).astype(np.float64)) * u**2


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.9, 0.99, 0.1])
def test_expectile_loss_matches_numpy(tau):
    u = np.array([-3.0, -1.0, -0.25, 0.0, 0.25, 1.0, 3.0])
    got = np64(expectile_loss(jnp.asarray(u, jnp.float32), tau))
    np.testing.assert_allclose(got, ref_expectile(u, tau), rtol=RTOL, atol=ATOL)
    # Hand-computed values: positive diffs weigh tau, negative 1 - tau, zero gives zero loss.
    np.testing.assert_allclose(got[[0, 3, 6]], [(1 - tau) * 9.0, 0.0, tau * 9.0], rtol=RTOL, atol=ATOL)


def test_expectile_loss_half_is_half_mse_and_asymmetric():
    u = jnp.array([-2.0, 2.0])
    np.testing.assert_allclose(np64(expectile_loss(u, 0.5)), [2.0, 2.0], rtol=RTOL)
    lo, hi = np64(expectile_loss(u, 0.9))
    np.testing.assert_allclose([lo, hi], [0.4, 3.6], rtol=RTOL)


def test_expectile_minimiser_is_the_expectile():
    """argmin_v mean L_tau(q - v) by gradient descent equals the numpy expectile of q."""
    q = np.array([0.0, 1.0, 1.0, 4.0, 10.0])
    tau = 0.8

    def ref_expectile_value(q, tau):  # solve tau * sum (q-v)_+ = (1-tau) * sum (v-q)_+ by bisection
        lo, hi = q.min(), q.max()
        for _ in range(100):
            v = 0.5 * (lo + hi)
            g = tau * np.clip(q - v, 0, None).sum() - (1 - tau) * np.clip(v - q, 0, None).sum()
            lo, hi = (v, hi) if g > 0 else (lo, v)
        return 0.5 * (lo + hi)

    loss = lambda v: expectile_loss(jnp.asarray(q) - v, tau).mean()
    grad = jax.jit(jax.grad(loss))
    v = jnp.asarray(0.0)
    for _ in range(3000):
        v = v - 0.5 * grad(v)
    np.testing.assert_allclose(float(v), ref_expectile_value(q, tau), atol=1e-3)
    assert float(v) > q.mean() + 1.0  # tau = 0.8 sits well above the mean (3.2)


def test_td_target_matches_numpy():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=6), rng.normal(size=6)
    d = np.array([0, 1, 0, 1, 0, 0], np.float64)
    g = np.array([0.99, 0.99, 0.9, 0.5, 0.99**3, 1.0])
    got = td_target(*(jnp.asarray(x, jnp.float32) for x in (r, d, g, v)))
    np.testing.assert_allclose(np64(got), r + g * (1 - d) * v, rtol=RTOL, atol=ATOL)
    # terminal rows are exactly the reward
    np.testing.assert_allclose(np64(got)[d == 1], r[d == 1], rtol=RTOL)


def test_advantage_weights_match_numpy_and_clip():
    a = np.array([-5.0, -0.5, 0.0, 0.3, 1.0, 2.0, 50.0])
    for beta, max_w in [(3.0, 100.0), (1.0, 5.0), (10.0, 100.0)]:
        got = np64(advantage_weights(jnp.asarray(a, jnp.float32), beta, max_w))
        np.testing.assert_allclose(got, np.minimum(np.exp(beta * a), max_w), rtol=1e-5)
        assert got.max() == pytest.approx(max_w)  # A = 50 is clipped
    # default max_weight is 100 (IQL), and no overflow to inf
    got = np64(advantage_weights(jnp.array([1000.0]), 3.0))
    assert got[0] == pytest.approx(100.0)
    assert np64(advantage_weights(jnp.array([0.0]), 3.0))[0] == pytest.approx(1.0)


def test_td3bc_actor_loss_value_and_lambda():
    rng = np.random.default_rng(1)
    B, A = 8, 3
    q = rng.normal(loc=0.5, scale=2.0, size=B)  # mixed signs: mean|Q| != |mean Q|
    pi = rng.uniform(-1, 1, size=(B, A))
    a = rng.uniform(-1, 1, size=(B, A))
    alpha = 2.5
    lam_ref = alpha / np.mean(np.abs(q))
    loss_ref = -lam_ref * np.mean(q) + np.mean((pi - a) ** 2)
    loss, lam = td3bc_actor_loss(*(jnp.asarray(x, jnp.float32) for x in (q, pi, a)), alpha)
    np.testing.assert_allclose(float(lam), lam_ref, rtol=RTOL)
    np.testing.assert_allclose(float(loss), loss_ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("positive", [True, False])
def test_td3bc_lambda_carries_no_gradient(positive):
    """d loss / d Q_b = -lambda / B exactly: lambda is a constant (stop_gradient), as in the paper.

    With all-positive Q, a lambda that carried gradient would make -lambda * mean Q = -alpha a
    constant, i.e. a zero gradient: the test would catch it.
    """
    rng = np.random.default_rng(2)
    B, A = 6, 2
    q = rng.uniform(0.5, 3.0, size=B) if positive else rng.normal(size=B)
    pi, a = rng.uniform(-1, 1, size=(B, A)), rng.uniform(-1, 1, size=(B, A))
    alpha = 2.5
    q_j, pi_j, a_j = (jnp.asarray(x, jnp.float32) for x in (q, pi, a))
    dq = jax.grad(lambda q_: td3bc_actor_loss(q_, pi_j, a_j, alpha)[0])(q_j)
    lam = alpha / np.mean(np.abs(q))
    np.testing.assert_allclose(np64(dq), np.full(B, -lam / B), rtol=1e-5)
    dpi = jax.grad(lambda p_: td3bc_actor_loss(q_j, p_, a_j, alpha)[0])(pi_j)
    np.testing.assert_allclose(np64(dpi), 2 * (pi - a) / (B * A), rtol=1e-5, atol=ATOL)


def ref_gaussian_log_prob(mean, log_std, x):
    var = np.exp(2 * log_std)
    return np.sum(-0.5 * np.log(2 * np.pi * var) - (x - mean) ** 2 / (2 * var), axis=-1)


def test_gaussian_log_prob_matches_numpy():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(5, 3))
    log_std = rng.uniform(-3, 1, size=(5, 3))
    x = rng.normal(size=(5, 3))
    got = gaussian_log_prob(*(jnp.asarray(v, jnp.float32) for v in (mean, log_std, x)))
    assert got.shape == (5,)
    np.testing.assert_allclose(np64(got), ref_gaussian_log_prob(mean, log_std, x), rtol=1e-5, atol=1e-5)
    # standard normal at 0 in one dimension: -0.5 log(2 pi)
    one = gaussian_log_prob(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    np.testing.assert_allclose(float(one[0]), -0.5 * np.log(2 * np.pi), rtol=1e-6)


def test_polyak_update_matches_numpy():
    rng = np.random.default_rng(4)
    online = {"a": rng.normal(size=(3, 2)), "b": {"c": rng.normal(size=4)}}
    target = {"a": rng.normal(size=(3, 2)), "b": {"c": rng.normal(size=4)}}
    tau = 0.005
    j = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)
    got = polyak_update(j(online), j(target), tau)
    for path in (("a",), ("b", "c")):
        o, t, g = online, target, got
        for k in path:
            o, t, g = o[k], t[k], g[k]
        np.testing.assert_allclose(np64(g), tau * o + (1 - tau) * t, rtol=1e-5, atol=1e-6)
    # tau = 1 copies the online parameters, tau = 0 keeps the target
    np.testing.assert_allclose(np64(polyak_update(j(online), j(target), 1.0)["a"]), online["a"], rtol=1e-6)
    np.testing.assert_allclose(np64(polyak_update(j(online), j(target), 0.0)["a"]), target["a"], rtol=1e-6)


# ----------------------------------------------------------------------------- algorithm losses

OBS_DIM, ACT_DIM, B = 3, 2, 7
HIDDEN = (16, 16)
SPEC = DataSpec(obs_dim=OBS_DIM, action_dim=ACT_DIM)


def make_batch(seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    f = lambda x: jnp.asarray(x, jnp.float32)
    return Batch(
        observations=f(rng.normal(size=(B, OBS_DIM))),
        actions=f(rng.uniform(-0.9, 0.9, size=(B, ACT_DIM))),
        rewards=f(rng.normal(size=B)),
        next_observations=f(rng.normal(size=(B, OBS_DIM))),
        terminals=f([0, 1, 0, 0, 1, 0, 0]),
        # per-sample bootstrap factors (as n-step batches have), deliberately != config.discount
        discounts=f([0.9, 0.9, 0.81, 0.729, 0.9, 0.5, 0.9]),
    )


def distinct_params(net, key, *inputs):
    """Fresh parameters from another key, so target and online networks differ."""
    return net.init(key, *inputs)


@pytest.fixture(scope="module")
def iql_setup():
    config = iql.Config(hidden_dims=HIDDEN, expectile=0.8, beta=2.0, max_weight=7.0, discount=0.3)
    state = jax.jit(lambda k: iql.init(config, SPEC, k, 100))(jax.random.PRNGKey(0))
    obs, act = jnp.zeros((1, OBS_DIM)), jnp.zeros((1, ACT_DIM))
    target = distinct_params(Critic(HIDDEN), jax.random.PRNGKey(123), obs, act)
    return config, state.replace(target_critic_params=target)


def test_iql_value_loss_uses_min_of_target_qs(iql_setup):
    config, state = iql_setup
    batch = make_batch()
    q_t = np64(Critic(HIDDEN).apply(state.target_critic_params, batch.observations, batch.actions))  # (2, B)
    v = np64(ValueNet(HIDDEN).apply(state.value.params, batch.observations))
    assert q_t.shape == (2, B)
    assert np.abs(q_t[0] - q_t[1]).min() > 1e-4  # the two heads differ, so min matters
    ref = ref_expectile(q_t.min(axis=0) - v, config.expectile).mean()
    q = iql.target_q(state, batch)
    np.testing.assert_allclose(np64(q), q_t.min(axis=0), rtol=1e-6)
    loss, info = iql.value_loss(config, state, state.value.params, batch, q)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    # the reference distinguishes the alternatives (a mean of heads, or the online critic)
    alt_mean = ref_expectile(q_t.mean(axis=0) - v, config.expectile).mean()
    q_online = np64(Critic(HIDDEN).apply(state.critic.params, batch.observations, batch.actions)).min(axis=0)
    alt_online = ref_expectile(q_online - v, config.expectile).mean()
    assert abs(alt_mean - ref) > 1e-3 * abs(ref) and abs(alt_online - ref) > 1e-3 * abs(ref)


def test_iql_critic_loss_targets_value_of_next_state(iql_setup):
    config, state = iql_setup
    batch = make_batch(1)
    next_v = np64(ValueNet(HIDDEN).apply(state.value.params, batch.next_observations))
    y = np64(batch.rewards) + np64(batch.discounts) * (1 - np64(batch.terminals)) * next_v
    q = np64(Critic(HIDDEN).apply(state.critic.params, batch.observations, batch.actions))
    ref = ((q - y[None]) ** 2).mean(axis=1).sum()
    loss, _ = iql.critic_loss(config, state, state.critic.params, batch)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)


def test_iql_actor_loss_is_advantage_weighted_log_likelihood(iql_setup):
    config, state = iql_setup
    batch = make_batch(2)
    q_t = np64(Critic(HIDDEN).apply(state.target_critic_params, batch.observations, batch.actions)).min(axis=0)
    v = np64(ValueNet(HIDDEN).apply(state.value.params, batch.observations))
    w = np.minimum(np.exp(config.beta * (q_t - v)), config.max_weight)
    mean, _ = GaussianActor(HIDDEN, ACT_DIM).apply(state.actor.params, batch.observations)
    # The log-std from the raw parameter, bounded as the config says (default sigmoid: -5 + 7 sigmoid(theta)).
    theta = np64(state.actor.params["params"]["log_std"])
    assert config.log_std_bound == "sigmoid"
    log_std = np.broadcast_to(-5.0 + 7.0 / (1.0 + np.exp(-theta)), mean.shape)
    ref = -(w * ref_gaussian_log_prob(np64(mean), log_std, np64(batch.actions))).mean()
    loss, info = iql.actor_loss(config, state, state.actor.params, batch, iql.target_q(state, batch), jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    np.testing.assert_allclose(float(info["adv_weight_mean"]), w.mean(), rtol=1e-5)


@pytest.fixture(scope="module")
def td3bc_setup():
    config = td3bc.Config(hidden_dims=HIDDEN, policy_noise=0.0, discount=0.3, alpha=2.5)
    state = jax.jit(lambda k: td3bc.init(config, SPEC, k, 100))(jax.random.PRNGKey(0))
    obs, act = jnp.zeros((1, OBS_DIM)), jnp.zeros((1, ACT_DIM))
    state = state.replace(
        target_critic_params=distinct_params(Critic(HIDDEN), jax.random.PRNGKey(7), obs, act),
        target_actor_params=distinct_params(DeterministicActor(HIDDEN, ACT_DIM), jax.random.PRNGKey(8), obs),
    )
    return config, state


def test_td3bc_critic_loss_clipped_double_q_target(td3bc_setup):
    """policy_noise = 0: y = r + discounts (1 - d) min_i Q'_i(s', pi'(s')), deterministic."""
    config, state = td3bc_setup
    batch = make_batch(3)
    next_a = np64(DeterministicActor(HIDDEN, ACT_DIM).apply(state.target_actor_params, batch.next_observations))
    next_q = np64(Critic(HIDDEN).apply(state.target_critic_params, batch.next_observations, next_a))  # (2, B)
    assert np.abs(next_q[0] - next_q[1]).min() > 1e-4
    y = np64(batch.rewards) + np64(batch.discounts) * (1 - np64(batch.terminals)) * next_q.min(axis=0)
    q = np64(Critic(HIDDEN).apply(state.critic.params, batch.observations, batch.actions))
    ref = ((q - y[None]) ** 2).mean(axis=1).sum()
    loss, _ = td3bc.critic_loss(config, state, state.critic.params, batch, jax.random.PRNGKey(5))
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    # config.discount (0.3) differs from every batch discount, so using it instead would fail above;
    # a target built from the max of the heads is measurably different
    y_max = np64(batch.rewards) + np64(batch.discounts) * (1 - np64(batch.terminals)) * next_q.max(axis=0)
    assert abs(((q - y_max[None]) ** 2).mean(axis=1).sum() - ref) > 1e-3 * ref


def test_td3bc_actor_loss_uses_first_online_critic(td3bc_setup):
    config, state = td3bc_setup
    batch = make_batch(4)
    pi = np64(DeterministicActor(HIDDEN, ACT_DIM).apply(state.actor.params, batch.observations))
    q1 = np64(Critic(HIDDEN).apply(state.critic.params, batch.observations, pi))[0]
    lam = config.alpha / np.abs(q1).mean()
    ref = -lam * q1.mean() + np.mean((pi - np64(batch.actions)) ** 2)
    loss, info = td3bc.actor_loss(config, state, state.actor.params, batch)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    np.testing.assert_allclose(float(info["lambda"]), lam, rtol=1e-5)


def test_td3bc_delayed_actor_and_target_updates(td3bc_setup):
    """Actor and targets move only on steps where step % policy_freq == 0 (after the critic step)."""
    config, state = td3bc_setup
    config = dataclasses.replace(config, policy_freq=2, tau=0.5)
    batch = make_batch(5)
    leaf = lambda p: np64(jax.tree.leaves(p)[0])
    update = jax.jit(lambda s, k: td3bc.update(config, s, batch, k))
    s1, m1 = update(state, jax.random.PRNGKey(0))  # step 0 -> 1: 1 % 2 != 0
    np.testing.assert_array_equal(leaf(s1.actor.params), leaf(state.actor.params))
    np.testing.assert_array_equal(leaf(s1.target_critic_params), leaf(state.target_critic_params))
    assert np.isnan(float(m1["actor_loss"]))
    s2, m2 = update(s1, jax.random.PRNGKey(1))  # step 1 -> 2: actor step
    assert not np.allclose(leaf(s2.actor.params), leaf(s1.actor.params))
    np.testing.assert_allclose(leaf(s2.target_critic_params),
                               0.5 * leaf(s2.critic.params) + 0.5 * leaf(s1.target_critic_params), rtol=1e-5, atol=1e-6)
    assert np.isfinite(float(m2["actor_loss"]))


@pytest.mark.parametrize("policy", ["deterministic", "gaussian"])
def test_bc_loss_matches_numpy(policy):
    config = bc.Config(policy=policy, hidden_dims=HIDDEN)
    state = jax.jit(lambda k: bc.init(config, SPEC, k, 10))(jax.random.PRNGKey(0))
    batch = make_batch(6)
    a = np64(batch.actions)
    if policy == "gaussian":
        mean, log_std = GaussianActor(HIDDEN, ACT_DIM).apply(state.actor.params, batch.observations)
        ref = -ref_gaussian_log_prob(np64(mean), np64(log_std), a).mean()
    else:
        pred = np64(DeterministicActor(HIDDEN, ACT_DIM).apply(state.actor.params, batch.observations))
        ref = np.mean((pred - a) ** 2)
    loss, _ = bc.bc_loss(config, state.actor, state.actor.params, batch)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
