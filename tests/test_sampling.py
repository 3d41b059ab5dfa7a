"""Device samplers against pure-Python references on many short episodes."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.data import (Batch, Dataset, DeviceData, Segment, fit_transforms, sample_nstep,
                        sample_segments, sample_uniform, to_device)

DISCOUNT = 0.9


def make_dataset(seed: int = 0, num_episodes: int = 120) -> Dataset:
    """Episodes of length 1..5 ending with a terminal or a timeout.

    ``observations[t] = (t, episode)`` so a sampled row identifies its transition.
    """
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([[1, 1, 2, 3, 4, 5], rng.integers(1, 6, num_episodes - 6)])
    rng.shuffle(lengths)
    n = int(lengths.sum())
    episode = np.repeat(np.arange(len(lengths)), lengths)
    ends = np.cumsum(lengths) - 1
    terminal_end = rng.random(len(lengths)) < 0.5
    terminals = np.zeros(n)
    timeouts = np.zeros(n)
    terminals[ends[terminal_end]] = 1
    timeouts[ends[~terminal_end]] = 1
    obs = np.stack([np.arange(n), episode], axis=1).astype(np.float64)
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[ends] = obs[ends] + np.array([0.5, 0.0])  # successor of an episode end: off-grid
    return Dataset.from_arrays(
        observations=obs,
        actions=rng.uniform(-1, 1, size=(n, 2)),
        rewards=rng.normal(size=n),
        terminals=terminals,
        timeouts=timeouts,
        next_observations=next_obs,
    )


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset()


@pytest.fixture(scope="module")
def actions(dataset) -> np.ndarray:
    """The transformed (unit) actions held on the device."""
    transforms = fit_transforms(dataset, normalize_observations=False, reward_scaling="none")
    return transforms.apply(dataset)["actions"]


@pytest.fixture(scope="module")
def data(dataset) -> DeviceData:
    transforms = fit_transforms(dataset, normalize_observations=False, reward_scaling="none")
    return to_device(transforms.apply(dataset), dataset)


def sampled_index(observations) -> np.ndarray:
    return np.asarray(observations)[..., 0].round().astype(int)


def python_episode_end(dataset: Dataset, t: int) -> int:
    """Last index of t's episode, by walking the episode ids."""
    ep = dataset.episode_id
    while t + 1 < len(ep) and ep[t + 1] == ep[t]:
        t += 1
    return t


def test_dataset_fixture_has_the_intended_structure(dataset):
    lengths = dataset.episode_lengths()
    assert set(lengths.tolist()) == {1, 2, 3, 4, 5}
    assert (lengths == 1).sum() >= 2
    assert dataset.terminals.sum() > 10 and dataset.timeouts.sum() > 10


def test_to_device(dataset, data):
    n = dataset.num_transitions
    assert data.observations.shape == (n, 2) and data.size == n
    assert data.episode_end_index.dtype == jnp.int32
    np.testing.assert_array_equal(data.episode_end_index, dataset.episode_end_index)
    np.testing.assert_array_equal(data.episode_start_index, dataset.episode_start_index)
    rtg = [sum(dataset.rewards[t:python_episode_end(dataset, t) + 1].astype(np.float64))
           for t in range(n)]
    np.testing.assert_allclose(data.returns_to_go, rtg, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rows"):
        to_device({k: v[:-1] for k, v in dataset.arrays().items()}, dataset)


def test_uniform_covers_all_indices(dataset, data, actions):
    sample = jax.jit(partial(sample_uniform, batch_size=4096, discount=DISCOUNT))
    seen = np.zeros(dataset.num_transitions, bool)
    for i in range(4):
        batch = sample(data, jax.random.key(i))
        assert isinstance(batch, Batch)
        idx = sampled_index(batch.observations)
        seen[idx] = True
        np.testing.assert_array_equal(batch.actions, actions[idx])
        np.testing.assert_array_equal(batch.rewards, dataset.rewards[idx])
        np.testing.assert_array_equal(batch.next_observations, dataset.next_observations[idx])
        np.testing.assert_array_equal(batch.terminals, dataset.terminals[idx])
        np.testing.assert_allclose(batch.discounts, DISCOUNT)
    assert seen.all()


@pytest.mark.parametrize("n", [1, 3, 6])
def test_nstep_matches_python_reference(dataset, data, actions, n):
    sample = jax.jit(partial(sample_nstep, batch_size=2048, n=n))
    ep = dataset.episode_id
    steps_used = set()
    for i in range(2):
        batch = jax.device_get(sample(data, jax.random.key(i), discount=DISCOUNT))
        idx = sampled_index(batch.observations)
        ref_rewards, ref_last, ref_k = [], [], []
        for t in idx:
            total, k = 0.0, 0
            while k < n and t + k < len(ep) and ep[t + k] == ep[t]:
                total += DISCOUNT**k * float(dataset.rewards[t + k])
                k += 1
            ref_rewards.append(total)
            ref_last.append(t + k - 1)
            ref_k.append(k)
        ref_last = np.array(ref_last)
        steps_used.update(ref_k)
        assert (ep[ref_last] == ep[idx]).all()  # never crosses an episode end
        np.testing.assert_allclose(batch.rewards, ref_rewards, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(batch.next_observations,
                                      dataset.next_observations[ref_last])
        np.testing.assert_array_equal(batch.terminals, dataset.terminals[ref_last])
        np.testing.assert_allclose(batch.discounts, DISCOUNT ** np.array(ref_k), rtol=1e-6)
        np.testing.assert_array_equal(batch.actions, actions[idx])
    # Truncation really happened (for n > 1) and full windows were drawn too.
    assert steps_used == set(range(1, min(n, 5) + 1))


def test_segments_match_python_reference(dataset, data, actions):
    length = 4
    sample = jax.jit(partial(sample_segments, batch_size=1024, length=length))
    ep = dataset.episode_id
    rewards = dataset.rewards.astype(np.float64)
    padded_rows = 0
    for i in range(2):
        seg = jax.device_get(sample(data, jax.random.key(i)))
        assert isinstance(seg, Segment)
        assert seg.observations.shape == (1024, length, 2)
        assert seg.timesteps.dtype == np.int32 and seg.mask.dtype == np.float32
        starts = sampled_index(seg.observations[:, 0])
        for b, t in enumerate(starts):
            end = python_episode_end(dataset, t)
            start = t
            while start > 0 and ep[start - 1] == ep[t]:
                start -= 1
            for j in range(length):
                s = t + j
                if s <= end:
                    assert seg.mask[b, j] == 1.0
                    assert ep[s] == ep[t]
                    np.testing.assert_array_equal(seg.observations[b, j], dataset.observations[s])
                    np.testing.assert_array_equal(seg.actions[b, j], actions[s])
                    assert seg.rewards[b, j] == dataset.rewards[s]
                    assert seg.terminals[b, j] == dataset.terminals[s]
                    assert seg.timesteps[b, j] == s - start
                    np.testing.assert_allclose(seg.returns_to_go[b, j],
                                               rewards[s:end + 1].sum(), rtol=1e-5, atol=1e-5)
                else:
                    padded_rows += 1
                    assert seg.mask[b, j] == 0.0
                    assert not np.any(seg.observations[b, j]) and not np.any(seg.actions[b, j])
                    assert seg.rewards[b, j] == 0 and seg.terminals[b, j] == 0
                    assert seg.timesteps[b, j] == 0 and seg.returns_to_go[b, j] == 0
    assert padded_rows > 0


def test_samplers_compose_with_vmap(data):
    keys = jax.random.split(jax.random.key(0), 3)
    batch = jax.jit(jax.vmap(partial(sample_nstep, data, batch_size=8, n=3, discount=0.99)))(keys)
    assert batch.rewards.shape == (3, 8)
    assert not np.array_equal(batch.observations[0], batch.observations[1])


def test_extras_travel_with_their_transition(dataset):
    """Per-transition extras are gathered with the same indices as the transition they belong to."""
    n = dataset.num_transitions
    arrays = fit_transforms(dataset, normalize_observations=False, reward_scaling="none").apply(dataset)
    data = to_device(arrays, dataset, {"index": np.arange(n, dtype=np.float32)})
    key = jax.random.PRNGKey(3)
    for batch in (sample_uniform(data, key, 256, DISCOUNT), sample_nstep(data, key, 256, 3, DISCOUNT)):
        np.testing.assert_array_equal(np.asarray(batch.extras["index"]).astype(int), sampled_index(batch.observations))
    assert sample_uniform(to_device(arrays, dataset), key, 8, DISCOUNT).extras == {}
    with pytest.raises(ValueError, match="extras"):
        to_device(arrays, dataset, {"index": np.arange(n - 1)})
