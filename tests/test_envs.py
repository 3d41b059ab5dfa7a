"""Environments, scripted Pendulum controller, evaluation loop, built-in datasets and registry."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offrl.data.dataset import Dataset, DatasetError
from offrl.data import registry
from offrl.datasets import builtin
from offrl.envs import make_env, normalized_score
from offrl.envs import pendulum as pend
from offrl.evaluate import evaluate


def _batched(fn):
    """Wrap a (B, obs_dim) -> (B, act_dim) function into the evaluate() policy signature."""

    def policy(obs):
        p, e, d = obs.shape
        return fn(obs.reshape(p * e, d)).reshape(p, e, -1)

    return policy


def _zero_policy(obs):
    return np.zeros(obs.shape[:2] + (1,), dtype=np.float32)


# -- envs ------------------------------------------------------------------------------------


def test_make_env_unknown_id_lists_close_matches():
    with pytest.raises(ValueError, match="Pendulum-v1"):
        make_env("Pendulm-v1")
    env = make_env("Pendulum-v1", max_episode_steps=7)
    assert env.spec.max_episode_steps == 7
    env.close()


def test_make_env_drops_the_model_file_warning_and_forwards_other_mujoco_warnings():
    mujoco = pytest.importorskip("mujoco")
    from offrl import envs

    received: list[str] = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(received.append)  # stands for MuJoCo's default printer
    try:
        make_env("HalfCheetah-v5").close()  # its XML sets the deprecated `settotalmass`
        assert received == []  # dropped, not printed
        assert mujoco.get_mju_user_warning() is not None  # our recorder is back after make_env
        with envs._mujoco_model_warnings():
            with pytest.warns(RuntimeWarning, match="MuJoCo: something else"):
                mujoco.get_mju_user_warning()("something else")
        mujoco.get_mju_user_warning()("after")
        assert received == ["after"]
    finally:
        mujoco.set_mju_user_warning(previous)
    # without the filter, gymnasium's HalfCheetah model does warn (so the first check above can fail)
    mujoco.set_mju_user_warning(received.append)
    try:
        gym.make("HalfCheetah-v5").close()
    finally:
        mujoco.set_mju_user_warning(previous)
    assert any("settotalmass" in m for m in received[1:])


def test_normalized_score_known_values():
    np.testing.assert_allclose(normalized_score([-1000.0, -150.0, -50.0], -1000.0, -150.0),
                               [0.0, 100.0, 100.0 * 950.0 / 850.0])
    assert float(normalized_score(5.0, 0.0, 10.0)) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        normalized_score(1.0, 3.0, 3.0)


# -- controller ------------------------------------------------------------------------------


def test_controller_shapes_bounds_and_lqr_gain():
    rng = np.random.default_rng(0)
    th = rng.uniform(-np.pi, np.pi, 64)
    obs = np.stack([np.cos(th), np.sin(th), rng.uniform(-8, 8, 64)], axis=1)
    a = pend.controller_action(obs)
    assert a.shape == (64, 1) and a.dtype == np.float32
    assert np.all(np.abs(a) <= 2.0)
    np.testing.assert_allclose(pend.lqr_gain(), [19.693, 5.2625], atol=1e-3)
    # upright at rest: no torque needed
    assert pend.controller_action(np.array([[1.0, 0.0, 0.0]]))[0, 0] == 0.0
    noisy = pend.noisy_controller_action(obs, np.random.default_rng(1), 0.5, 0.3)
    assert noisy.shape == (64, 1) and np.all(np.abs(noisy) <= 2.0)
    assert not np.allclose(noisy, a)
    np.testing.assert_array_equal(pend.noisy_controller_action(obs, np.random.default_rng(1), 0.0), a)


def test_controller_beats_random_by_a_wide_margin():
    # measured (reset seeds 0..4): controller about -143, uniform random about -1213
    ctrl = evaluate(_batched(pend.controller_action), "Pendulum-v1", episodes=5, seed=0)[0]
    rng = np.random.default_rng(0)
    rand = evaluate(lambda o: rng.uniform(-2, 2, o.shape[:2] + (1,)), "Pendulum-v1", episodes=5, seed=0)[0]
    assert ctrl["return_mean"] > -250.0
    assert rand["return_mean"] < -800.0
    assert ctrl["return_mean"] - rand["return_mean"] > 600.0
    assert ctrl["length_mean"] == 200.0 and "success_rate" not in ctrl


# -- evaluate --------------------------------------------------------------------------------


def test_evaluate_matches_manual_rollout():
    seed, episodes = 11, 3
    res = evaluate(_zero_policy, "Pendulum-v1", episodes=episodes, seed=seed,
                   ref_min_score=-1200.0, ref_max_score=-150.0)
    assert len(res) == 1
    manual = []
    for j in range(episodes):
        env = gym.make("Pendulum-v1")
        env.reset(seed=seed + j)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(np.zeros(1, dtype=np.float32))
            total += r
            done = term or trunc
        manual.append(total)
        env.close()
    np.testing.assert_allclose(res[0]["returns"], manual, rtol=1e-12)
    assert res[0]["return_mean"] == pytest.approx(np.mean(manual))
    assert res[0]["return_std"] == pytest.approx(np.std(manual))
    ns = normalized_score(manual, -1200.0, -150.0)
    assert res[0]["normalized_score"] == pytest.approx(ns.mean())
    assert res[0]["normalized_score_std"] == pytest.approx(ns.std())


def test_evaluate_num_policies_matches_separate_runs_and_clips():
    def two(obs):  # policy 0: zero torque, policy 1: the controller
        assert obs.shape == (2, 3, 3) and obs.dtype == np.float32
        return np.stack([_zero_policy(obs[:1])[0], pend.controller_action(obs[1])])

    joint = evaluate(two, "Pendulum-v1", episodes=3, num_policies=2, seed=5)
    alone0 = evaluate(_zero_policy, "Pendulum-v1", episodes=3, seed=5)[0]
    alone1 = evaluate(_batched(pend.controller_action), "Pendulum-v1", episodes=3, seed=5)[0]
    assert len(joint) == 2
    np.testing.assert_allclose(joint[0]["returns"], alone0["returns"], rtol=1e-12)
    np.testing.assert_allclose(joint[1]["returns"], alone1["returns"], rtol=1e-12)
    assert joint[1]["return_mean"] > joint[0]["return_mean"] + 300

    # out-of-bound actions are clipped to the Box: 10 behaves like 2
    big = evaluate(lambda o: np.full(o.shape[:2] + (1,), 10.0), "Pendulum-v1", episodes=2, seed=0,
                   max_episode_steps=20)[0]
    two_ = evaluate(lambda o: np.full(o.shape[:2] + (1,), 2.0), "Pendulum-v1", episodes=2, seed=0,
                    max_episode_steps=20)[0]
    assert big["returns"] == two_["returns"] and big["length_mean"] == 20.0

    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda o: np.zeros((1, 2)), "Pendulum-v1", episodes=2, max_episode_steps=3)


def test_evaluate_discrete_actions():
    # CartPole: always pushing left falls in a few steps; episodes of different lengths
    res = evaluate(lambda o: np.zeros(o.shape[:2]), "CartPole-v1", episodes=3, seed=0)[0]
    assert all(8 <= n <= 20 for n in res["lengths"])
    assert res["returns"] == [float(n) for n in res["lengths"]]


# -- built-in datasets -----------------------------------------------------------------------


def test_builtin_dataset_is_deterministic_and_well_formed():
    a = builtin.pendulum_mixed(seed=3, size=1100)
    b = builtin.pendulum_mixed(seed=3, size=1100)
    c = builtin.pendulum_mixed(seed=4, size=1100)
    assert isinstance(a, Dataset) and len(a) == 1100
    for name, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, b.arrays()[name], err_msg=name)
    assert not np.array_equal(a.observations, c.observations)
    assert a.terminals.sum() == 0
    # five full 200-step episodes, then one cut at the size limit
    np.testing.assert_array_equal(np.flatnonzero(a.timeouts), [199, 399, 599, 799, 999, 1099])
    inside = a.timeouts[:-1] == 0
    np.testing.assert_array_equal(a.next_observations[:-1][inside], a.observations[1:][inside])
    info = a.info
    assert info.env_id == "Pendulum-v1" and info.action_low == (-2.0,) and info.action_high == (2.0,)
    assert info.ref_min_score < -1000 and info.ref_max_score > -200
    for key in ("generator_version", "seed", "size", "behaviour", "ref_min_score_std", "ref_max_score_std"):
        assert key in info.metadata
    assert info.metadata["seed"] == 3 and info.metadata["size"] == 1100


def test_builtin_behaviour_returns_are_ordered():
    rets = {k: builtin.BUILTIN_DATASETS[f"pendulum-{k}"][0](seed=0, size=2000).episode_returns().mean()
            for k in ("random", "medium", "expert")}
    assert rets["random"] < -900 and rets["expert"] > -250
    assert rets["random"] + 150 < rets["medium"] < rets["expert"] - 300


# -- registry --------------------------------------------------------------------------------


def test_registry_unknown_name_lists_known_names(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFRL_HOME", str(tmp_path))
    names = registry.list_datasets()
    assert {"pendulum-random", "pendulum-medium", "pendulum-expert", "pendulum-mixed"} <= set(names)
    with pytest.raises(DatasetError, match="pendulum-mixed") as err:
        registry.load_dataset("pendulum-nope")
    assert "must exist" in str(err.value)
    with pytest.raises(DatasetError, match="does not exist"):
        registry.load_dataset(str(tmp_path / "missing.hdf5"))


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test do not leak into the global registry."""
    registry.list_datasets()  # load the built-ins first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_cache_path_uses_offrl_home_and_roundtrips(tmp_path, monkeypatch, scratch_registry):
    monkeypatch.setenv("OFFRL_HOME", str(tmp_path))
    assert registry.dataset_path("pendulum-mixed") == tmp_path / "datasets" / "pendulum-mixed.hdf5"
    assert registry.dataset_path("pendulum-mixed", seed=2) == tmp_path / "datasets" / "pendulum-mixed-seed2.hdf5"

    calls = []

    def tiny(seed, size):
        calls.append((seed, size))
        return builtin.pendulum_expert(seed=seed, size=400)

    registry.register_dataset("test-tiny", tiny, "400 expert transitions")
    assert registry.list_datasets()["test-tiny"] == "400 expert transitions"
    first = registry.load_dataset("test-tiny", seed=1)
    path = tmp_path / "datasets" / "test-tiny-seed1.hdf5"
    assert path.is_file() and calls == [(1, None)]
    again = registry.load_dataset("test-tiny", seed=1)  # from the cache, no regeneration
    assert calls == [(1, None)]
    np.testing.assert_array_equal(again.observations, first.observations)
    assert again.info == first.info
    by_path = registry.load_dataset(path)
    np.testing.assert_array_equal(by_path.actions, first.actions)


def test_corrupt_cache_file_message_and_regenerate(tmp_path, monkeypatch, scratch_registry):
    monkeypatch.setenv("OFFRL_HOME", str(tmp_path))
    registry.register_dataset("test-tiny-corrupt", lambda seed, size: builtin.pendulum_random(seed=seed, size=200),
                              "tiny")
    path = registry.dataset_path("test-tiny-corrupt")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(DatasetError) as err:
        registry.load_dataset("test-tiny-corrupt")
    msg = str(err.value)
    assert "corrupt" in msg and str(path) in msg and "delete the file" in msg and "regenerate=True" in msg
    ds = registry.load_dataset("test-tiny-corrupt", regenerate=True)
    assert len(ds) == 200
    assert len(registry.load_dataset("test-tiny-corrupt")) == 200
    with pytest.raises(DatasetError, match="already registered"):
        registry.register_dataset("test-tiny-corrupt", builtin.pendulum_random, "again")


def test_registry_leaves_no_test_entries():
    assert not any(name.startswith("test-") for name in registry.list_datasets())
