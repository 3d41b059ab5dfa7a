"""Datasets recorded on an env with Dict observations: the loader's flattening is recorded and reused.

A Minari dataset made by Minari's own ``DataCollector`` on gymnasium-robotics' PointMaze (Dict
observations ``achieved_goal``, ``desired_goal``, ``observation``) loads, trains, evaluates, and its
agent acts on the env's raw dict observations.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from offrl.data import Dataset, DatasetError, DatasetInfo
from offrl.data.spaces import flatten_observations, space_layout

ENV_ID = "PointMaze_UMaze-v3"
DATASET_ID = "tests/pointmaze-umaze-random-v0"
EPISODE_STEPS = 40


@pytest.fixture(scope="module")
def maze_store(tmp_path_factory):
    """A private Minari store holding 200 random steps on PointMaze, and the raw dict observations."""
    minari = pytest.importorskip("minari")
    import gymnasium as gym
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    store = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        mp.setenv("HF_HUB_OFFLINE", "1")
        env = minari.DataCollector(gym.make(ENV_ID, max_episode_steps=EPISODE_STEPS))
        env.action_space.seed(0)
        rows = []  # the observation each action was taken in: the dataset's rows
        obs = env.reset(seed=0)[0]
        for _ in range(200):
            rows.append(obs)
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs = env.reset()[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env.create_dataset(DATASET_ID, algorithm_name="random")
        env.close()
        yield store, rows


def test_env_dict_observation_flattens_to_the_loaders_row(maze_store):
    from offrl.data.minari_io import from_minari

    store, rows = maze_store
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        ds = from_minari(DATASET_ID)
    layout = ds.info.obs_layout
    assert layout == {"type": "Dict", "spaces": [
        ["achieved_goal", {"type": "Box", "shape": [2]}], ["desired_goal", {"type": "Box", "shape": [2]}],
        ["observation", {"type": "Box", "shape": [4]}]]}
    assert len(rows) == len(ds) == 200
    for t in (0, 1, 39, 40, 199):  # a first, a middle, an episode's last and a next episode's first row
        flat, single = flatten_observations(layout, rows[t])
        assert single and flat.dtype == np.float32
        np.testing.assert_array_equal(flat[0], ds.observations[t])
        np.testing.assert_array_equal(flat[0], np.concatenate(
            [rows[t]["achieved_goal"], rows[t]["desired_goal"], rows[t]["observation"]]).astype(np.float32))
    # a batch as a dict of stacked arrays and as a list of dicts
    batch = {k: np.stack([r[k] for r in rows[:5]]) for k in rows[0]}
    np.testing.assert_array_equal(flatten_observations(layout, batch)[0], ds.observations[:5])
    assert flatten_observations(layout, batch)[1] is False
    np.testing.assert_array_equal(flatten_observations(layout, rows[:5])[0], ds.observations[:5])
    # flat rows pass through; a dict missing a key is a clear error
    np.testing.assert_array_equal(flatten_observations(layout, ds.observations[3])[0][0], ds.observations[3])
    with pytest.raises(DatasetError, match="no key 'desired_goal'.*Fix"):
        flatten_observations(layout, {k: v for k, v in rows[0].items() if k != "desired_goal"})
    with pytest.raises(DatasetError, match=r"shape \(3,\) per row, expected \(4,\)"):
        flatten_observations(layout, {**rows[0], "observation": np.zeros(3)})


def test_layout_travels_in_files_and_is_absent_for_flat_data(tmp_path):
    from gymnasium import spaces

    space = spaces.Dict({"b": spaces.Discrete(3, start=1), "a": spaces.Box(0, 1, (2, 2))})
    layout = space_layout(space)
    assert [k for k, _ in layout["spaces"]] == ["a", "b"]  # gymnasium's (sorted) key order
    obs = space.sample()
    np.testing.assert_array_equal(flatten_observations(layout, obs)[0][0],
                                  spaces.flatten(space, obs).astype(np.float32))
    n = 4
    arrays = dict(observations=np.zeros((n, 7)), actions=np.zeros((n, 1)), rewards=np.zeros(n),
                  next_observations=np.zeros((n, 7)), terminals=np.zeros(n), timeouts=np.eye(n)[-1])
    ds = Dataset.from_arrays(**arrays, info=DatasetInfo(name="x", obs_layout=layout))
    for path in (tmp_path / "d.hdf5", tmp_path / "d.npz"):
        (ds.save_hdf5 if path.suffix == ".hdf5" else ds.save_npz)(path)
        assert Dataset.load(path).info.obs_layout == layout
    flat_info = DatasetInfo(name="x").to_dict()
    assert "obs_layout" not in flat_info and "obs_layout" not in json.dumps(flat_info)
    with pytest.raises(DatasetError, match="info.obs_layout"):
        DatasetInfo(obs_layout=[1, 2])


def test_fit_evaluates_on_the_dict_env_and_the_agent_acts_on_raw_observations(maze_store, tmp_path):
    import gymnasium as gym

    import offrl
    from offrl.data import load_dataset

    store, rows = maze_store
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        ds = load_dataset(f"minari:{DATASET_ID}")
        result = offrl.fit(offrl.algos.bc.Config(batch_size=32), ds, steps=4, chunk=2, eval_episodes=2,
                           run_dir=tmp_path / "run", progress=False, plot=False)
    final = result.final_eval[0]
    assert final["lengths"] == [EPISODE_STEPS, EPISODE_STEPS]  # env_kwargs keep the collection's limit
    assert final["initial_observations"].shape == (2, 8)

    agent = offrl.load_agent(tmp_path / "run")
    assert agent.dataset_info.obs_layout == ds.info.obs_layout
    env = gym.make(ENV_ID, max_episode_steps=EPISODE_STEPS)
    obs, _ = env.reset(seed=10_000)  # the first evaluation episode's start
    flat = flatten_observations(agent.dataset_info.obs_layout, obs)[0][0]
    np.testing.assert_array_equal(flat, final["initial_observations"][0])
    action = agent.act(obs)
    assert action.shape == (2,)
    np.testing.assert_array_equal(action, agent.act(flat))
    batch = {k: np.stack([obs[k], rows[1][k]]) for k in obs}
    np.testing.assert_array_equal(agent.act(batch), agent.act(np.stack([flat, ds.observations[1]])))
    env.step(action)
    env.close()
