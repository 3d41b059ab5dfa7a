"""SAC: known answers for the tanh-Gaussian policy and the losses; the online loop and its replay buffer.

The references are numpy in float64 written from Haarnoja et al. (2018): the networks are applied
directly (``Module.apply``) only to obtain their outputs, and the Gaussian noise is redrawn with the
same key (``jax.random.normal``) so the sample is the same one.
"""

from __future__ import annotations

import dataclasses
import json
import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import offrl
from offrl.algos import DataSpec, sac
from offrl.data.sampling import Batch
from offrl.nets import TanhGaussianActor, tanh_gaussian_sample_and_log_prob
from offrl.online import buffer_add, buffer_init, buffer_sample, train_online

RTOL, ATOL = 1e-4, 1e-4


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def ref_tanh_gaussian_log_prob(mean, log_std, eps):
    """Change of variables a = tanh(u), u = mean + std eps: log N(u; mean, std) - sum log |d tanh(u)/du|.

    d tanh(u)/du = 1 / cosh(u)^2, so the Jacobian term is -2 log cosh(u) (no tanh involved).
    """
    mean, log_std, eps = np64(mean), np64(log_std), np64(eps)
    std = np.exp(log_std)
    u = mean + std * eps
    log_normal = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    return np.tanh(u), np.sum(log_normal + 2.0 * np.log(np.cosh(u)), axis=-1)


# ----------------------------------------------------------------------------- tanh-squashed Gaussian


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    rng = np.random.default_rng(0)
    mean = rng.uniform(-2, 2, size=(64, 3)).astype(np.float32)
    log_std = rng.uniform(-2, 0.5, size=(64, 3)).astype(np.float32)
    key = jax.random.PRNGKey(7)
    actions, log_probs = tanh_gaussian_sample_and_log_prob(jnp.asarray(mean), jnp.asarray(log_std), key)
    ref_actions, ref_log_probs = ref_tanh_gaussian_log_prob(mean, log_std, jax.random.normal(key, mean.shape))
    assert actions.shape == (64, 3) and log_probs.shape == (64,)
    np.testing.assert_allclose(np64(actions), ref_actions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np64(log_probs), ref_log_probs, rtol=RTOL, atol=ATOL)
    # In 1-D: p(a) = N(atanh a; mean, std) / (1 - a^2), written with the action instead of u.
    one_a, one_logp = tanh_gaussian_sample_and_log_prob(jnp.asarray(mean[:, :1]), jnp.asarray(log_std[:, :1]), key)
    a, m, s = np64(one_a)[:, 0], np64(mean)[:, 0], np.exp(np64(log_std)[:, 0])
    keep = np.abs(a) < 0.999  # atanh of a float32 action is inaccurate next to +-1
    u = np.arctanh(a[keep])
    density = np.exp(-0.5 * ((u - m[keep]) / s[keep]) ** 2) / (s[keep] * math.sqrt(2 * math.pi)) / (1 - a[keep] ** 2)
    assert keep.sum() > 50
    np.testing.assert_allclose(np64(one_logp)[keep], np.log(density), rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_log_prob_is_stable_when_saturated():
    """|u| = 12: 1 - tanh(u)^2 is 0 in float32, the naive formula gives +inf; the stable one stays exact."""
    mean = jnp.array([[12.0], [-12.0], [30.0]])
    log_std = jnp.full((3, 1), -5.0)
    key = jax.random.PRNGKey(1)
    actions, log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, key)
    naive_u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    assert np.isinf(np64(jnp.log(1 - jnp.tanh(naive_u) ** 2))).all()  # what the stable formula avoids
    _, ref = ref_tanh_gaussian_log_prob(mean, log_std, jax.random.normal(key, mean.shape))
    assert np.isfinite(np64(log_probs)).all()
    np.testing.assert_allclose(np64(log_probs), ref, rtol=1e-5)
    assert np.all(np.abs(np64(actions)) <= 1.0)
    grads = jax.grad(lambda m: tanh_gaussian_sample_and_log_prob(m, log_std, key)[1].sum())(mean)
    assert np.isfinite(np64(grads)).all()


def test_tanh_gaussian_density_integrates_to_one():
    """Integrate exp(log pi(a)) over sorted samples of a 1-D policy: the Jacobian makes it a density."""
    n = 100_000
    mean, log_std = jnp.full((n, 1), 0.7), jnp.full((n, 1), 0.3)
    actions, log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, jax.random.PRNGKey(3))
    order = np.argsort(np64(actions)[:, 0])
    a, p = np64(actions)[order, 0], np.exp(np64(log_probs)[order])
    assert abs(np.trapezoid(p, a) - 1.0) < 0.01


def test_tanh_gaussian_actor_shapes_and_log_std_clip():
    net = TanhGaussianActor((16,), 2, log_std_min=-3.0, log_std_max=1.0)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    mean, log_std = net.apply(params, 100.0 * jax.random.normal(jax.random.PRNGKey(1), (32, 4)))
    assert mean.shape == log_std.shape == (32, 2)
    assert float(log_std.min()) >= -3.0 and float(log_std.max()) <= 1.0


# ----------------------------------------------------------------------------- SAC losses


OBS_DIM, ACT_DIM, B = 4, 2, 16


def _setup(config=None, temperature=0.37):
    config = config or sac.Config(hidden_dims=(16, 16))
    state = sac.init(config, DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(0), 10)
    log_t = jnp.full((), math.log(temperature), jnp.float32)
    state = state.replace(temperature=state.temperature.replace(params={"params": {"log_temperature": log_t}}))
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


def _policy_sample(state, params, observations, key):
    mean, log_std = state.actor.apply_fn(params, observations)
    return ref_tanh_gaussian_log_prob(mean, log_std, jax.random.normal(key, mean.shape))


@pytest.mark.parametrize("backup_entropy", [True, False])
def test_critic_loss_matches_numpy(backup_entropy):
    config, state, batch = _setup(sac.Config(hidden_dims=(16, 16), backup_entropy=backup_entropy))
    key = jax.random.PRNGKey(5)
    loss, info = sac.critic_loss(config, state, state.critic.params, batch, key)
    next_a, next_logp = _policy_sample(state, state.actor.params, batch.next_observations, key)
    next_q = np64(state.critic.apply_fn(state.target_critic_params, batch.next_observations, jnp.asarray(next_a, jnp.float32))).min(0)
    soft = next_q - 0.37 * next_logp if backup_entropy else next_q
    y = np64(batch.rewards) + 0.99 * (1 - np64(batch.terminals)) * soft
    q = np64(state.critic.apply_fn(state.critic.params, batch.observations, batch.actions))
    np.testing.assert_allclose(float(loss), ((q - y) ** 2).mean(axis=1).sum(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(info["q_mean"]), q.mean(), rtol=RTOL, atol=ATOL)


def test_actor_loss_matches_numpy():
    config, state, batch = _setup()
    key = jax.random.PRNGKey(6)
    loss, info = sac.actor_loss(config, state, state.actor.params, batch, key)
    a, logp = _policy_sample(state, state.actor.params, batch.observations, key)
    q = np64(state.critic.apply_fn(state.critic.params, batch.observations, jnp.asarray(a, jnp.float32))).min(0)
    np.testing.assert_allclose(float(loss), np.mean(0.37 * logp - q), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(info["entropy"]), -logp.mean(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("target, entropy", [(None, 0.8), (None, -3.5), (0.5, 0.2)])
def test_temperature_loss_known_answer(target, entropy):
    """L = T (H - target), target = -action_dim by default; dL/dlog T = L; T falls while H > target."""
    config, state, batch = _setup(sac.Config(hidden_dims=(16, 16), target_entropy=target), temperature=0.37)
    goal = -float(ACT_DIM) if target is None else target
    loss, info = sac.temperature_loss(config, state, state.temperature.params, batch, jnp.float32(entropy))
    np.testing.assert_allclose(float(loss), 0.37 * (entropy - goal), rtol=1e-5)
    np.testing.assert_allclose(float(info["temperature"]), 0.37, rtol=1e-6)
    grad = jax.grad(lambda p: sac.temperature_loss(config, state, p, batch, jnp.float32(entropy))[0])(state.temperature.params)
    g = float(grad["params"]["log_temperature"])
    np.testing.assert_allclose(g, 0.37 * (entropy - goal), rtol=1e-5)


def test_fixed_temperature_and_deterministic_act():
    config, state, batch = _setup(sac.Config(hidden_dims=(16, 16), learn_temperature=False))
    new_state, metrics = jax.jit(lambda s, b, k: sac.update(config, s, b, k))(state, batch, jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(new_state.temperature.apply_fn(new_state.temperature.params)), 0.37, rtol=1e-6)
    learning = dataclasses.replace(config, learn_temperature=True)
    learned, _ = jax.jit(lambda s, b, k: sac.update(learning, s, b, k))(state, batch, jax.random.PRNGKey(0))
    assert float(learned.temperature.apply_fn(learned.temperature.params)) != pytest.approx(0.37, abs=1e-6)
    assert {"critic_loss", "q_mean", "actor_loss", "entropy", "temperature_loss", "temperature"} <= set(metrics)
    mean, _ = state.actor.apply_fn(state.actor.params, batch.observations)
    np.testing.assert_allclose(np64(sac.act(config, state, batch.observations, jax.random.PRNGKey(0), True)), np.tanh(np64(mean)), rtol=1e-6, atol=1e-6)
    stochastic = np64(sac.act(config, state, batch.observations, jax.random.PRNGKey(0), False))
    assert np.all(np.abs(stochastic) <= 1.0) and not np.allclose(stochastic, np.tanh(np64(mean)))


# ----------------------------------------------------------------------------- replay buffer


def _rows(start: int, n: int):
    idx = np.arange(start, start + n, dtype=np.float32)
    return (np.stack([idx, -idx], 1), idx[:, None] / 100, idx, np.stack([idx + 0.5, -idx], 1), (idx % 2 == 0).astype(np.float32))


def test_buffer_add_wraps_around():
    buf = buffer_init(5, 2, 1)
    buf = buffer_add(buf, *_rows(0, 3))
    assert int(buf.pointer) == 3 and int(buf.size) == 3
    buf = buffer_add(buf, *_rows(3, 4))  # rows 3, 4 fill the end; 5, 6 overwrite the oldest (0, 1)
    assert int(buf.pointer) == 2 and int(buf.size) == 5
    np.testing.assert_array_equal(np64(buf.rewards), [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(np64(buf.observations)[:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(np64(buf.next_observations)[:, 0], [5.5, 6.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(np64(buf.actions)[:, 0], [0.05, 0.06, 0.02, 0.03, 0.04], rtol=1e-6)
    np.testing.assert_array_equal(np64(buf.terminals), [0, 1, 1, 0, 1])
    buf = buffer_add(buf, *_rows(7, 5))  # exactly one full turn
    assert int(buf.pointer) == 2 and int(buf.size) == 5
    np.testing.assert_array_equal(np64(buf.rewards), [10, 11, 7, 8, 9])
    with pytest.raises(ValueError, match="capacity"):
        buffer_add(buf, *_rows(0, 6))


def test_buffer_sample_only_filled_rows():
    buf = buffer_add(buffer_init(100, 2, 1), *_rows(1, 10))  # rewards 1..10, rows 10..99 still zero
    batch = jax.jit(lambda b, k: buffer_sample(b, k, 2000, 0.9))(buf, jax.random.PRNGKey(0))
    rewards = np64(batch.rewards)
    assert set(np.unique(rewards)) == set(range(1, 11))  # all ten, and nothing else
    np.testing.assert_array_equal(np64(batch.observations)[:, 0], rewards)  # rows stay aligned
    np.testing.assert_array_equal(np64(batch.next_observations)[:, 0], rewards + 0.5)
    np.testing.assert_allclose(np64(batch.discounts), 0.9, rtol=1e-7)


# ----------------------------------------------------------------------------- online loop


class _Countdown(gym.Env):
    """obs = [t, episode]; odd episodes terminate at t = 3, even ones run into the 5-step time limit."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def __init__(self):
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return np.array([0.0, self.episode], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.episode % 2 == 1 and self.t == 3
        return np.array([self.t, self.episode], np.float32), 1.0, terminated, False, {}


COUNTDOWN = "OffrlTestCountdown-v0"
if COUNTDOWN not in gym.registry:
    gym.register(COUNTDOWN, entry_point=_Countdown, max_episode_steps=5)


@pytest.mark.parametrize("num_envs", [1, 2])
def test_online_terminal_only_on_termination_and_real_final_observation(num_envs, tmp_path):
    result = train_online(sac.Config(hidden_dims=(8,)), COUNTDOWN, env_steps=48, num_envs=num_envs, start_steps=48,
                          updates_per_step=0, update_every=8, eval_episodes=0, seed=0, run_dir=tmp_path / "run",
                          progress=False, plot=False)
    buf = result.buffer
    assert int(buf.size) == 48 and result.updates == 0
    obs, nxt, term = np64(buf.observations), np64(buf.next_observations), np64(buf.terminals)
    np.testing.assert_array_equal(nxt[:, 0], obs[:, 0] + 1)  # the real successor, never the reset observation
    np.testing.assert_array_equal(nxt[:, 1], obs[:, 1])
    terminated = (nxt[:, 0] == 3) & (nxt[:, 1] % 2 == 1)
    np.testing.assert_array_equal(term, terminated.astype(np.float64))
    assert terminated.any() and (nxt[:, 0] == 5).any()  # both kinds of episode end happened
    assert np.all(term[nxt[:, 0] == 5] == 0)  # time-limit cuts bootstrap
    assert np.all(np.abs(np64(buf.actions)) <= 1.0)  # stored in the unit box


def test_online_sac_learns_pendulum(tmp_path):
    """5000 env steps (1000 random) with 128x128 networks: the uniform-random policy returns about -1200
    on Pendulum-v1; seeds 0-6 of this run returned -137 .. -673 (mean over 10 episodes) when measured."""
    config = sac.Config(hidden_dims=(128, 128), batch_size=128)
    result = train_online(config, "Pendulum-v1", env_steps=5000, start_steps=1000, seed=0, snapshot_every=2500,
                          eval_episodes=10, run_dir=tmp_path / "run", progress=False, plot=False)
    assert result.env_steps == 5000 and result.updates == 4050  # updates from the block ending at step 1000
    assert result.final_eval["return_mean"] > -900, result.final_eval

    train = [json.loads(line) for line in (result.run_dir / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train] == [1000, 2000, 3000, 4000, 5000]
    assert train[-1]["env_steps_per_s"] > 0 and np.isfinite(train[-1]["critic_loss"]) and train[-1]["temperature"] < 1.0
    evals = [json.loads(line) for line in (result.run_dir / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals] == [2500, 5000]

    names = sorted(p.name for p in result.run_dir.glob("policy-*"))
    assert names == ["policy-00002500.json", "policy-00002500.msgpack", "policy-00005000.json", "policy-00005000.msgpack"]
    card = json.loads((result.run_dir / "policy-00005000.json").read_text())
    assert card["env"] == "Pendulum-v1" and card["env_steps"] == 5000 and card["updates"] == 4050 and card["seed"] == 0
    assert card["return_mean"] == pytest.approx(result.final_eval["return_mean"]) and card["offrl_version"] == offrl.__version__

    agent = offrl.load_agent(result.run_dir / "policy-00005000.msgpack")
    assert agent.algo.name == "sac_offline" and agent.step == 4050 and agent.dataset_info.env_id == "Pendulum-v1"
    from offrl.evaluate import evaluate

    again = evaluate(lambda o: agent.act(o[0])[None], "Pendulum-v1", episodes=10, seed=10_000)[0]
    np.testing.assert_allclose(again["return_mean"], card["return_mean"], rtol=1e-2)
    np.testing.assert_array_equal(agent.act(np.zeros(3)), offrl.load_agent(result.run_dir).act(np.zeros(3)))


def _countdown_run(tmp_path, name, **kw):
    base = dict(env_steps=32, start_steps=8, update_every=8, eval_episodes=0, seed=5, progress=False, plot=False)
    return train_online(sac.Config(hidden_dims=(8,), batch_size=8), COUNTDOWN, run_dir=tmp_path / name, **{**base, **kw})


def test_online_seeds_train_each_agent_as_its_own_run(tmp_path):
    """A 2-seed run is the runs with seed 5 and seed 6 side by side: the same random warm-up, the
    same first policy actions and (up to float rounding of the batched updates) the same agents."""
    multi = _countdown_run(tmp_path, "multi", seeds=2, seed_strategy="vmap")
    singles = [_countdown_run(tmp_path, f"single-{s}", seed=s) for s in (5, 6)]
    assert [r.run_dir.name for r in multi] == ["seed-5", "seed-6"]
    for m, s, seed in zip(multi, singles, (5, 6)):
        assert m.updates == s.updates == 32  # from the block that ends at start_steps
        assert json.loads((m.run_dir / "config.json").read_text())["loop"]["seed"] == seed
        np.testing.assert_array_equal(np64(m.buffer.observations), np64(s.buffer.observations))
        np.testing.assert_array_equal(np64(m.buffer.actions)[:8], np64(s.buffer.actions)[:8])  # the random warm-up
        np.testing.assert_allclose(np64(m.buffer.actions), np64(s.buffer.actions), atol=1e-5)
        for a, b in zip(jax.tree.leaves(m.state), jax.tree.leaves(s.state)):
            np.testing.assert_allclose(np64(a), np64(b), atol=1e-5)
        assert (m.run_dir / "train.jsonl").exists() and (m.run_dir / "checkpoint.msgpack").exists()
    # different seeds: different warm-up actions
    assert not np.array_equal(np64(multi[0].buffer.actions), np64(multi[1].buffer.actions))


def test_online_overlap_collects_with_the_policy_of_two_blocks_back(tmp_path):
    """Block 1 (steps 0-7) is random; updates start after it. Without overlap, block 2 is collected by
    the agent after block 1's updates; with overlap, by the agent before them (the initial one), so
    its actions equal those of a run that never updates, while block 3's do not."""
    frozen = _countdown_run(tmp_path, "frozen", updates_per_step=0)
    lagged = _countdown_run(tmp_path, "lagged", overlap=True)
    fresh = _countdown_run(tmp_path, "fresh", overlap=False)
    act = lambda r: np64(r.buffer.actions)
    np.testing.assert_array_equal(act(lagged)[:16], act(frozen)[:16])
    assert not np.allclose(act(lagged)[16:24], act(frozen)[16:24])
    assert not np.allclose(act(fresh)[8:16], act(frozen)[8:16])
    assert lagged.updates == fresh.updates == 32
