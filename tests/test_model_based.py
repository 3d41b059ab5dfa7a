"""Model-based offline RL in the training loop: rollouts and their ring buffer, MOPO / COMBO / MOBILE reductions."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import offrl
from offrl.dynamics import add_to_buffer, init_buffer, sample_buffer

from conftest import make_dataset, small_config


def _fit(config, dataset, tmp_path, tag, steps=40, **kw):
    return offrl.fit(config, dataset, steps=steps, chunk=20, run_dir=tmp_path / tag, progress=False, plot=False,
                     evaluate_at_end=False, **kw)


def _params(state, names=("actor", "critic", "temperature")):
    return [np.asarray(x) for n in names for x in jax.tree.leaves(getattr(state, n).params)] + \
        [np.asarray(x) for x in jax.tree.leaves(state.target_critic_params)]


def test_mopo_without_penalty_and_model_rows_trains_exactly_as_sac_offline(tmp_path, offrl_home):
    dataset = make_dataset()
    sac = small_config(offrl.algos.get_algo("sac_offline"))
    mopo = small_config(offrl.algos.get_algo("mopo"), penalty=0.0, real_ratio=1.0)
    a = _fit(sac, dataset, tmp_path, "sac", seed=3)
    b = _fit(mopo, dataset, tmp_path, "mopo", seed=3)
    for x, y in zip(_params(a.states), _params(b.states)):
        np.testing.assert_array_equal(x, y)
    assert int(b.states.buffer.count[0]) > 0  # the rollouts ran (and did not touch the updates)


def test_buffer_keeps_the_last_transitions_and_samples_only_filled_slots():
    buf = init_buffer(8, obs_dim=1, action_dim=1)
    valid = jnp.array([True, False, True, True, False, True])
    rewards = jnp.arange(1.0, 7.0)
    transitions = (rewards[:, None], rewards[:, None], rewards, rewards[:, None], jnp.zeros(6), jnp.zeros(6))
    buf = add_to_buffer(buf, transitions, valid)
    assert int(buf.count) == 4 and int(buf.position) == 4
    np.testing.assert_array_equal(np.asarray(buf.rewards[:4]), [1, 3, 4, 6])  # invalid rows never stored
    drawn = np.asarray(sample_buffer(buf, jax.random.PRNGKey(0), 2000, 0.99).rewards)
    assert set(drawn.tolist()) == {1.0, 3.0, 4.0, 6.0}  # slots 4..7 (unfilled, reward 0) never drawn
    # more than fit: the buffer wraps and keeps the newest
    more = jnp.arange(10.0, 16.0)
    buf = add_to_buffer(buf, (more[:, None], more[:, None], more, more[:, None], jnp.zeros(6), jnp.zeros(6)), jnp.ones(6, bool))
    assert int(buf.count) == 8 and int(buf.position) == 2
    np.testing.assert_array_equal(np.asarray(buf.rewards), [14, 15, 4, 6, 10, 11, 12, 13])
    big = jnp.arange(100.0, 120.0)
    buf = add_to_buffer(buf, (big[:, None], big[:, None], big, big[:, None], jnp.zeros(20), jnp.zeros(20)), jnp.ones(20, bool))
    assert sorted(np.asarray(buf.rewards).tolist()) == list(range(112, 120))  # only the last 8 of 20


def test_rollout_adds_delta_and_stores_nothing_after_a_terminal(monkeypatch):
    import importlib

    ro = importlib.import_module("offrl.dynamics.rollout")  # the module (the package exports a function of that name)
    from offrl.dynamics import DynamicsModel, ModelData

    def fake_predict(model, obs, actions):  # Delta s = 1 (+ NaN for start states below -5), r = s; no noise
        delta = jnp.where(obs[:, :1] < -5, jnp.nan, 1.0)
        mean = jnp.concatenate([delta, obs[:, :1]], axis=-1)
        return jnp.stack([mean, mean]), jnp.full((2,) + mean.shape, -80.0)

    monkeypatch.setattr(ro, "predict", fake_predict)
    dyn = DynamicsModel(params={}, input_mean=jnp.zeros(2), input_std=jnp.ones(2), elites=jnp.array([0, 1]), term_params=None,
                        hidden_dims=(), obs_dim=1, num_members=2)
    model = ModelData(dyn, jnp.zeros(1), jnp.ones(1), -jnp.ones(1), jnp.ones(1), 1.0, 0.0,
                      rule=lambda s, a, s2: s2[..., 0] > 2.5)
    start = jnp.array([[0.0], [2.0], [-10.0]])
    (obs, actions, rewards, next_obs, terminals, u), valid = ro.rollout(model, lambda o, k: jnp.zeros((o.shape[0], 1)), start,
                                                                    jax.random.PRNGKey(0), horizon=5)
    valid = np.asarray(valid)
    # start 0: 0->1, 1->2, 2->3 (terminal, stored), then nothing; start 2: 2->3 terminal at once; start -10: NaN, nothing
    np.testing.assert_array_equal(valid[:, 0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(valid[:, 1], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(valid[:, 2], [0, 0, 0, 0, 0])
    np.testing.assert_allclose(np.asarray(next_obs)[:3, 0, 0], [1, 2, 3], atol=1e-6)  # Delta s added to s
    np.testing.assert_allclose(np.asarray(obs)[:3, 0, 0], [0, 1, 2])
    np.testing.assert_array_equal(np.asarray(terminals)[:3, 0], [0, 0, 1])
    np.testing.assert_allclose(np.asarray(rewards)[:3, 0], [0, 1, 2], atol=1e-6)
    buf = add_to_buffer(init_buffer(16, 1, 1), (obs, actions, rewards, next_obs, terminals, u), jnp.asarray(valid))
    assert int(buf.count) == 4 and float(np.asarray(buf.terminals).sum()) == 2.0


def bandit_dataset(n=400, seed=0):
    """One-step bandit: every action of the data sits near a = 0; reward r = a; every transition ends the episode."""
    from offrl.data import Dataset, DatasetInfo

    rng = np.random.default_rng(seed)
    obs = 0.01 * rng.normal(size=(n, 1)).astype(np.float32)
    actions = np.clip(0.05 * rng.normal(size=(n, 1)), -1, 1).astype(np.float32)
    return Dataset.from_arrays(observations=obs, actions=actions, rewards=actions[:, 0].copy(), next_observations=obs,
                               terminals=np.ones(n, np.float32), timeouts=np.zeros(n, np.float32),
                               info=DatasetInfo(name="bandit-at-zero", action_low=[-1.0], action_high=[1.0]))


BANDIT = dict(hidden_dims=(32, 32), batch_size=64, horizon=1, rollout_every=50, rollout_batch_size=64, buffer_size=2000,
              dynamics_hidden_dims=(32, 32), dynamics_members=3, dynamics_elites=3, dynamics_max_epochs=30,
              uncertainty="ensemble_disagreement", termination="learned")


@pytest.mark.parametrize("name", ["mopo"])
def test_bandit_penalty_keeps_the_policy_on_the_data(name, tmp_path, offrl_home):
    """An extrapolating model (r = a learned near a = 0) lures an unpenalised policy off the support; a large lambda keeps it there."""
    dataset, algo = bandit_dataset(), offrl.algos.get_algo(name)
    actions = {}
    for penalty in (0.0, 50.0):
        config = algo.config_cls(**BANDIT, penalty=penalty)
        result = _fit(config, dataset, tmp_path, f"p{penalty}", steps=800, seed=0)
        agent = offrl.load_agent(result.run_dir)
        actions[penalty] = float(agent.act(np.zeros((1, 1), np.float32))[0, 0])
    assert actions[0.0] > 0.5, actions  # left the support (data at 0 +- 0.05) towards the model's larger rewards
    assert abs(actions[50.0]) < 0.25, actions


def test_combo_with_only_real_rows_trains_exactly_as_cql(tmp_path, offrl_home):
    dataset = make_dataset()
    shared = dict(num_samples=4)
    cql = small_config(offrl.algos.get_algo("cql"), alpha=2.0, bc_steps=0, **shared)
    combo = small_config(offrl.algos.get_algo("combo"), beta=2.0, real_ratio=1.0, **shared)
    a = _fit(cql, dataset, tmp_path, "cql", seed=1)
    b = _fit(combo, dataset, tmp_path, "combo", seed=1)
    for x, y in zip(_params(a.states), _params(b.states)):
        np.testing.assert_array_equal(x, y)
    c = _fit(dataclasses.replace(combo, real_ratio=0.5), dataset, tmp_path, "mixed", seed=1)
    assert not np.array_equal(_params(c.states)[0], _params(b.states)[0])  # model rows change the training
