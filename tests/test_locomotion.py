"""Zoo policy files and the D4RL-protocol locomotion datasets generated from them.

The shipped zoo is replaced by a temporary one holding small randomly initialised policies, so
these tests do not depend on the trained policies (and run in seconds).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.datasets import locomotion
from offrl.envs import make_env
from offrl.envs import policies as zoo
from offrl.nets import TanhGaussianActor
from offrl.zoo import save_zoo_policy

ENV = "Hopper-v5"


def actor_params(seed: int, obs_dim: int = 11, action_dim: int = 3, hidden=(16, 16)):
    actor = TanhGaussianActor(hidden, action_dim)
    return actor, actor.init(jax.random.PRNGKey(seed), jnp.zeros((1, obs_dim)))


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    """A zoo folder for Hopper-v5 with expert, medium and two series policies."""
    folder = tmp_path / "zoo" / ENV
    for i, role in enumerate(["expert", "medium", "series-00", "series-01"]):
        _, params = actor_params(i)
        save_zoo_policy(folder / f"{role}.msgpack", params, {"role": role, "env": ENV, "env_steps": 1000 * i,
                                                                  "return_mean": 10.0 * i, "policy_file": f"{role}.msgpack"})
    refs = {"env": ENV, "random": {"return_mean": -20.0}, "expert": {"return_mean": 3000.0}}
    (folder / "references.json").write_text(json.dumps(refs))
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    monkeypatch.setattr(locomotion, "NUM_ENVS", 4)
    return folder


def test_zoo_policy_file_matches_the_flax_actor(tmp_path):
    """The numpy forward pass of a saved policy equals TanhGaussianActor.apply on the same parameters."""
    actor, params = actor_params(3)
    save_zoo_policy(tmp_path / "p.msgpack", params, {"env": ENV})
    policy = zoo.load_zoo_policy_file(tmp_path / "p.msgpack")
    obs = np.random.default_rng(0).normal(size=(7, 11)).astype(np.float32)
    mean, log_std = actor.apply(params, jnp.asarray(obs))
    np_mean, np_log_std = policy.mean_log_std(obs)
    np.testing.assert_allclose(np_mean, np.asarray(mean), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np_log_std, np.asarray(log_std), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(policy.act(obs), np.tanh(np.asarray(mean)), atol=1e-5)
    sampled = policy.act(obs, np.random.default_rng(1))
    assert sampled.shape == (7, 3) and np.all(np.abs(sampled) <= 1) and not np.allclose(sampled, policy.act(obs))
    with pytest.raises(ValueError, match=r"shape \(batch, 11\)"):
        policy.act(obs[:, :5])


def test_corrupt_or_missing_zoo_policy_is_reported(tmp_path):
    (tmp_path / "p.msgpack").write_bytes(b"\x00garbage")
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(zoo.ZooError, match="cannot read zoo policy"):
        zoo.load_zoo_policy_file(tmp_path / "p.msgpack")
    with pytest.raises(zoo.ZooError, match="missing"):
        zoo.load_zoo_policy_file(tmp_path / "q.msgpack")


def test_generation_is_deterministic_and_seed_dependent(fake_zoo):
    a = locomotion.generate_locomotion("hopper-medium", seed=0, size=600)
    b = locomotion.generate_locomotion("hopper-medium", seed=0, size=600)
    c = locomotion.generate_locomotion("hopper-medium", seed=1, size=600)
    for key, value in a.arrays().items():
        np.testing.assert_array_equal(value, b.arrays()[key], err_msg=key)
    assert not np.array_equal(a.observations, c.observations)
    assert a.num_transitions == 600 and a.info.ref_min_score == -20.0 and a.info.ref_max_score == 3000.0
    assert a.info.metadata["behaviour_policies"]["medium"]["return_mean"] == 10.0


def _healthy(obs: np.ndarray) -> np.ndarray:
    """Hopper-v5's health check on an observation (z, angle, then the rest of the state)."""
    z, angle, rest = obs[:, 0], obs[:, 1], obs[:, 1:]
    return (z > 0.7) & (np.abs(angle) < 0.2) & np.all(np.abs(rest) < 100.0, axis=1)


def test_episodes_terminals_and_timeouts_follow_the_environment(fake_zoo, monkeypatch):
    """Terminals exactly where the hopper becomes unhealthy; time limits become timeouts; episodes are contiguous."""
    ds = locomotion.generate_locomotion("hopper-random", seed=0, size=3000)
    ends = ds.terminals + ds.timeouts
    np.testing.assert_array_equal(ds.terminals.astype(bool), ~_healthy(ds.next_observations))
    inside = np.flatnonzero(ends[:-1] == 0)
    np.testing.assert_array_equal(ds.next_observations[inside], ds.observations[inside + 1])
    assert ds.terminals.sum() > 50 and ds.timeouts[-1] + ds.terminals[-1] == 1
    assert np.all(np.abs(ds.actions) <= 1.0) and ds.actions.std() > 0.5  # uniform random actions

    # HalfCheetah never terminates: with a 100-step time limit every episode ends with a timeout
    # (one env, so episodes come in order) and the cut one too.
    monkeypatch.setattr(locomotion, "NUM_ENVS", 1)
    monkeypatch.setattr(locomotion, "make_env", lambda env_id: make_env(env_id, max_episode_steps=100))
    timed = locomotion.collect("HalfCheetah-v5", lambda o, rng: np.zeros((o.shape[0], 6)), 250, 0, "t")
    assert np.flatnonzero(timed["tout"]).tolist() == [99, 199, 249] and timed["term"].sum() == 0


def test_medium_expert_is_medium_then_expert_and_replay_uses_the_series(fake_zoo):
    me = locomotion.generate_locomotion("hopper-medium-expert", seed=2, size=800)
    medium = locomotion.generate_locomotion("hopper-medium", seed=2, size=400)
    expert = locomotion.generate_locomotion("hopper-expert", seed=2, size=400)
    for key, value in me.arrays().items():
        np.testing.assert_array_equal(value, np.concatenate([medium.arrays()[key], expert.arrays()[key]]), err_msg=key)
    replay = locomotion.generate_locomotion("hopper-medium-replay", seed=0, size=900)
    assert list(replay.info.metadata["behaviour_policies"]) == ["series-00", "series-01", "medium"]
    assert replay.num_transitions == 900


def test_names_are_registered_only_with_zoo_policies(fake_zoo, tmp_path, monkeypatch):
    names: list[str] = []
    locomotion.register_locomotion_datasets(lambda name, maker, desc: names.append(name))
    assert names == [f"hopper-{k}" for k in locomotion.KINDS]
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "empty")
    names.clear()
    locomotion.register_locomotion_datasets(lambda name, maker, desc: names.append(name))
    assert names == []
    with pytest.raises(ValueError, match="unknown locomotion dataset"):
        locomotion.generate_locomotion("hopper-best")
