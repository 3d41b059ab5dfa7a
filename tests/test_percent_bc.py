"""%BC: the top-episode filter against a numpy reference, Dataset.select_episodes, and a tiny task where
cloning the best 10 % of the data imitates the best behaviour while cloning all of it does not."""

from __future__ import annotations

import numpy as np
import pytest

import offrl
from offrl.algos import bc, get_algo, percent_bc
from offrl.data import Dataset, DatasetError, DatasetInfo

from conftest import make_dataset

FIT = dict(progress=False, plot=False, evaluate_at_end=False)


def ref_top_episodes(returns, lengths, fraction):
    """Chen et al. (2021)'s rule written directly: budget = max(int(fraction * N), 1) transitions; walk the
    episodes from the highest return down (ties: lower episode number first), always take the first,
    then take each next one while the running total stays within the budget; stop at the first misfit."""
    budget = max(int(fraction * sum(lengths)), 1)
    ranked = sorted(range(len(returns)), key=lambda i: (-returns[i], i))
    chosen, total = [ranked[0]], lengths[ranked[0]]
    for i in ranked[1:]:
        if total + lengths[i] > budget:
            break
        chosen.append(i)
        total += lengths[i]
    return sorted(chosen)


def _episodes_dataset(returns, lengths, seed=0) -> Dataset:
    """Episodes of the given lengths whose per-step rewards add up to the given returns."""
    rng = np.random.default_rng(seed)
    n = int(np.sum(lengths))
    rewards = np.concatenate([np.full(length, ret / length) for ret, length in zip(returns, lengths)])
    ends = np.cumsum(lengths) - 1
    timeouts = np.zeros(n, np.float32)
    timeouts[ends] = 1
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    return Dataset.from_arrays(observations=obs, actions=rng.uniform(-1, 1, (n, 1)), rewards=rewards,
                               terminals=np.zeros(n), timeouts=timeouts, next_observations=obs + 1,
                               info=DatasetInfo(name="episodes", action_low=[-1.0], action_high=[1.0]))


@pytest.mark.parametrize("fraction", [1e-6, 0.1, 0.25, 0.5, 0.999, 1.0])
def test_top_episodes_matches_the_reference(fraction):
    rng = np.random.default_rng(3)
    for trial in range(20):
        returns = rng.integers(-5, 5, size=30).astype(float)  # many ties
        lengths = rng.integers(1, 20, size=30)
        got = np.flatnonzero(percent_bc.top_episodes(returns, lengths, fraction))
        assert got.tolist() == ref_top_episodes(returns.tolist(), lengths.tolist(), fraction)
        assert lengths[got].sum() <= max(int(fraction * lengths.sum()), 1) or len(got) == 1


def test_top_episodes_known_cases():
    # equal lengths: exactly the top 10 %, ties broken in favour of the earlier episode
    returns = np.array([5.0, 9.0, 1.0, 9.0, 3.0, 7.0, 0.0, 2.0, 4.0, 6.0])
    assert np.flatnonzero(percent_bc.top_episodes(returns, np.full(10, 10), 0.1)).tolist() == [1]
    assert np.flatnonzero(percent_bc.top_episodes(returns, np.full(10, 10), 0.3)).tolist() == [1, 3, 5]
    # the best episode is kept even when it alone exceeds the budget; the walk stops at the first misfit
    lengths = np.array([10, 50, 10, 10, 10, 40, 10, 10, 10, 10])  # 170 transitions
    assert np.flatnonzero(percent_bc.top_episodes(returns, lengths, 0.1)).tolist() == [1]
    # budget 85: 50 + 10 = 60, the next best (length 40) does not fit, and no later episode is tried
    assert np.flatnonzero(percent_bc.top_episodes(returns, lengths, 0.5)).tolist() == [1, 3]
    # budget 102: 50 + 10 + 40 = 100 fits; the next (length 10) would make 110
    assert np.flatnonzero(percent_bc.top_episodes(returns, lengths, 0.6)).tolist() == [1, 3, 5]
    assert percent_bc.top_episodes(returns, lengths, 1.0).all()


def test_select_episodes_keeps_whole_episodes_in_order():
    data = make_dataset(n=600, episode_len=50)  # 13 episodes (one terminal splits an episode)
    keep = np.zeros(data.num_episodes, bool)
    keep[[0, 6, 12]] = True
    sub = data.select_episodes(keep)
    rows = np.isin(data.episode_id, [0, 6, 12])
    for name, arr in data.arrays().items():
        np.testing.assert_array_equal(getattr(sub, name), arr[rows])
    assert sub.num_episodes == 3 and sub.info == data.info
    np.testing.assert_allclose(sub.episode_returns(), data.episode_returns()[[0, 6, 12]], rtol=1e-12)
    np.testing.assert_array_equal(sub.episode_lengths(), data.episode_lengths()[[0, 6, 12]])
    by_ids = data.select_episodes([12, 0, 6, 6])  # ids: any order, repeats ignored
    np.testing.assert_array_equal(by_ids.observations, sub.observations)


@pytest.mark.parametrize("episodes, match", [
    (np.zeros(13, bool), "selects no episode"), ([], "selects no episode"), (np.ones(5, bool), "one entry per episode"),
    ([0, 13], r"\[0, 12\]"), ([0.5], "integer episode numbers"),
])
def test_select_episodes_errors(episodes, match):
    with pytest.raises(DatasetError, match=match):
        make_dataset(n=600, episode_len=50).select_episodes(episodes)


def test_prepare_dataset_keeps_exactly_the_top_episodes():
    returns, lengths = [3.0, 10.0, -1.0, 8.0, 10.0, 0.0, 2.0, 5.0], [5, 7, 3, 6, 4, 9, 2, 4]
    data = _episodes_dataset(returns, lengths)
    algo = get_algo("percent-bc")
    kept = algo.prepare_dataset(percent_bc.Config(top_fraction=0.3), data)  # budget int(0.3 * 40) = 12
    ids = ref_top_episodes(returns, lengths, 0.3)
    assert ids == [1, 4]  # returns 10 and 10 (lengths 7 + 4 = 11); the next (8, length 6) does not fit
    np.testing.assert_array_equal(kept.actions, data.actions[np.isin(data.episode_id, ids)])
    np.testing.assert_allclose(kept.episode_returns(), [10.0, 10.0], rtol=1e-6)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_top_fraction_is_validated(fraction, tmp_path):
    with pytest.raises(ValueError, match=r"percent_bc.Config.top_fraction = .* is out of range: must be in \(0, 1\]"):
        offrl.fit(percent_bc.Config(top_fraction=fraction), make_dataset(), steps=1, run_dir=tmp_path, **FIT)


def test_percent_bc_imitates_the_best_episodes_where_bc_does_not(tmp_path):
    """20 episodes visit the same 10 states; 2 act a = +0.8 (return 10), 18 act a = -0.5 (return 1).
    10%BC keeps exactly the two good episodes and acts +0.8; BC on everything acts near the mean -0.37."""
    rng = np.random.default_rng(0)
    n_ep, length = 20, 10
    good = np.zeros(n_ep, bool)
    good[[4, 13]] = True
    actions = np.repeat(np.where(good, 0.8, -0.5), length)[:, None] + rng.normal(0, 0.02, (n_ep * length, 1))
    rewards = np.repeat(np.where(good, 1.0, 0.1), length)
    states = rng.normal(size=(length, 3)).astype(np.float32)
    obs = np.tile(states, (n_ep, 1))
    timeouts = np.tile(np.eye(length)[-1], n_ep)
    data = Dataset.from_arrays(observations=obs, actions=np.clip(actions, -1, 1), rewards=rewards, terminals=np.zeros(n_ep * length),
                               timeouts=timeouts, next_observations=obs, info=DatasetInfo(name="two-good", action_low=[-1.0], action_high=[1.0]))
    assert np.flatnonzero(percent_bc.top_episodes(data.episode_returns(), data.episode_lengths(), 0.1)).tolist() == [4, 13]
    small = dict(hidden_dims=(32, 32), batch_size=32, actor_lr=3e-3)
    pct = offrl.fit(percent_bc.Config(**small), data, steps=600, chunk=600, run_dir=tmp_path / "pct", **FIT)
    plain = offrl.fit(bc.Config(**small), data, steps=600, chunk=600, run_dir=tmp_path / "bc", **FIT)
    a_pct = offrl.load_agent(pct.run_dir).act(states)
    a_bc = offrl.load_agent(plain.run_dir).act(states)
    assert np.abs(a_pct - 0.8).max() < 0.1, a_pct.ravel()
    assert np.all(a_bc < 0.0) and abs(a_bc.mean() - (-0.37)) < 0.1, a_bc.ravel()
