"""Contract tests that every registered algorithm passes automatically.

Adding an algorithm to the registry adds it to every test here: finite losses, parameters that
change, actions of the right shape inside the bounds, determinism, vmap over seeds, and the
checkpoint round trip.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

import jax
import numpy as np
import pytest

import offrl
from offrl.algos import DataSpec, list_algos
from offrl.data import fit_transforms
from offrl.train import device_data, init_agents, make_train_chunk

from conftest import make_dataset, make_discrete_dataset, small_config

ALGOS = sorted(list_algos())
DISCRETE = [name for name in ALGOS if list_algos()[name].discrete]
CONTINUOUS = [name for name in ALGOS if name not in DISCRETE]
STATEFUL = [name for name in ALGOS if list_algos()[name].stateful]


def grouped(names):
    """One xdist group per algorithm: its tests share one worker and so its compiled programs."""
    return [pytest.param(n, marks=pytest.mark.xdist_group(n)) for n in names]


@pytest.fixture
def dataset(name):
    """The contract dataset of the algorithm under test: int actions for a discrete algorithm; episodes whose
    transitions chain for a sequence algorithm (it refuses data whose episodes cannot be recovered)."""
    algo = offrl.algos.get_algo(name)
    return make_discrete_dataset() if algo.discrete else make_dataset(chained=algo.stateful)


def _act(agent, obs, **kwargs):
    """``agent.act``; a sequence policy starts new episodes first (its history is tested in test_carried_context)."""
    if agent.stateful:
        agent.reset()
    return agent.act(obs, **kwargs)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _train(algo_name, dataset, tmp_path, tag, steps=40, seeds=1, seed=0, seed_strategy="auto"):
    algo = offrl.algos.get_algo(algo_name)
    return offrl.fit(small_config(algo), dataset, steps=steps, seeds=seeds, seed=seed, chunk=20, seed_strategy=seed_strategy,
                     run_dir=tmp_path / tag, progress=False, plot=False, evaluate_at_end=False)


def test_registry_is_populated():
    assert {"bc", "td3bc", "iql", "sac_offline"} <= set(ALGOS)
    for name, algo in list_algos().items():
        assert algo.description and algo.name == name


def _field_docstrings(cls) -> dict[str, str | None]:
    """Map each annotated field of a dataclass to the string literal right below it (or None).

    Fields inherited from a dataclass base (a registered Config subclass that changes one default)
    are read from the class that declares them last: the bases first, then each subclass, whose
    redeclared fields must carry their own docstring.
    """
    docs = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for stmt, nxt in zip(body, body[1:] + [None]):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                is_doc = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)
                docs[stmt.target.id] = nxt.value.value if is_doc else None
    return docs


@pytest.mark.parametrize("name", grouped(ALGOS))
def test_config_is_frozen_and_documented(name):
    algo = offrl.algos.get_algo(name)
    config = algo.config_cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 1  # frozen: configs are static arguments of compiled functions
    hash(config)
    docs = _field_docstrings(algo.config_cls)
    assert set(docs) == {f.name for f in dataclasses.fields(algo.config_cls)}
    undocumented = [f for f, d in docs.items() if not d or not d.strip()]
    assert not undocumented, f"{name}.Config fields without a docstring: {undocumented}"


@pytest.mark.parametrize("name", grouped(ALGOS))
def test_update_finite_and_changes_params(name, dataset):
    algo = offrl.algos.get_algo(name)
    config = small_config(algo)
    transforms = fit_transforms(dataset, algo.normalize_observations, algo.reward_scaling)
    data = device_data(algo, config, dataset, transforms)  # as offrl.fit builds it, with the algorithm's extras
    states, keys = init_agents(algo, config, DataSpec.from_dataset(dataset), 0, 1, 40)  # as _train: compiled once
    before = _leaves(states)
    chunk = make_train_chunk(algo, config, 20, 1)
    states, keys, metrics = chunk(states, keys, data)
    after = _leaves(states)
    assert metrics, "update returned no metrics"
    for key, value in metrics.items():
        assert np.isfinite(np.asarray(value)).all(), f"{name}: metric {key} is not finite: {value}"
    changed = [not np.array_equal(a, b) for a, b in zip(before, after) if a.dtype.kind == "f"]
    assert sum(changed) >= len(changed) // 2, f"{name}: most parameters did not change after 20 updates"


@pytest.mark.parametrize("name", grouped(CONTINUOUS))
def test_actions_shape_and_bounds(name, tmp_path):
    dataset = make_dataset(act_dim=2, action_low=(-2.0, 0.0), action_high=(2.0, 0.5), chained=name in STATEFUL)
    result = _train(name, dataset, tmp_path, "run")
    agent = offrl.load_agent(result.run_dir)
    obs = np.random.default_rng(1).normal(size=(64, dataset.obs_dim)).astype(np.float32) * 10
    for deterministic in (True, False):
        actions = _act(agent, obs, deterministic=deterministic)
        assert actions.shape == (64, 2)
        assert np.all(actions >= [-2.0, 0.0]) and np.all(actions <= [2.0, 0.5])
    single = _act(agent, obs[0])
    assert single.shape == (2,)
    with pytest.raises(ValueError, match="observations must have shape"):
        _act(agent, np.zeros((4, dataset.obs_dim + 1)))


@pytest.mark.parametrize("name", grouped(DISCRETE))
def test_discrete_actions_are_indices(name, tmp_path):
    dataset = make_discrete_dataset(num_actions=4)
    result = _train(name, dataset, tmp_path, "run")
    agent = offrl.load_agent(result.run_dir)
    assert agent.num_actions == 4
    obs = np.random.default_rng(1).normal(size=(64, dataset.obs_dim)).astype(np.float32) * 10
    for deterministic in (True, False):
        actions = agent.act(obs, deterministic=deterministic)
        assert actions.shape == (64,) and actions.dtype == np.int64
        assert np.all((actions >= 0) & (actions < 4))
    single = agent.act(obs[0])
    assert np.ndim(single) == 0 and isinstance(single, np.integer)
    with pytest.raises(ValueError, match="observations must have shape"):
        agent.act(np.zeros((4, dataset.obs_dim + 1)))


@pytest.mark.parametrize("name", grouped(ALGOS))
def test_wrong_action_kind_is_a_clear_error(name, tmp_path):
    """A continuous algorithm refuses discrete actions and vice versa, naming the algorithms that fit."""
    discrete = offrl.algos.get_algo(name).discrete
    other = make_dataset() if discrete else make_discrete_dataset()
    needs = "needs discrete actions" if discrete else "needs continuous"
    with pytest.raises(ValueError, match=needs) as err:
        _train(name, other, tmp_path, "run", steps=20)
    assert "Fix: use a" in str(err.value) and (CONTINUOUS if discrete else DISCRETE)[0] in str(err.value)


@pytest.mark.parametrize("name", grouped(ALGOS))
def test_same_seed_same_result(name, dataset, tmp_path):
    a = _train(name, dataset, tmp_path, "a", seed=3)
    b = _train(name, dataset, tmp_path, "b", seed=3)
    c = _train(name, dataset, tmp_path, "c", seed=4)
    for x, y in zip(_leaves(a.states), _leaves(b.states)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(_leaves(a.states), _leaves(c.states)))


@pytest.mark.parametrize("name", grouped(ALGOS))
def test_several_seeds_in_one_call_match_separate_runs(name, dataset, tmp_path):
    first = _train(name, dataset, tmp_path, "first", seed=5)
    second = _train(name, dataset, tmp_path, "second", seed=6)
    vmapped = _train(name, dataset, tmp_path, "vmap", seeds=2, seed=5, seed_strategy="vmap")
    mapped = _train(name, dataset, tmp_path, "map", seeds=2, seed=5, seed_strategy="map")
    for i, single in enumerate((first, second)):
        for v, m, y in zip(_leaves(vmapped.states), _leaves(mapped.states), _leaves(single.states)):
            assert v.shape[0] == 2 and m.shape[0] == 2
            # vmapped matmuls may sum in another order: equal up to float32 round-off
            np.testing.assert_allclose(v[i], y[0], rtol=2e-3, atol=2e-4)
            np.testing.assert_array_equal(m[i], y[0])  # map calls the one-seed program: same bits
    vmapped_params = _leaves(vmapped.states)
    assert any(not np.allclose(p[0], p[1]) for p in vmapped_params if p.dtype.kind == "f"), "seeds must differ"


@pytest.mark.parametrize("name", grouped(ALGOS))
def test_checkpoint_round_trip(name, dataset, tmp_path):
    result = _train(name, dataset, tmp_path, "run", seeds=2)
    agent = offrl.load_agent(result.run_dir / "checkpoint.msgpack")
    assert agent.step == 40 and agent.num_seeds == 2 and agent.algo.name == name
    for x, y in zip(_leaves(result.states), _leaves(agent.states)):
        np.testing.assert_array_equal(x, y)
    obs = dataset.observations[:8]
    np.testing.assert_array_equal(_act(agent, obs, seed_index=1), _act(offrl.load_agent(result.run_dir), obs, seed_index=1))
    if agent.algo.q_value is not None:  # Q(s0, pi(s0)) as every evaluation logs it (the over-estimation diagnostic)
        from offrl.train import make_start_values

        algo, config = agent.algo, agent.config
        starts = np.asarray(dataset.observations[:6]).reshape(2, 3, -1)
        values = make_start_values(algo, config, result.transforms)(result.states, starts)
        assert values.shape == (2, 3) and np.all(np.isfinite(values))
        state = jax.tree.map(lambda x: x[1], result.states)
        o = result.transforms.normalize_obs(starts[1])
        direct = algo.q_value(config, state, o, algo.act(config, state, o, jax.random.PRNGKey(0), True))
        np.testing.assert_allclose(values[1], np.asarray(direct), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", grouped(STATEFUL))
def test_carried_context_save_load_act(name, dataset, tmp_path):
    """A sequence policy saved and loaded acts through its carry: the agent's history over several calls equals
    the algorithm's own init_carry/act_carry steps, the evaluation policy's too, and reset() starts afresh."""
    from offrl.train import make_policy

    result = _train(name, dataset, tmp_path, "run", seeds=2)
    agent = offrl.load_agent(result.run_dir)
    algo, config, spec = agent.algo, agent.config, DataSpec.from_dataset(dataset)
    assert agent.stateful and agent.return_range == pytest.approx(
        (dataset.episode_returns().min(), dataset.episode_returns().max()), rel=1e-6)
    obs, rewards = np.asarray(dataset.observations[:15]).reshape(5, 3, -1), np.asarray(dataset.rewards[:15]).reshape(5, 3)
    agent.reset(target_return=-10.0)
    got = [agent.act(obs[0], seed_index=1)] + [agent.act(obs[t], seed_index=1, reward=rewards[t - 1]) for t in range(1, 5)]

    state = jax.tree.map(lambda x: x[1], result.states)
    carry = algo.init_carry(config, spec, np.full(3, -10.0 * result.transforms.reward_scale, np.float32))
    step = jax.jit(lambda c, o, r, s: algo.act_carry(config, state, c, o, r, s, jax.random.PRNGKey(0), True))
    for t in range(5):
        o = result.transforms.normalize_obs(obs[t])
        r = result.transforms.scale_rewards(rewards[t - 1]) if t else np.zeros(3, np.float32)
        unit, carry = step(carry, o, r, np.full(3, t == 0))
        np.testing.assert_allclose(got[t], result.transforms.action_from_unit(np.asarray(unit)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pass the reward of the previous step"):
        agent.act(obs[0], seed_index=1)
    with pytest.raises(ValueError, match="call agent.reset"):
        agent.act(obs[0, :2], seed_index=1, reward=0.0)
    agent.reset(target_return=-10.0)
    np.testing.assert_array_equal(agent.act(obs[0], seed_index=1), got[0])  # a new episode forgets the old one

    policy = make_policy(algo, config, result.transforms, spec, -10.0)  # evaluation: every seed's envs at once
    for t in range(5):
        both = policy(result.states, np.stack([obs[t], obs[t]]), np.stack([rewards[t - 1]] * 2) if t else np.zeros((2, 3)),
                      np.full((2, 3), t == 0))
        np.testing.assert_allclose(both[1], got[t], rtol=1e-5, atol=1e-5)


@pytest.mark.xdist_group("iql")
def test_seeds_share_one_compiled_init_and_train_chunk(tmp_path):
    """Any number of seeds, and every fit of the same config, reuse one compiled init and one compiled
    one-seed train chunk: the states keep one pytree structure (its optimisers are static metadata),
    so a jitted chunk never sees a "new" input type and compiles again."""
    from offrl.train import _compiled_init, _make_train_chunk

    dataset, algo = make_dataset(), offrl.algos.get_algo("iql")
    for tag, seeds in (("one", 1), ("two", 2), ("three", 3), ("again", 1)):
        _train("iql", dataset, tmp_path, tag, seeds=seeds, seed_strategy="map")
    config, spec = small_config(algo), DataSpec.from_dataset(dataset)
    assert _compiled_init(algo, config, spec, 40)._cache_size() == 1
    assert _make_train_chunk(algo, config, 20, 1, "single")._cache_size() == 1


@pytest.mark.xdist_group("iql")
def test_evaluation_policy_compiles_once_per_config_and_uses_each_fits_transforms(tmp_path):
    """make_policy / make_start_values reuse one compiled program per (algorithm, config), across fits
    with different observation statistics, and each applies its own fit's normalisation."""
    import dataclasses

    from offrl.train import _batched_act, _batched_start_values, make_policy, make_start_values

    dataset, algo = make_dataset(), offrl.algos.get_algo("iql")
    result = _train("iql", dataset, tmp_path, "run", steps=20)
    config = small_config(algo)
    base = dataclasses.replace(result.transforms, normalize_observations=True)
    shifted = dataclasses.replace(base, obs_mean=base.obs_mean + 0.5)
    obs = np.asarray(dataset.observations[:4])[None]
    state = jax.tree.map(lambda x: x[0], result.states)
    make_policy(algo, config, base)(result.states, obs), make_start_values(algo, config, base)(result.states, obs)
    compiled = _batched_act(algo, config)._cache_size(), _batched_start_values(algo, config)._cache_size()
    assert min(compiled) >= 1, "make_policy / make_start_values must run the cached (algorithm, config) programs"
    for transforms in (base, shifted, base):
        o = transforms.normalize_obs(obs[0])
        direct = algo.act(config, state, o, jax.random.PRNGKey(0), True)
        np.testing.assert_allclose(make_policy(algo, config, transforms)(result.states, obs)[0],
                                   transforms.action_from_unit(np.asarray(direct)), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(make_start_values(algo, config, transforms)(result.states, obs)[0],
                                   np.asarray(algo.q_value(config, state, o, direct)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(make_policy(algo, config, shifted)(result.states, obs),
                           make_policy(algo, config, base)(result.states, obs))
    # other tests in this worker may have compiled these for other shapes: none is added here
    assert (_batched_act(algo, config)._cache_size(), _batched_start_values(algo, config)._cache_size()) == compiled
