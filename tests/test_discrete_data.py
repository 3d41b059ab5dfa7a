"""Discrete actions in the data layer: validation, files, transforms, device samplers, the built-in
CartPole/Acrobot/LunarLander datasets and evaluation with integer actions."""

from __future__ import annotations

import warnings

import h5py
import jax
import numpy as np
import pytest
from conftest import make_dataset, make_discrete_dataset

from offrl.data import Dataset, DatasetError, DatasetInfo, Transforms, fit_transforms, to_device
from offrl.data.integrity import array_checksum
from offrl.data.sampling import sample_nstep, sample_segments, sample_uniform


def arrays(n: int = 10, num_actions: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n)
    terminals[-1] = 1
    return {"observations": rng.normal(size=(n, 2)), "actions": rng.integers(0, num_actions, size=n),
            "rewards": rng.normal(size=n), "next_observations": rng.normal(size=(n, 2)), "terminals": terminals}


def check_error(match: list[str], info: DatasetInfo | None = None, **overrides) -> str:
    values = arrays()
    values.update(overrides)
    with pytest.raises(DatasetError) as err:
        Dataset.from_arrays(**values, info=info if info is not None else DatasetInfo(num_actions=3))
    message = str(err.value)
    for part in match:
        assert part in message, f"{part!r} not in {message!r}"
    assert "Fix:" in message
    return message


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_int_actions_are_stored_as_int32_vectors(shape):
    values = arrays()
    expected = values["actions"].copy()
    if shape == "column":
        values["actions"] = values["actions"][:, None]
    ds = Dataset.from_arrays(**values, info=DatasetInfo(num_actions=3))
    assert ds.actions.dtype == np.int32 and ds.actions.shape == (10,)
    np.testing.assert_array_equal(ds.actions, expected)
    assert ds.is_discrete and ds.num_actions == 3 and ds.act_dim == 1
    assert not ds.actions.flags.writeable
    assert "num_actions=3" in repr(ds)
    assert ds.observations.dtype == np.float32  # everything else unchanged


def test_whole_float_actions_are_accepted():
    values = arrays()
    ds = Dataset.from_arrays(**{**values, "actions": values["actions"].astype(np.float64)},
                             info=DatasetInfo(num_actions=3))
    np.testing.assert_array_equal(ds.actions, values["actions"])
    assert ds.actions.dtype == np.int32


def test_error_non_integer_actions():
    actions = arrays()["actions"].astype(np.float32)
    actions[4] = 1.5
    check_error(["'actions'", "must be integers", "1 values", "1.5", "row 4", "num_actions=3"], actions=actions)


@pytest.mark.parametrize("bad, first", [(3, "3"), (-1, "-1")])
def test_error_actions_outside_range(bad, first):
    actions = arrays()["actions"].copy()
    actions[[2, 7]] = bad
    check_error(["'actions'", "2 discrete actions lie outside [0, 3)", f"first: {first} at row 2",
                 "num_actions"], actions=actions)


def test_error_wrong_shape_names_argmax_for_one_hot():
    one_hot = np.eye(3)[arrays()["actions"]]
    check_error(["'actions'", "shape (N,) or (N, 1)", "(10, 3)", "argmax(axis=1)"], actions=one_hot)


def test_int_vector_without_num_actions_points_to_num_actions():
    check_error(["'actions'", "must be 2-D", "(10,)", "DatasetInfo(num_actions=K)"], info=DatasetInfo())


@pytest.mark.parametrize("value", [0, -2, 2.5, "3", True])
def test_error_bad_num_actions(value):
    with pytest.raises(DatasetError, match=r"info\.num_actions.*positive integer.*Fix:"):
        DatasetInfo(num_actions=value)


def test_error_bounds_on_a_discrete_dataset():
    with pytest.raises(DatasetError, match=r"action_low/action_high.*discrete.*Fix: leave"):
        DatasetInfo(num_actions=2, action_low=[0.0], action_high=[1.0])


def test_continuous_info_json_is_unchanged():
    info = DatasetInfo(name="x", action_low=[-1.0], action_high=[1.0])
    assert "num_actions" not in info.to_dict() and not info.is_discrete
    assert DatasetInfo.from_dict(DatasetInfo(num_actions=4).to_dict()).num_actions == 4


# -- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".hdf5", ".npz"])
def test_file_round_trip(tmp_path, suffix):
    ds = make_discrete_dataset(num_actions=5, name="disc", ref_min_score=0.0, ref_max_score=1.0)
    path = tmp_path / f"d{suffix}"
    (ds.save_hdf5 if suffix == ".hdf5" else ds.save_npz)(path)
    back = Dataset.load(path)
    for name, arr in ds.arrays().items():
        np.testing.assert_array_equal(back.arrays()[name], arr, err_msg=name)
        assert back.arrays()[name].dtype == arr.dtype, name
    assert back.info == ds.info and back.num_actions == 5
    assert array_checksum(back) == array_checksum(ds)
    if suffix == ".hdf5":
        with h5py.File(path, "r") as f:
            assert f["actions"].dtype == np.int32 and f["actions"].shape == (len(ds),)
            assert f.attrs["num_actions"] == 5


def test_plain_d4rl_style_file_with_int64_actions(tmp_path):
    """A file written by another tool: [N] int64 actions and a plain ``num_actions`` attribute."""
    values = arrays(n=12, num_actions=4)
    path = tmp_path / "plain.hdf5"
    with h5py.File(path, "w") as f:
        for key, value in values.items():
            f[key] = value
        f["actions"][...] = values["actions"].astype(np.int64)
        f.attrs["num_actions"] = 4
    ds = Dataset.from_hdf5(path)
    assert ds.num_actions == 4 and ds.actions.dtype == np.int32
    np.testing.assert_array_equal(ds.actions, values["actions"])
    with h5py.File(path, "a") as f:
        del f.attrs["num_actions"]
    with pytest.raises(DatasetError, match="num_actions"):
        Dataset.from_hdf5(path)


# -- transforms and device data ----------------------------------------------------------------


def test_transforms_leave_discrete_actions_untouched():
    ds = make_discrete_dataset(num_actions=4)
    t = fit_transforms(ds, normalize_observations=True, reward_scaling="minus_one")
    assert t.is_discrete and t.num_actions == 4 and t.action_low.shape == (0,)
    out = t.apply(ds)
    assert out["actions"].dtype == np.int32
    np.testing.assert_array_equal(out["actions"], ds.actions)
    np.testing.assert_allclose(out["rewards"], ds.rewards - 1.0)  # the rest is transformed as before
    assert out["observations"].dtype == np.float32
    idx = np.array([3, 0, 2])
    np.testing.assert_array_equal(t.action_from_unit(idx), idx)
    np.testing.assert_array_equal(t.action_to_unit(idx), idx)
    back = Transforms.from_dict(t.to_dict())
    assert back.num_actions == 4
    np.testing.assert_array_equal(back.apply(ds)["actions"], ds.actions)
    with pytest.raises(ValueError, match="num_actions"):
        t.apply(make_discrete_dataset(num_actions=3))


def test_continuous_transforms_dict_unchanged():
    t = fit_transforms(make_dataset(), normalize_observations=False)
    assert "num_actions" not in t.to_dict() and not t.is_discrete
    assert Transforms.from_dict(t.to_dict()).num_actions is None


def test_samplers_carry_int32_actions():
    ds = make_discrete_dataset(n=300, num_actions=4, episode_len=30)
    t = fit_transforms(ds, normalize_observations=False)
    data = to_device(t.apply(ds), ds)
    assert data.actions.dtype == np.int32 and data.actions.shape == (300,)
    key = jax.random.PRNGKey(0)
    obs = np.asarray(data.observations)
    for batch in (sample_uniform(data, key, 64), sample_nstep(data, key, 64, 3, 0.9)):
        assert batch.actions.dtype == np.int32 and batch.actions.shape == (64,)
        rows = [int(np.flatnonzero((obs == o).all(axis=1))[0]) for o in np.asarray(batch.observations)]
        np.testing.assert_array_equal(np.asarray(batch.actions), ds.actions[rows])
    seg = sample_segments(data, key, 8, 5)
    assert seg.actions.dtype == np.int32 and seg.actions.shape == (8, 5)
    assert np.all(np.asarray(seg.actions)[np.asarray(seg.mask) == 0] == 0)


# -- built-in datasets ------------------------------------------------------------------------


def test_discrete_datasets_are_registered():
    from offrl.data import list_datasets

    names = set(list_datasets())
    for task in ("cartpole", "acrobot", "lunarlander"):
        for level in ("random", "medium", "expert", "mixed"):
            assert f"{task}-{level}" in names


def test_generation_is_byte_identical_and_well_formed(tmp_path):
    from offrl.data.registry import make_dataset as make_file

    a = make_file("cartpole-mixed", seed=3, size=1500, out=tmp_path / "a.hdf5")
    b = make_file("cartpole-mixed", seed=3, size=1500, out=tmp_path / "b.hdf5")
    c = make_file("cartpole-mixed", seed=4, size=1500, out=tmp_path / "c.hdf5")
    assert a.read_bytes() == b.read_bytes()
    assert c.read_bytes() != a.read_bytes()
    ds = Dataset.load(a)
    assert len(ds) == 1500 and ds.num_actions == 2 and ds.actions.dtype == np.int32
    assert set(np.unique(ds.actions)) == {0, 1}
    inside = ~ds.episode_ends
    np.testing.assert_array_equal(ds.next_observations[inside], ds.observations[1:][inside[:-1]])
    # CartPole ends by a terminal exactly when the pole angle or the cart leaves its limits
    fell = (np.abs(ds.next_observations[:, 2]) > 0.2095) | (np.abs(ds.next_observations[:, 0]) > 2.4)
    np.testing.assert_array_equal(ds.terminals > 0, fell)
    np.testing.assert_array_equal(ds.rewards, np.ones(1500, np.float32))
    info = ds.info
    assert info.env_id == "CartPole-v1" and info.ref_max_score == 500.0 and info.ref_min_score < 30
    meta = info.metadata
    assert meta["behaviour_transitions"] == {"expert": 300, "medium": 600, "random": 600}
    assert meta["seed"] == 3 and meta["generator"] == "offrl.envs.discrete"


def test_lunar_lander_controller_is_gymnasiums_heuristic():
    import gymnasium as gym
    from gymnasium.envs.box2d.lunar_lander import heuristic

    from offrl.envs.discrete import lunar_lander_controller

    rng = np.random.default_rng(0)
    states = rng.normal(scale=0.6, size=(3000, 8))
    states[:, 6:] = rng.integers(0, 2, size=(3000, 2))
    env = gym.make("LunarLander-v3")
    expected = [heuristic(env, s) for s in states]
    env.close()
    np.testing.assert_array_equal(lunar_lander_controller(states), expected)
    assert len(set(expected)) == 4  # every branch of the heuristic was exercised


def test_controllers_solve_their_tasks():
    from offrl.envs.discrete import TASKS
    from offrl.evaluate import evaluate

    def policy(task):
        return lambda o: task.controller(o.reshape(-1, o.shape[-1])).reshape(o.shape[:2])

    cart = evaluate(policy(TASKS["cartpole"]), "CartPole-v1", episodes=3, seed=0)[0]
    assert cart["returns"] == [500.0, 500.0, 500.0]
    acro = evaluate(policy(TASKS["acrobot"]), "Acrobot-v1", episodes=3, seed=0)[0]
    assert max(acro["lengths"]) < 150 and acro["return_mean"] > -150  # random actions: -500
    lunar = evaluate(policy(TASKS["lunarlander"]), "LunarLander-v3", episodes=2, seed=0)[0]
    assert lunar["return_mean"] > 200


# -- evaluation --------------------------------------------------------------------------------


def test_evaluate_rejects_bad_discrete_actions():
    from offrl.evaluate import evaluate

    with pytest.raises(ValueError, match="non-integer action 0.5"):
        evaluate(lambda o: np.full(o.shape[:2], 0.5), "CartPole-v1", episodes=2)
    with pytest.raises(ValueError, match=r"action 2 outside Discrete\(2\)"):
        evaluate(lambda o: np.full(o.shape[:2], 2), "CartPole-v1", episodes=2)


def test_discrete_agent_evaluation_matches_a_manual_rollout(tmp_path):
    """evaluate() of a trained discrete agent gives the returns of stepping the env by hand with
    agent.act's integer actions (same reset seeds), and CartPole's return is the episode length."""
    import gymnasium as gym

    import offrl
    from offrl.algos import get_algo
    from offrl.datasets.discrete import generate_discrete

    ds = generate_discrete("cartpole", "expert", seed=0, size=3000)
    config = get_algo("bc_discrete").config_cls(hidden_dims=(32, 32), batch_size=64, actor_lr=3e-3)
    result = offrl.fit(config, ds, steps=400, chunk=200, eval_episodes=3, run_dir=tmp_path / "run",
                       progress=False, plot=False)
    evaluated = result.final_eval[0]
    assert evaluated["returns"] == [float(n) for n in evaluated["lengths"]]
    agent = offrl.load_agent(result.run_dir)
    manual = []
    for j in range(3):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=10_000 + j)  # the training loop's evaluation seeds
        total, done = 0.0, False
        while not done:
            action = agent.act(obs)
            assert isinstance(action, np.integer) and 0 <= action < 2
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        manual.append(total)
    assert manual == evaluated["returns"]
    assert evaluated["return_mean"] > 100  # cloning the expert balances the pole for a while


# -- Minari ------------------------------------------------------------------------------------


def test_minari_discrete_import_and_round_trip(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    from gymnasium import spaces
    from minari.data_collector.episode_buffer import EpisodeBuffer

    from offrl.data.minari_io import from_minari, to_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 3, size=6)
    buffer = EpisodeBuffer(observations=rng.normal(size=(7, 2)).astype(np.float32), actions=acts,
                           rewards=np.ones(6), terminations=np.r_[np.zeros(5, bool), True], truncations=np.zeros(6, bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("tests/disc-v0", [buffer], observation_space=spaces.Box(-9, 9, (2,), np.float32),
                                           action_space=spaces.Discrete(3))
    ds = from_minari("tests/disc-v0")
    assert ds.num_actions == 3 and ds.actions.dtype == np.int32
    np.testing.assert_array_equal(ds.actions, acts)
    assert ds.info.metadata["actions_flattened"] is False

    original = make_discrete_dataset(num_actions=4, name="disc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = to_minari(original, "tests/disc-out-v0")
    assert written.action_space == spaces.Discrete(4)
    back = from_minari("tests/disc-out-v0")
    assert back.num_actions == 4 and array_checksum(back) == array_checksum(original)
