"""Preprocessing statistics and their application."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.data import Dataset, DatasetInfo, Transforms, fit_transforms


def make_dataset(action_bounds: bool = True) -> Dataset:
    rng = np.random.default_rng(0)
    n = 60
    terminals = np.zeros(n)
    timeouts = np.zeros(n)
    terminals[[9, 24]] = 1
    timeouts[[39, 59]] = 1
    info = DatasetInfo(action_low=(-2.0, 0.0), action_high=(2.0, 5.0)) if action_bounds else None
    low, high = (np.array([-2.0, 0.0]), np.array([2.0, 5.0])) if action_bounds else (-1, 1)
    return Dataset.from_arrays(
        observations=rng.normal(loc=[1.0, -5.0, 100.0], scale=[0.1, 3.0, 0.0], size=(n, 3)),
        actions=rng.uniform(low, high, size=(n, 2)),
        rewards=rng.normal(loc=1.0, size=n),
        terminals=terminals,
        timeouts=timeouts,
        next_observations=rng.normal(size=(n, 3)),
        info=info,
    )


def test_observation_statistics_match_numpy():
    ds = make_dataset()
    t = fit_transforms(ds, normalize_observations=True, reward_scaling="none")
    mean = ds.observations.astype(np.float64).mean(0)
    std = ds.observations.astype(np.float64).std(0) + 1e-3
    np.testing.assert_allclose(t.obs_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(t.obs_std, std, rtol=1e-6)
    assert t.obs_std[2] == pytest.approx(1e-3)  # constant feature: the floor, no division by 0
    np.testing.assert_allclose(t.normalize_obs(ds.observations), (ds.observations - mean) / std,
                               rtol=1e-4, atol=1e-4)
    out = t.normalize_obs(jnp.asarray(ds.observations))
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(out, (ds.observations - mean) / std, rtol=1e-4, atol=1e-4)
    jitted = jax.jit(t.normalize_obs)(jnp.asarray(ds.observations))
    np.testing.assert_allclose(jitted, out, rtol=1e-6)


def test_observations_untouched_when_normalisation_disabled():
    ds = make_dataset()
    t = fit_transforms(ds, normalize_observations=False, reward_scaling="none")
    np.testing.assert_array_equal(t.normalize_obs(ds.observations), ds.observations)
    np.testing.assert_array_equal(t.apply(ds)["next_observations"], ds.next_observations)


def test_iql_locomotion_scale_matches_episode_reference():
    ds = make_dataset()
    returns, total = [], 0.0
    for r, end in zip(ds.rewards, ds.terminals + ds.timeouts):
        total += float(r)
        if end:
            returns.append(total)
            total = 0.0
    assert len(returns) == 4
    t = fit_transforms(ds, normalize_observations=False, reward_scaling="iql_locomotion")
    expected = 1000.0 / (max(returns) - min(returns))
    assert t.reward_scale == pytest.approx(expected, rel=1e-6)
    assert t.reward_shift == 0.0
    np.testing.assert_allclose(t.apply(ds)["rewards"], ds.rewards * expected, rtol=1e-5)


def test_minus_one_and_none():
    ds = make_dataset()
    t = fit_transforms(ds, normalize_observations=False, reward_scaling="minus_one")
    assert (t.reward_scale, t.reward_shift) == (1.0, -1.0)
    np.testing.assert_allclose(t.apply(ds)["rewards"], ds.rewards - 1.0, rtol=1e-6)
    t = fit_transforms(ds, normalize_observations=False, reward_scaling="none")
    np.testing.assert_array_equal(t.apply(ds)["rewards"], ds.rewards)


def test_unknown_reward_scaling_lists_valid_values():
    with pytest.raises(ValueError, match="'bogus'.*none, iql_locomotion, minus_one"):
        fit_transforms(make_dataset(), normalize_observations=False, reward_scaling="bogus")


def test_iql_locomotion_with_equal_returns_is_an_error():
    ds = make_dataset()
    one_episode = Dataset.from_arrays(ds.observations, ds.actions, ds.rewards,
                                      np.zeros(len(ds)), np.eye(1, len(ds), len(ds) - 1)[0],
                                      ds.next_observations)
    with pytest.raises(ValueError, match="reward_scaling='none'"):
        fit_transforms(one_episode, normalize_observations=False, reward_scaling="iql_locomotion")


def test_action_unit_round_trip():
    ds = make_dataset()
    t = fit_transforms(ds, normalize_observations=False, reward_scaling="none")
    np.testing.assert_array_equal(t.action_low, [-2.0, 0.0])
    unit = t.action_to_unit(ds.actions)
    assert unit.min() >= -1.0 and unit.max() <= 1.0
    np.testing.assert_allclose(t.action_to_unit(np.array([[-2.0, 0.0], [2.0, 5.0], [0.0, 2.5]])),
                               [[-1, -1], [1, 1], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(t.action_from_unit(unit), ds.actions, atol=1e-5)
    np.testing.assert_allclose(t.apply(ds)["actions"], unit, atol=1e-6)
    # Out-of-range unit actions are clipped to the bounds, for numpy and (jitted) jax inputs.
    np.testing.assert_allclose(t.action_from_unit(np.array([[3.0, -3.0]])), [[2.0, 0.0]])
    out = jax.jit(t.action_from_unit)(jnp.array([[3.0, -3.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[2.0, 0.0], [0.0, 2.5]], atol=1e-6)


def test_unknown_action_bounds_default_to_unit_box():
    ds = make_dataset(action_bounds=False)
    t = fit_transforms(ds, normalize_observations=False, reward_scaling="none")
    np.testing.assert_array_equal(t.action_low, [-1, -1])
    np.testing.assert_array_equal(t.action_high, [1, 1])
    np.testing.assert_allclose(t.apply(ds)["actions"], ds.actions, atol=1e-6)


def test_apply_returns_float32_arrays():
    ds = make_dataset()
    out = fit_transforms(ds, normalize_observations=True, reward_scaling="iql_locomotion").apply(ds)
    assert set(out) == {"observations", "next_observations", "actions", "rewards", "terminals",
                        "timeouts"}
    for key, arr in out.items():
        assert arr.dtype == np.float32 and len(arr) == len(ds), key
    np.testing.assert_array_equal(out["terminals"], ds.terminals)
    np.testing.assert_array_equal(out["timeouts"], ds.timeouts)


def test_json_round_trip():
    t = fit_transforms(make_dataset(), normalize_observations=True, reward_scaling="iql_locomotion")
    back = Transforms.from_dict(json.loads(json.dumps(t.to_dict())))
    for key in ("obs_mean", "obs_std", "action_low", "action_high"):
        np.testing.assert_array_equal(getattr(back, key), getattr(t, key))
        assert getattr(back, key).dtype == np.float32
    assert (back.normalize_observations, back.reward_scale, back.reward_shift) == (
        t.normalize_observations, t.reward_scale, t.reward_shift)
