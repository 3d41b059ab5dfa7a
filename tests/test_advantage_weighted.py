"""The advantage-weighted family: AWR, AWAC and CRR, and the pieces they share.

* Discounted Monte-Carlo returns (``offrl.data.discounted_returns``) against a Python loop over
  episodes with terminals, timeouts, one-step episodes and an unflagged final episode.
* The weight primitives (clipped exponential, binary filter, batch softmax) against numpy.
* Each algorithm's loss functions against numpy references written from the papers' equations,
  the networks applied directly only to obtain their outputs (as in ``tests/test_losses.py``).
* Trained end to end on tiny problems with exact answers:
  - AWR's value on a two-state problem equals the bootstrapped Monte-Carlo fixed point
    (a timed-out loop is worth 1 / (1 - discount); a terminating one is not);
  - on a one-state bandit whose behaviour mean (0.256) differs from the best action (-0.5),
    the weighted policies land on the exact weighted mean of the data actions, sum w a / sum w,
    with the clip included where it binds; CRR's binary filter reaches the best action.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import DataSpec, awac, awr, crr, get_algo
from offrl.data import Dataset, DatasetInfo, discounted_returns, fit_transforms, to_device
from offrl.data.sampling import Batch
from offrl.losses import advantage_weights, batch_softmax_weights, binary_filter

from conftest import make_dataset

RTOL, ATOL = 1e-5, 1e-5


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- Monte-Carlo returns


def loop_returns(rewards, terminals, ends, discount):
    """Reference: a Python loop over episodes and, inside each, over its transitions."""
    n = len(rewards)
    ends = np.asarray(ends, bool).copy()
    ends[-1] = True
    returns, boot, end_index = np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
    start = 0
    for last in np.flatnonzero(ends):
        for t in range(start, last + 1):
            returns[t] = sum(discount ** (k - t) * rewards[k] for k in range(t, last + 1))
            boot[t] = discount ** (last - t + 1) * (1.0 - terminals[last])
            end_index[t] = last
        start = last + 1
    return returns, boot, end_index


def test_discounted_returns_by_hand():
    # episodes: [0, 1, 2] cut by a timeout; [3] one step into a terminal; [4, 5] unflagged data end
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    terminals = np.array([0, 0, 0, 1, 0, 0])
    ends = np.array([0, 0, 1, 1, 0, 0], bool)
    mc = discounted_returns(rewards, terminals, ends, 0.5)
    np.testing.assert_allclose(mc.returns, [2.75, 3.5, 3.0, 4.0, 8.0, 6.0])
    np.testing.assert_allclose(mc.bootstrap_discounts, [0.125, 0.25, 0.5, 0.0, 0.25, 0.5])
    np.testing.assert_array_equal(mc.end_index, [2, 2, 2, 3, 5, 5])
    assert mc.returns.dtype == np.float64


@pytest.mark.parametrize("discount", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_discounted_returns_match_loop(discount):
    rng = np.random.default_rng(int(discount * 100))
    n = 1500
    ends = rng.random(n) < 0.08
    ends[100:110] = True  # a run of one-step episodes
    ends[400:1100] = False  # a 700-step episode
    terminals = (ends & (rng.random(n) < 0.5)).astype(np.float64)
    terminals[105] = 1.0  # a one-step episode into a terminal
    rewards = rng.normal(size=n)
    mc = discounted_returns(rewards, terminals, ends, discount)
    ref = loop_returns(rewards, terminals, ends, discount)
    np.testing.assert_allclose(mc.returns, ref[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mc.bootstrap_discounts, ref[1], rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(mc.end_index, ref[2])
    assert mc.bootstrap_discounts[105] == 0.0 and terminals[105] == 1.0


def test_discounted_returns_follow_the_dataset_episodes():
    ds = make_dataset(n=600, episode_len=50)  # timeouts every 50 steps, one terminal at 300
    mc = discounted_returns(ds.rewards, ds.terminals, ds.episode_ends, 0.99)
    np.testing.assert_array_equal(mc.end_index, ds.episode_end_index)
    ref = loop_returns(ds.rewards.astype(np.float64), ds.terminals, ds.episode_ends, 0.99)
    np.testing.assert_allclose(mc.returns, ref[0], rtol=1e-10, atol=1e-10)
    assert mc.bootstrap_discounts[300] == 0.0  # a one-step episode into the terminal: no bootstrap
    np.testing.assert_allclose(mc.bootstrap_discounts[[298, 299]], [0.99**2, 0.99])  # cut by the timeout at 299


def test_discounted_returns_million_transitions_vectorised():
    """1M transitions with 1000-step episodes and one 100k-step episode: well under a second idle."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    ends = np.zeros(n, bool)
    ends[999::1000] = True
    ends[200_000:300_000] = False
    rewards = rng.normal(size=n)
    start = time.perf_counter()
    mc = discounted_returns(rewards, np.zeros(n), ends, 0.99)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"{elapsed:.1f}s for 1M transitions"
    for t in (0, 123_456, 250_000, n - 1):  # spot checks against the loop on the episode alone
        last = int(mc.end_index[t])
        ref = sum(0.99 ** (k - t) * rewards[k] for k in range(t, min(last + 1, t + 4000)))  # 0.99^4000 ~ 4e-18
        np.testing.assert_allclose(mc.returns[t], ref, rtol=1e-9, atol=1e-9)


def test_discounted_returns_bad_input():
    with pytest.raises(ValueError, match="same length"):
        discounted_returns(np.zeros(3), np.zeros(2), np.ones(3, bool), 0.9)
    with pytest.raises(ValueError, match="discount"):
        discounted_returns(np.zeros(3), np.zeros(3), np.ones(3, bool), 1.5)


# ----------------------------------------------------------------------------- weight primitives


def test_weight_primitives_match_numpy():
    adv = np.array([-30.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 2.0, 4.0, 50.0])
    a32 = jnp.asarray(adv, jnp.float32)
    # exp(A / temperature) clipped at 20 with temperature 1 (AWR, CRR) and 0.5 (beta = 2)
    for beta in (1.0, 2.0):
        ref = np.minimum(np.exp(beta * adv), 20.0)
        np.testing.assert_allclose(np64(advantage_weights(a32, beta, 20.0)), ref, rtol=RTOL, atol=1e-12)
    assert np64(advantage_weights(a32, 1.0, 20.0))[-3:].tolist() == [np.float32(np.exp(2.0)), 20.0, 20.0]  # e^4 = 54.6 > 20
    np.testing.assert_array_equal(np64(binary_filter(a32)), [0, 0, 0, 0, 1, 1, 1, 1, 1])  # A = 0 is filtered out
    small = np.array([-1.0, 0.0, 0.3, 2.0])
    ref = np.exp(0.5 * small) / np.exp(0.5 * small).mean()
    np.testing.assert_allclose(np64(batch_softmax_weights(jnp.asarray(small), 0.5)), ref, rtol=RTOL)
    huge = np64(batch_softmax_weights(a32, 1.0))  # exp(50) would overflow float32 un-normalised
    assert np.isfinite(huge).all() and abs(huge.mean() - 1.0) < 1e-5 and huge[-1] > 8.99


# ----------------------------------------------------------------------------- losses vs numpy

OBS, ACT, B = 3, 2, 16


def np_gaussian_log_prob(mean, log_std, actions):
    mean, log_std, actions = np64(mean), np64(log_std), np64(actions)
    return np.sum(-0.5 * ((actions - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def random_batch(seed: int, extras: dict | None = None) -> Batch:
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    return Batch(observations=f(B, OBS), actions=jnp.clip(f(B, ACT), -1, 1), rewards=f(B),
                 next_observations=f(B, OBS), terminals=jnp.asarray(rng.random(B) < 0.3, jnp.float32),
                 discounts=jnp.full((B,), 0.9, jnp.float32), extras=extras or {})


def awr_batch(seed: int) -> Batch:
    rng = np.random.default_rng(seed + 100)
    extras = {"mc_return": jnp.asarray(3 * rng.normal(size=B), jnp.float32),
              "mc_bootstrap_discount": jnp.asarray(np.where(rng.random(B) < 0.5, 0.0, 0.9 ** rng.integers(1, 5, B)), jnp.float32),
              "mc_last_next_observation": jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32)}
    return random_batch(seed, extras)


@pytest.mark.parametrize("normalize", [True, False])
def test_awr_losses_match_numpy(normalize):
    config = awr.Config(beta=2.0, max_weight=3.0, normalize_advantages=normalize, hidden_dims=(16,))
    state = awr.init(config, DataSpec(OBS, ACT), jax.random.PRNGKey(0), 10)
    batch = awr_batch(1)
    value = lambda x: np64(state.value.apply_fn(state.value.params, x))  # noqa: E731
    # G = discounted sum + discount^(T-t+1) (1 - d_T) V(s'_T)
    g = np64(batch.extras["mc_return"]) + np64(batch.extras["mc_bootstrap_discount"]) * value(batch.extras["mc_last_next_observation"])
    returns = awr.mc_returns(state, batch)
    np.testing.assert_allclose(np64(returns), g, rtol=RTOL, atol=ATOL)
    v = value(batch.observations)
    loss, info = awr.value_loss(config, state, state.value.params, batch, returns)
    np.testing.assert_allclose(float(loss), np.mean((g - v) ** 2), rtol=RTOL)
    adv = g - v
    scaled = (adv - adv.mean()) / (adv.std() + 1e-5) if normalize else adv
    w = np.minimum(np.exp(2.0 * scaled), 3.0)
    assert (w == 3.0).any() and (w < 3.0).any(), "the test must exercise the clip"
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
    ref = -np.mean(w * np_gaussian_log_prob(mean, log_std, batch.actions))
    loss, info = awr.actor_loss(config, state, state.actor.params, batch, returns)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4)
    np.testing.assert_allclose(float(info["adv_weight_mean"]), w.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(info["adv_mean"]), adv.mean(), rtol=1e-4, atol=ATOL)


def test_awr_without_extras_names_the_hook():
    config = awr.Config(hidden_dims=(16,))
    state = awr.init(config, DataSpec(OBS, ACT), jax.random.PRNGKey(0), 10)
    with pytest.raises(KeyError, match="device_extras"):
        awr.update(config, state, random_batch(0), jax.random.PRNGKey(1))


def test_awr_device_extras_from_the_transformed_dataset():
    ds = make_dataset(n=200, episode_len=40)
    algo = get_algo("awr")
    config = awr.Config(discount=0.9)
    arrays = fit_transforms(ds, algo.normalize_observations, "minus_one").apply(ds)
    extras = algo.device_extras(config, arrays, ds)
    ref = loop_returns(np64(arrays["rewards"]), ds.terminals, ds.episode_ends, 0.9)
    np.testing.assert_allclose(extras["mc_return"], ref[0], rtol=1e-5, atol=1e-5)  # scaled rewards (r - 1)
    np.testing.assert_allclose(extras["mc_bootstrap_discount"], ref[1], rtol=1e-6)
    np.testing.assert_array_equal(extras["mc_last_next_observation"], arrays["next_observations"][ds.episode_end_index])
    assert {k: v.dtype for k, v in extras.items()} == dict.fromkeys(awr.EXTRAS, np.float32)


def critic_outputs(state, params, obs, actions) -> np.ndarray:
    return np64(state.critic.apply_fn(params, obs, actions))  # [2, B]


def np_policy_samples(state, obs, key, num):
    """clip(mean + std * eps, -1, 1) with eps ~ N(0, 1) drawn from the same key as the code."""
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    eps = np64(jax.random.normal(key, (obs.shape[0], num, mean.shape[-1])))
    return np.clip(np64(mean)[:, None] + np.exp(np64(log_std))[:, None] * eps, -1, 1)


@pytest.mark.parametrize("module", [awac, crr])
def test_critic_loss_td_target_with_policy_next_action(module):
    config = module.Config(hidden_dims=(16,))
    state = module.init(config, DataSpec(OBS, ACT), jax.random.PRNGKey(0), 10)
    state = state.replace(target_critic_params=module.init(config, DataSpec(OBS, ACT), jax.random.PRNGKey(5), 10).critic.params)
    batch, key = random_batch(2), jax.random.PRNGKey(7)
    next_a = np_policy_samples(state, batch.next_observations, key, 1)[:, 0]
    next_q = critic_outputs(state, state.target_critic_params, batch.next_observations, jnp.asarray(next_a, jnp.float32)).min(axis=0)
    y = np64(batch.rewards) + 0.9 * (1 - np64(batch.terminals)) * next_q
    q = critic_outputs(state, state.critic.params, batch.observations, batch.actions)
    loss, info = module.critic_loss(config, state, state.critic.params, batch, key)
    np.testing.assert_allclose(float(loss), ((q - y) ** 2).mean(axis=1).sum(), rtol=1e-4)


def test_crr_critic_layer_norm_matches_a_numpy_forward_pass():
    from test_ensembles import np_critic

    batch, outputs = random_batch(3), {}
    for layer_norm in (False, True):
        config = crr.Config(hidden_dims=(16, 16), critic_layer_norm=layer_norm)
        state = crr.init(config, DataSpec(OBS, ACT), jax.random.PRNGKey(0), 10)
        outputs[layer_norm] = got = np64(crr.q_value(config, state, batch.observations, batch.actions))
        want = np_critic(state.critic.params, batch.observations, batch.actions, 2, layer_norm=layer_norm).min(axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(outputs[False], outputs[True], atol=1e-3)  # the flag changes the network


def np_advantage(state, batch, key, num, baseline):
    """A = min_i Q_i(s, a) - baseline_j min_i Q_i(s, a_j) over num policy samples a_j."""
    q_data = critic_outputs(state, state.critic.params, batch.observations, batch.actions).min(axis=0)
    samples = np_policy_samples(state, batch.observations, key, num)
    q_pi = np.stack([critic_outputs(state, state.critic.params, batch.observations, jnp.asarray(samples[:, j], jnp.float32)).min(axis=0)
                     for j in range(num)], axis=1)  # [B, num]
    return q_data - baseline(q_pi, axis=1)


@pytest.mark.parametrize("normalize", [True, False])
def test_awac_actor_loss_matches_numpy(normalize):
    config = awac.Config(beta=4.0, normalize_weights=normalize, max_weight=1.5, num_samples=3, hidden_dims=(16,))
    state = awac.init(config, DataSpec(OBS, ACT), jax.random.PRNGKey(0), 10)
    batch, key = random_batch(3), jax.random.PRNGKey(11)
    adv = np_advantage(state, batch, key, 3, np.mean)
    np.testing.assert_allclose(np64(awac.advantage(config, state, batch, key)), adv, rtol=1e-4, atol=ATOL)
    if normalize:  # exp(beta A) / mean_batch exp(beta A)
        w = np.exp(4.0 * (adv - adv.max())) / np.exp(4.0 * (adv - adv.max())).mean()
    else:
        w = np.minimum(np.exp(4.0 * adv), 1.5)
        assert (w == 1.5).any() and (w < 1.5).any(), "the test must exercise the clip"
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
    ref = -np.mean(w * np_gaussian_log_prob(mean, log_std, batch.actions))
    loss, info = awac.actor_loss(config, state, state.actor.params, batch, key)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4)
    np.testing.assert_allclose(float(info["adv_mean"]), adv.mean(), rtol=1e-4, atol=ATOL)


@pytest.mark.parametrize("filter_, advantage", [("exp", "mean"), ("exp", "max"), ("binary", "mean"), ("binary", "max")])
def test_crr_actor_loss_matches_numpy(filter_, advantage):
    clip = 1.5 if advantage == "mean" else 0.5  # A <= 0 mostly under the max baseline: a lower clip to exercise
    config = crr.Config(filter=filter_, advantage=advantage, beta=4.0, max_weight=clip, hidden_dims=(16,))
    state = crr.init(config, DataSpec(OBS, ACT), jax.random.PRNGKey(0), 10)
    batch, key = random_batch(4), jax.random.PRNGKey(13)
    adv = np_advantage(state, batch, key, 4, np.mean if advantage == "mean" else np.max)
    np.testing.assert_allclose(np64(crr.advantage(config, state, batch, key)), adv, rtol=1e-4, atol=ATOL)
    w = (adv > 0).astype(np.float64) if filter_ == "binary" else np.minimum(np.exp(4.0 * adv), clip)
    if filter_ == "binary":
        assert 0 < w.sum() < len(w), "the test must keep some samples and drop others"
    else:
        assert (w == clip).any() and (w < clip).any(), "the test must exercise the clip"
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
    ref = -np.mean(w * np_gaussian_log_prob(mean, log_std, batch.actions))
    loss, info = crr.actor_loss(config, state, state.actor.params, batch, key)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4)
    np.testing.assert_allclose(float(info["adv_weight_mean"]), w.mean(), rtol=1e-5)


@pytest.mark.parametrize("module, fields, match", [
    (crr, {"filter": "hard"}, "filter"), (crr, {"advantage": "median"}, "advantage"), (crr, {"num_samples": 0}, "num_samples"),
    (awac, {"num_samples": 0}, "num_samples"), (awr, {"max_weight": 0.0}, "max_weight"), (awr, {"beta": -1.0}, "beta"),
])
def test_bad_config_values_name_the_field(module, fields, match):
    with pytest.raises(ValueError, match=match):
        module.init(module.Config(**fields), DataSpec(OBS, ACT), jax.random.PRNGKey(0), 10)


# ----------------------------------------------------------------------------- end to end


def train(name: str, config, ds: Dataset, steps: int, seed: int = 0):
    """The same data path as ``offrl.fit`` (transforms, device extras, registry batches), one scan."""
    algo = get_algo(name)
    transforms = fit_transforms(ds, algo.normalize_observations, "none")
    arrays = transforms.apply(ds)
    extras = algo.device_extras(config, arrays, ds) if algo.device_extras is not None else None
    data = to_device(arrays, ds, extras)

    @jax.jit
    def run(key):
        k_init, k_train = jax.random.split(key)
        state = algo.init(config, DataSpec(ds.obs_dim, ds.act_dim), k_init, steps)

        def body(state, k):
            k_batch, k_update = jax.random.split(k)
            return algo.update(config, state, algo.make_batch(config, data, k_batch), k_update)[0], None

        return jax.lax.scan(body, state, jax.random.split(k_train, steps))[0]

    return run(jax.random.PRNGKey(seed)), transforms


GAMMA = 0.9


def two_state_dataset() -> Dataset:
    """State A loops with r = 1 in 5-step episodes cut by timeouts; state B loops with r = 1 in
    3-step episodes that end in a terminal. Observations are one-hot."""
    obs, term, tout = [], [], []
    for _ in range(6):
        obs += [[1.0, 0.0]] * 5
        term += [0] * 5
        tout += [0, 0, 0, 0, 1]
        obs += [[0.0, 1.0]] * 3
        term += [0, 0, 1]
        tout += [0, 0, 0]
    obs = np.array(obs)
    return Dataset.from_arrays(observations=obs, actions=np.zeros((len(obs), 1)), rewards=np.ones(len(obs)),
                               next_observations=obs, terminals=np.array(term), timeouts=np.array(tout),
                               info=DatasetInfo(name="two-state"))


def test_awr_value_bootstraps_timeouts_not_terminals():
    """V(A) = 1 / (1 - 0.9) = 10: the fixed point of V = mean_t [G_t + 0.9^(T-t+1) V]. V(B) = the mean of
    the 3-, 2- and 1-step returns, (2.71 + 1.9 + 1) / 3 = 1.87. Without the bootstrap V(A) would be 2.63;
    bootstrapping through B's terminal would give V(B) = 10."""
    v_a = 1.0 / (1.0 - GAMMA)
    v_b = np.mean([(1 - GAMMA**k) / (1 - GAMMA) for k in (3, 2, 1)])
    config = awr.Config(discount=GAMMA, hidden_dims=(32, 32), batch_size=32, value_lr=3e-3)
    state, transforms = train("awr", config, two_state_dataset(), 2000)
    v = np64(state.value.apply_fn(state.value.params, transforms.normalize_obs(np.eye(2, dtype=np.float32))))
    assert abs(v[0] - v_a) < 0.3 and abs(v[1] - v_b) < 0.1, f"V = {np.round(v, 3)}, expected {v_a:.2f}, {v_b:.3f}"


BEST = -0.5


def bandit_dataset() -> Dataset:
    """One state, terminal after one step, r(a) = 1 - (a + 0.5)^2 on a grid of actions in [-1, 1]; actions
    >= 0 appear 3 times: behaviour mean 0.256, best action -0.5 (as tests/test_known_answers.py)."""
    grid = np.round(np.linspace(-1.0, 1.0, 21), 6)
    actions = np.concatenate([grid, np.repeat(grid[grid >= 0], 2)])
    n = len(actions)
    return Dataset.from_arrays(observations=np.zeros((n, 1)), actions=actions[:, None], rewards=1.0 - (actions + 0.5) ** 2,
                               terminals=np.ones(n), next_observations=np.zeros((n, 1)),
                               info=DatasetInfo(name="bandit", action_low=(-1.0,), action_high=(1.0,)))


def weighted_mean(weights: np.ndarray) -> float:
    """The weighted Gaussian-likelihood optimum of a bias-only policy: sum w a / sum w over the data."""
    actions = bandit_dataset().actions[:, 0].astype(np.float64)
    return float((weights * actions).sum() / weights.sum())


def policy_action(name, config, steps=2000) -> float:
    state, transforms = train(name, config, bandit_dataset(), steps)
    obs = jnp.asarray(transforms.normalize_obs(np.zeros((1, 1), np.float32)))
    return float(get_algo(name).act(config, state, obs, jax.random.PRNGKey(0), True)[0, 0])


R = 1.0 - (bandit_dataset().actions[:, 0].astype(np.float64) + 0.5) ** 2
BEHAVIOUR = float(bandit_dataset().actions.mean())
SMALL = dict(hidden_dims=(32, 32), batch_size=64, actor_lr=3e-3)


def test_bandit_reference_values_are_what_the_tests_claim():
    assert abs(BEHAVIOUR - 0.256) < 1e-3
    # AWR, beta 10, clip 20: A = r - mean r (V regresses on r); the clip binds and moves the optimum
    clipped = weighted_mean(np.minimum(np.exp(10 * (R - R.mean())), 20.0))
    assert abs(clipped - (-0.196)) < 1e-3 and abs(weighted_mean(np.exp(10 * R)) - (-0.474)) < 1e-3
    # exp(3 A) with a baseline that is the same for every action in expectation: the clip-free optimum
    assert abs(weighted_mean(np.exp(3 * R)) - (-0.2945)) < 1e-3


def test_awr_bandit_lands_on_the_clipped_weighted_mean():
    """beta 10, max_weight 20, no standardisation: -0.196 exactly (the unclipped answer is -0.474).
    Observed -0.174 .. -0.196 over 4 seeds; tolerance 0.05 (a V off by 0.02 moves the answer ~0.03)."""
    target = weighted_mean(np.minimum(np.exp(10 * (R - R.mean())), 20.0))
    config = awr.Config(beta=10.0, max_weight=20.0, normalize_advantages=False, value_lr=3e-3, **SMALL)
    pi = policy_action("awr", config)
    assert abs(pi - target) < 0.05, f"AWR {pi:.3f} vs the clipped weighted mean {target:.3f}"


def test_awr_bandit_default_standardised_advantages():
    """Default (A standardised over each batch, beta 1, clip 20): near the population version, -0.113."""
    z = (R - R.mean()) / R.std()
    target = weighted_mean(np.minimum(np.exp(z), 20.0))
    pi = policy_action("awr", awr.Config(value_lr=3e-3, **SMALL))
    assert abs(pi - target) < 0.08 and pi < BEHAVIOUR - 0.25, f"AWR {pi:.3f} vs {target:.3f}"


@pytest.mark.parametrize("normalize", [False, True])
def test_awac_bandit_moves_to_the_weighted_mean(normalize):
    """exp(3 A) with A = Q - V^pi: V^pi is one policy sample's Q, independent of the data action, so the
    expected weights are proportional to exp(3 r) and the optimum is -0.2945 (max_weight 1e4 never binds).
    Batch-softmax weights (the default normalisation) divide by the batch's own sum: an O(1/B) bias
    (observed -0.23 .. -0.26), hence the wider tolerance."""
    target = weighted_mean(np.exp(3 * R))
    config = awac.Config(beta=3.0, normalize_weights=normalize, max_weight=1e4, critic_lr=3e-3, **SMALL)
    pi = policy_action("awac", config)
    assert abs(pi - target) < (0.1 if normalize else 0.06), f"AWAC {pi:.3f} vs {target:.3f}"


def test_crr_exp_bandit_moves_to_the_weighted_mean():
    """exp(3 A) clipped at 20 with the 4-sample mean baseline: the clip rarely binds near the optimum,
    -0.2945 (observed -0.285 .. -0.300)."""
    pi = policy_action("crr", crr.Config(beta=3.0, critic_lr=3e-3, **SMALL))
    assert abs(pi - weighted_mean(np.exp(3 * R))) < 0.06, f"CRR exp {pi:.3f}"


def test_crr_binary_bandit_reaches_the_best_action():
    """1[Q(a) > mean_j Q(a_j)] keeps the data actions better than the current policy; the kept set is
    symmetric around -0.5 once the policy is, so the iteration reaches the best action (observed -0.49 .. -0.50)."""
    pi = policy_action("crr", crr.Config(filter="binary", critic_lr=3e-3, **SMALL))
    assert abs(pi - BEST) < 0.05, f"CRR binary {pi:.3f} vs best action {BEST}"
