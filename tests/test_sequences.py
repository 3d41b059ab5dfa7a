"""Sequence data and return-conditioned policies (rvs, dt): known answers.

The sampler's windows, one return-to-go convention at training and at evaluation, the transformer's
causality and padding invariance, a return-conditioned bandit, a chain whose data mixes expert and
random episodes, and the bad inputs (unrecoverable episodes, a context longer than any episode, a
requested return far outside the data's).
"""

from __future__ import annotations

import functools
import json
import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import offrl
from offrl.algos import DataSpec, get_algo
from offrl.data import Dataset, DatasetError, DatasetInfo, fit_transforms, to_device
from offrl.data.sequences import check_sequence_data, new_context, push, returns_to_go, sample_windows
from offrl.nets.transformer import DecisionTransformer

from conftest import make_dataset, small_config


def episodes_dataset(lengths, obs_dim=2, seed=0, name="episodes", **info):
    """Chained episodes of the given lengths (timeouts at their ends), random rewards and actions."""
    rng = np.random.default_rng(seed)
    n = int(sum(lengths))
    obs = rng.normal(size=(n + len(lengths), obs_dim)).astype(np.float32)
    rows, nxt, ends = [], [], np.zeros(n, np.float32)
    k = 0
    for e, length in enumerate(lengths):
        start = k + e  # each episode has length + 1 observations
        rows += list(range(start, start + length))
        nxt += list(range(start + 1, start + length + 1))
        k += length
        ends[k - 1] = 1
    return Dataset.from_arrays(observations=obs[rows], actions=rng.uniform(-1, 1, size=(n, 1)).astype(np.float32),
                               rewards=rng.normal(size=n).astype(np.float32), next_observations=obs[nxt],
                               terminals=np.zeros(n, np.float32), timeouts=ends, info=DatasetInfo(name=name, **info))


# ----------------------------------------------------------------------------- windows and returns-to-go


def test_windows_end_uniformly_and_pad_on_the_left():
    """Every transition ends a window (episodes drawn in proportion to their length, tails included); a window
    holds the K steps of one episode up to its end, padding (mask 0, zeros) before the episode's start."""
    ds = episodes_dataset([2, 7, 3])
    arrays = fit_transforms(ds, False, "none").apply(ds)
    data = to_device(arrays, ds)
    w = jax.jit(lambda k: sample_windows(data, k, 4000, 4))(jax.random.PRNGKey(0))
    rtg, obs, t, mask = map(np.asarray, (w.returns_to_go, w.observations, w.timesteps, w.mask))
    expected_rtg = returns_to_go(ds.rewards, ds.episode_end_index)
    start_of = ds.episode_start_index
    last = np.array([int(np.flatnonzero((ds.observations == o).all(1))[0]) for o in obs[:, -1]])  # index of each window's end
    counts = np.bincount(last, minlength=len(ds))
    assert counts.min() > 0.75 * 4000 / len(ds) and counts.max() < 1.25 * 4000 / len(ds)  # uniform over transitions
    for row in range(200):
        end = last[row]
        steps = end - 3 + np.arange(4)
        real = steps >= start_of[end]
        np.testing.assert_array_equal(mask[row], real.astype(np.float32))
        assert np.all(mask[row][:-1] <= mask[row][1:])  # padding only on the left
        np.testing.assert_allclose(rtg[row][real], expected_rtg[steps[real]], rtol=1e-6)
        np.testing.assert_array_equal(t[row][real], steps[real] - start_of[end])
        np.testing.assert_array_equal(obs[row][real], ds.observations[steps[real]])
        assert not obs[row][~real].any() and not rtg[row][~real].any()
    assert mask[:, 0].min() == 0 and mask[:, 0].max() == 1


class ReplayEnv(gym.Env):
    """Replays one recorded episode whatever the actions: its observations and rewards, then the end."""

    def __init__(self, observations=None, rewards=None):
        self.obs, self.rewards = observations, rewards
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(observations.shape[1],), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self.obs[0], {}

    def step(self, action):
        self.t += 1
        done = self.t == len(self.rewards)
        return self.obs[min(self.t, len(self.rewards) - 1)], float(self.rewards[self.t - 1]), done, False, {}


def _register(env_id, entry_point):
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point)


def test_returns_to_go_at_evaluation_equal_the_training_ones():
    """An episode of the data replayed through the evaluation loop (offrl.evaluate with a carried rvs policy,
    rewards scaled as in training) sees R_t equal to the training windows' R_t at every step."""
    from offrl.evaluate import evaluate
    from offrl.train import device_data, init_agents, make_policy

    ds = episodes_dataset([6, 9, 4], seed=3)
    algo = get_algo("rvs")
    config = small_config(algo)
    transforms = fit_transforms(ds, True, "iql_locomotion")  # a reward scale != 1: units must agree too
    assert transforms.reward_scale != 1.0
    training_rtg = np.asarray(device_data(algo, config, ds, transforms).returns_to_go)
    episode = np.flatnonzero(ds.episode_id == 1)
    _register("offrl-test/Replay-v0", ReplayEnv)
    states, _ = init_agents(algo, config, DataSpec.from_dataset(ds), 0, 1, 10)
    policy = make_policy(algo, config, transforms, DataSpec.from_dataset(ds), float(ds.rewards[episode].sum()))
    seen = []

    def recording(obs, rewards, starts):
        actions = policy(states, obs, rewards, starts)
        seen.append(float(np.asarray(policy._carry.window.returns_to_go)[0, 0, -1]))
        return actions

    evaluate(recording, "offrl-test/Replay-v0", episodes=1, stateful=True,
             env_kwargs={"observations": ds.observations[episode], "rewards": ds.rewards[episode]})
    np.testing.assert_allclose(seen, training_rtg[episode], rtol=1e-5, atol=1e-5)


def test_context_push_resets_rows_that_start_a_new_episode():
    step = jax.jit(push)
    ctx = new_context(2, 3, 1, 1, jnp.array([10.0, 20.0]))
    ctx = step(ctx, jnp.ones((2, 1)), jnp.zeros(2), jnp.array([True, True]))
    ctx = step(ctx, 2 * jnp.ones((2, 1)), jnp.array([1.0, 5.0]), jnp.array([False, False]))
    ctx = step(ctx, 3 * jnp.ones((2, 1)), jnp.array([2.0, 0.0]), jnp.array([False, True]))
    w = ctx.window
    np.testing.assert_allclose(w.returns_to_go, [[10, 9, 7], [0, 0, 20]])
    np.testing.assert_array_equal(w.mask, [[1, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(w.timesteps, [[0, 1, 2], [0, 0, 0]])
    np.testing.assert_allclose(w.observations[1, :, 0], [0, 0, 3])


# ----------------------------------------------------------------------------- the transformer


@functools.lru_cache(maxsize=None)  # one compile for the causality and the padding test
def _transformer_and_window(k=6, seed=0):
    net = DecisionTransformer(act_dim=2, embed_dim=16, num_layers=2, num_heads=2, dropout=0.1, max_timestep=32,
                              return_scale=0.1)
    rng = np.random.default_rng(seed)
    window = dict(returns_to_go=jnp.asarray(rng.normal(size=(1, k)) * 10, jnp.float32),
                  observations=jnp.asarray(rng.normal(size=(1, k, 3)), jnp.float32),
                  actions=jnp.asarray(rng.uniform(-1, 1, size=(1, k, 2)), jnp.float32),
                  timesteps=jnp.arange(3, 3 + k)[None].astype(jnp.int32), mask=jnp.ones((1, k), jnp.float32))
    order = ("returns_to_go", "observations", "actions", "timesteps", "mask")  # a jitted dict comes back key-sorted
    params = jax.jit(net.init)(jax.random.PRNGKey(seed), *(window[key] for key in order))
    return jax.jit(lambda w: net.apply(params, *(w[key] for key in order))), window


def test_transformer_is_causal():
    """Changing the tokens after s_t (a_t, and every R, s, a of later steps) leaves the action at t unchanged;
    changing s_t changes it."""
    apply, w = _transformer_and_window()
    base = np.asarray(apply(w))
    t = 2
    changed = dict(w)
    changed["returns_to_go"] = w["returns_to_go"].at[:, t + 1:].add(50.0)
    changed["observations"] = w["observations"].at[:, t + 1:].add(3.0)
    changed["actions"] = w["actions"].at[:, t:].set(-w["actions"][:, t:])
    after = np.asarray(apply(changed))
    np.testing.assert_allclose(after[:, : t + 1], base[:, : t + 1], rtol=1e-5, atol=1e-6)
    assert np.abs(after[:, t + 1:] - base[:, t + 1:]).max() > 1e-3
    moved = dict(w, observations=w["observations"].at[:, t].add(1.0))
    assert np.abs(np.asarray(apply(moved))[:, t] - base[:, t]).max() > 1e-3


def test_left_and_right_padding_give_the_same_predictions():
    """The same 3 real steps padded on the left or on the right (padding holding junk) predict the same actions."""
    apply, w = _transformer_and_window()
    real = {key: v[:, :3] for key, v in w.items()}
    junk = {key: jnp.full_like(v[:, :3], 7) for key, v in w.items()}  # timesteps too: masked steps are never read
    left = {key: jnp.concatenate([junk[key], real[key]], axis=1) for key in w}
    right = {key: jnp.concatenate([real[key], junk[key]], axis=1) for key in w}
    left["mask"] = jnp.array([[0, 0, 0, 1, 1, 1]], jnp.float32)
    right["mask"] = jnp.array([[1, 1, 1, 0, 0, 0]], jnp.float32)
    pl, pr = np.asarray(apply(left)), np.asarray(apply(right))
    np.testing.assert_allclose(pl[:, 3:], pr[:, :3], rtol=1e-5, atol=1e-6)
    short = {key: v for key, v in real.items()}  # and the unpadded 3-step window
    np.testing.assert_allclose(np.asarray(apply(short)), pr[:, :3], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- known answers


def test_rvs_bandit_conditioned_on_return_i_picks_arm_i():
    """One-step episodes, arms a_i = -1 + 2i/4 with reward i, uniform data, uninformative observations:
    conditioned on R = i the policy picks arm i (nearest arm) in more than 95% of draws."""
    from offrl.train import make_policy

    rng = np.random.default_rng(0)
    n, arms = 1000, np.linspace(-1, 1, 5)
    choice = rng.integers(0, 5, n)
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    ds = Dataset.from_arrays(observations=obs, actions=arms[choice, None].astype(np.float32),
                             rewards=choice.astype(np.float32), next_observations=rng.normal(size=(n, 2)).astype(np.float32),
                             terminals=np.ones(n, np.float32), timeouts=np.zeros(n, np.float32), info=DatasetInfo(name="bandit"))
    algo = get_algo("rvs")
    config = small_config(algo, hidden_dims=(64, 64), batch_size=128, return_scale=0.5)
    result = offrl.fit(config, ds, steps=400, chunk=400, progress=False, plot=False, evaluate_at_end=False,
                       run_dir=_tmp_run())
    draws = rng.normal(size=(1, 200, 2)).astype(np.float32)
    for i in range(5):
        policy = make_policy(algo, config, result.transforms, DataSpec.from_dataset(ds), float(i))
        actions = policy(result.states, draws, np.zeros((1, 200)), np.ones((1, 200), bool))[0, :, 0]
        picked = np.abs(actions[:, None] - arms[None]).argmin(axis=1)
        assert np.mean(picked == i) > 0.95, (i, np.bincount(picked, minlength=5))


def _tmp_run():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="offrl-test-run-"))


class ChainEnv(gym.Env):
    """A deterministic chain of ``horizon`` steps: observation (t / H, position / H); action > 0 steps right and earns 1."""

    horizon = 5

    def __init__(self):
        self.observation_space = gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def _obs(self):
        return np.array([self.t / self.horizon, self.pos / self.horizon], np.float32)

    def reset(self, *, seed=None, options=None):
        self.t, self.pos = 0, 0
        return self._obs(), {}

    def step(self, action):
        right = float(np.asarray(action).reshape(-1)[0]) > 0
        self.t += 1
        self.pos += 1 if right else -1
        return self._obs(), float(right), False, self.t == self.horizon, {}


def chain_dataset(expert=30, random=90, seed=0):
    """Episodes of the chain: an expert (action 0.8) and uniformly random ones."""
    rng = np.random.default_rng(seed)
    env = ChainEnv()
    cols = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    for e in range(expert + random):
        o, _ = env.reset()
        for t in range(env.horizon):
            a = np.array([0.8], np.float32) if e < expert else rng.uniform(-1, 1, 1).astype(np.float32)
            o2, r, term, trunc, _ = env.step(a)
            for key, v in zip(cols, (o, a, r, o2, float(term), float(trunc))):
                cols[key].append(v)
            o = o2
    arrays = {k: np.asarray(v, np.float32) for k, v in cols.items()}
    return Dataset.from_arrays(**arrays, info=DatasetInfo(name="chain", env_id="offrl-test/Chain-v0"))


@pytest.mark.parametrize("name", ["rvs", "dt"])
def test_chain_conditioned_on_the_best_return_reproduces_the_expert(name):
    """Data mixing expert (return 5) and random episodes (mean 2.5): conditioned on the maximum return, both
    policies step right at every step, as the expert, through the library's evaluation loop; conditioned on a
    return of 1 they do not."""
    from offrl.evaluate import evaluate
    from offrl.train import make_policy

    _register("offrl-test/Chain-v0", ChainEnv)
    ds = chain_dataset()
    assert ds.episode_returns().max() == 5 and ds.episode_returns()[30:].mean() < 3.5
    algo = get_algo(name)
    extra = dict(context_len=5, embed_dim=32, dropout=0.1, warmup_steps=20, learning_rate=1e-3) if name == "dt" else {}
    config = small_config(algo, batch_size=64 if name == "rvs" else 32, return_scale=0.2, **extra)
    result = offrl.fit(config, ds, steps=300 if name == "rvs" else 200, chunk=300, progress=False, plot=False, evaluate_at_end=False,
                       run_dir=_tmp_run())
    policy = make_policy(algo, config, result.transforms, DataSpec.from_dataset(ds), 5.0)
    actions = []

    def recording(obs, rewards, starts):
        a = policy(result.states, obs, rewards, starts)
        actions.append(a)
        return a

    out = evaluate(recording, "offrl-test/Chain-v0", episodes=3, stateful=True)[0]
    assert out["returns"] == [5.0, 5.0, 5.0], out["returns"]
    assert np.all(np.concatenate(actions) > 0)  # the expert's decision at every step
    low = make_policy(algo, config, result.transforms, DataSpec.from_dataset(ds), 1.0)  # and the condition matters
    out = evaluate(lambda *o: low(result.states, *o), "offrl-test/Chain-v0", episodes=3, stateful=True)[0]
    assert out["return_mean"] <= 3.0, out


# ----------------------------------------------------------------------------- RvS-G: goals


def test_hindsight_goals_are_later_states_of_the_same_episode_drawn_uniformly():
    """Observations encode (episode, step): every goal is the next observation of a step u in t..T of t's own
    episode, and for t at an episode's first step u - t is uniform over the episode's 10 steps."""
    from offrl.algos.rvs import hindsight_goals

    lengths = [10] * 40
    n = sum(lengths)
    episode = np.repeat(np.arange(40), 10).astype(np.float32)
    step = np.tile(np.arange(10), 40).astype(np.float32)
    ds = Dataset.from_arrays(observations=np.stack([episode, step], 1), actions=np.zeros((n, 1), np.float32),
                             rewards=np.zeros(n, np.float32), next_observations=np.stack([episode, step + 1], 1),
                             terminals=np.zeros(n, np.float32), timeouts=np.tile(np.eye(1, 10, 9)[0], 40).astype(np.float32),
                             info=DatasetInfo(name="ticks"))
    data = to_device({k: getattr(ds, k) for k in ("observations", "actions", "rewards", "next_observations", "terminals")}, ds)
    t, goals = jax.jit(lambda k: hindsight_goals(data, k, 40000, (0, 1)))(jax.random.PRNGKey(0))
    t, goals = np.asarray(t), np.asarray(goals)
    np.testing.assert_array_equal(goals[:, 0], episode[t])  # the same episode
    u = goals[:, 1] - 1  # the step whose next observation the goal is
    assert np.all(u >= step[t]) and np.all(u <= 9)  # at or after t, never past the episode's end
    first = step[t] == 0
    freq = np.bincount(u[first].astype(int), minlength=10) / first.sum()
    np.testing.assert_allclose(freq, 0.1, atol=0.025)  # uniform over t..T (about 4000 draws)
    near_end = step[t] == 8  # two steps left: u = t or t + 1, half and half
    assert abs(np.mean(u[near_end] - 8) - 0.5) < 0.05


def test_evaluation_goal_is_where_the_data_pays_or_the_given_goal_in_training_units():
    from offrl.algos.rvs import Config, evaluation_goal

    rng = np.random.default_rng(0)
    ds = make_dataset(n=400, obs_dim=3, chained=True)
    ds = Dataset.from_arrays(observations=ds.observations * 5 + 2, actions=ds.actions, rewards=ds.rewards,
                             next_observations=ds.next_observations * 5 + 2, terminals=ds.terminals, timeouts=ds.timeouts,
                             info=ds.info)
    transforms = fit_transforms(ds, normalize_observations=True)
    arrays = transforms.apply(ds)
    best = np.flatnonzero(ds.rewards == ds.rewards.max())
    expected = ((ds.next_observations[best] - transforms.obs_mean) / transforms.obs_std).mean(axis=0)[[2, 0]]
    got = evaluation_goal(Config(conditioning="goal", goal_dims=(2, 0)), arrays, ds)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    goal = tuple(rng.normal(size=2) * 3)
    got = evaluation_goal(Config(conditioning="goal", goal_dims=(1, 2), goal=goal), arrays, ds)
    full = np.zeros(3)
    full[[1, 2]] = goal
    np.testing.assert_allclose(got, transforms.normalize_obs(full[None])[0, [1, 2]], rtol=1e-4, atol=1e-4)
    from offrl.train import config_from_dict, config_to_dict  # a stored run's config.json gives the tuples back

    config = Config(conditioning="goal", goal_dims=(1, 2), goal=goal)
    assert config_from_dict(Config, json.loads(json.dumps(config_to_dict(config)))) == config
    raw = fit_transforms(ds, normalize_observations=False)  # no normalisation: the goal as given
    np.testing.assert_allclose(evaluation_goal(Config(conditioning="goal", goal_dims=(1, 2), goal=goal), raw.apply(ds), ds),
                               goal, rtol=1e-5)


def _reach_dataset(n=2000, seed=0, target=(0.5, 0.5)):
    """One-step episodes on the plane: from a random position p the action a moves to p' = p + a; reward 1 when
    p' is within 0.3 of ``target``. A goal reached is p' itself, so the right action for goal g is g - p."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(-0.5, 0.5, size=(n, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    nxt = p + a
    r = (np.linalg.norm(nxt - np.asarray(target), axis=1) < 0.3).astype(np.float32)
    return Dataset.from_arrays(observations=p, actions=a, rewards=r, next_observations=nxt, terminals=np.ones(n, np.float32),
                               timeouts=np.zeros(n, np.float32), info=DatasetInfo(name="reach"))


def test_rvs_g_acts_towards_the_goal_where_the_data_pays():
    """On one-step reaching data (uniform actions) RvS-G learns a = g - p from hindsight goals, and at evaluation
    it heads for the rewarded region (0.5, 0.5) from any position."""
    from offrl.train import make_policy

    ds = _reach_dataset()
    algo = get_algo("rvs")
    config = small_config(algo, hidden_dims=(64, 64), batch_size=128, conditioning="goal")
    assert not algo.conditioned_on_return(config) and algo.conditioned_on_return(small_config(algo))
    result = offrl.fit(config, ds, steps=1500, chunk=1500, progress=False, plot=False, evaluate_at_end=False,
                       run_dir=_tmp_run())
    goal_env = np.asarray(result.states.goal[0]) * result.transforms.obs_std + result.transforms.obs_mean
    np.testing.assert_allclose(goal_env, [0.5, 0.5], atol=0.05)  # the mean of the rewarded next positions
    policy = make_policy(algo, config, result.transforms, DataSpec.from_dataset(ds), 0.0)
    p = np.random.default_rng(1).uniform(-0.4, 0.4, size=(1, 100, 2)).astype(np.float32)
    actions = policy(result.states, p, np.zeros((1, 100)), np.ones((1, 100), bool))[0]
    reached = p[0] + actions
    assert np.mean(np.linalg.norm(reached - [0.5, 0.5], axis=1) < 0.3) > 0.9, np.linalg.norm(reached - 0.5, axis=1)


# ----------------------------------------------------------------------------- bad input


def test_episodes_that_cannot_be_recovered_are_refused(tmp_path):
    ds = make_dataset()  # next_observations unrelated to the next row: transitions in no recorded order
    for name in ("rvs", "dt"):
        with pytest.raises(DatasetError, match=f"{name} needs whole episodes.*cannot be recovered.*Fix:"):
            offrl.fit(small_config(get_algo(name)), ds, steps=10, run_dir=tmp_path / name, progress=False, plot=False)


def test_context_longer_than_every_episode_is_refused_and_short_episodes_are_padded(tmp_path):
    ds = episodes_dataset([3, 8, 2])
    with pytest.raises(DatasetError, match=r"context of 9 steps is longer than the longest episode .* \(8 steps\).*"
                                           r"--algo.context-len 8 or less"):
        check_sequence_data(ds, 9, "dt")
    check_sequence_data(ds, 8, "dt")  # episodes of 3 and 2 steps under a context of 8: padded, not refused
    with pytest.raises(DatasetError, match="longer than the longest episode"):
        offrl.fit(small_config(get_algo("dt"), context_len=20), make_dataset(chained=True, n=100, episode_len=10),
                  steps=10, run_dir=tmp_path / "r", progress=False, plot=False)


def test_far_target_returns_warn_and_state_the_range(tmp_path, capsys):
    """offrl eval --target-returns: the table and figure are written; a far request warns with the data's range;
    a non-number and a policy not conditioned on a return are one-line errors."""
    from offrl.cli import main
    from offrl.targets import TargetReturnWarning, warn_far_outside

    with pytest.warns(TargetReturnWarning, match=r"far outside the dataset's episode returns \[0, 10\]"):
        assert warn_far_outside([5.0, 30.0], 0.0, 10.0) == [30.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_far_outside([-4.0, 14.0], 0.0, 10.0) == []  # near the range: no warning

    _register("offrl-test/Chain-v0", ChainEnv)
    ds = chain_dataset()
    run = tmp_path / "rvs"
    config = small_config(get_algo("rvs"), batch_size=64, return_scale=0.2)  # the chain test's: compiled once
    offrl.fit(config, ds, steps=300, chunk=300, run_dir=run, progress=False, plot=False,
              eval_episodes=3)  # the end of a run of a return-conditioned algorithm writes the table too
    assert (run / "target_returns.csv").read_text().count("\n") == 1 + 5
    assert main(["eval", str(run), "--episodes", "3", "--target-returns", "1,5,100"]) == 0
    captured = capsys.readouterr()
    assert "warning: target return 100 is far outside the dataset's episode returns [" in captured.err
    lines = (run / "target_returns.csv").read_text().splitlines()
    assert lines[0].startswith("target_return,seed_index,return_mean") and len(lines) == 4
    assert [float(x.split(",")[0]) for x in lines[1:]] == [1.0, 5.0, 100.0]
    assert (run / "target_returns.png").read_bytes()[:4] == b"\x89PNG"
    agent = offrl.load_agent(run)
    with pytest.warns(TargetReturnWarning, match="far outside"):
        agent.reset(target_return=1e6)

    assert main(["eval", str(run), "--target-returns", "1,lots"]) == 2
    err = capsys.readouterr().err
    assert "'lots' is not a number" in err and err.count("\n") == 1
