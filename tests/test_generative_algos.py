"""Known answers of the diffusion and flow algorithms on a 2-D bandit.

One state, four clusters of dataset actions at the corners (+-0.75, +-0.75), reward 10 at (0.75, 0.75)
and 0 at the others. The policy-improving algorithms (diffusion_ql, idql, fql) must act nearest the rewarded
corner and well inside its quadrant; behaviour cloning lands between the corners (the data's mean).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import offrl
from offrl.algos import DataSpec
from offrl.data import Dataset, DatasetInfo, fit_transforms
from offrl.data.sampling import Batch
from offrl.train import device_data, init_agents, make_train_chunk

from conftest import small_config

CORNERS = 0.75 * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)  # the first one is rewarded
STEPS = 1000


def bandit(n=512, seed=0):
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n, 2))
    actions = (0.75 * signs + 0.05 * rng.normal(size=(n, 2))).astype(np.float32)
    rewards = np.where((signs > 0).all(axis=1), 10.0, 0.0).astype(np.float32)
    obs = np.zeros((n, 1), np.float32)
    return Dataset.from_arrays(observations=obs, actions=actions, rewards=rewards, next_observations=obs,
                               terminals=np.ones(n, np.float32), timeouts=np.zeros(n, np.float32),
                               info=DatasetInfo(name="corner-bandit"))


def nearest_corner(actions):
    return np.argmin(np.linalg.norm(actions[:, None] - CORNERS[None], axis=-1), axis=1)


def bandit_actions(name, steps, **overrides):
    """Deterministic actions (unit box) of 32 copies of the state after ``steps`` updates, trained as ``offrl.fit``
    trains (the algorithm's transforms, batches and compiled chunk) without the run folder around it."""
    algo = offrl.algos.get_algo(name)
    defaults = algo.config_cls()
    sampler = {k: getattr(defaults, k) for k in ("diffusion_steps", "num_samples", "flow_steps") if hasattr(defaults, k)}
    config = small_config(algo, batch_size=128, **{**sampler, **overrides})
    dataset = bandit()
    transforms = fit_transforms(dataset, algo.normalize_observations, algo.reward_scaling)
    data = device_data(algo, config, dataset, transforms)
    states, keys = init_agents(algo, config, DataSpec.from_dataset(dataset), 0, 1, steps)
    states, _, _ = make_train_chunk(algo, config, steps, 1)(states, keys, data)
    state = jax.tree.map(lambda x: x[0], states)
    obs = transforms.normalize_obs(np.zeros((32, 1), np.float32))
    return np.asarray(jax.jit(lambda s, o: algo.act(config, s, o, jax.random.PRNGKey(0), True))(state, obs))


@pytest.mark.parametrize("name, overrides", [
    # the averaged denoiser that idql acts with follows the live one over ~100 of these 1,000 updates
    pytest.param("idql", {"actor_ema_tau": 0.01}, marks=pytest.mark.xdist_group("idql")),
    pytest.param("diffusion_ql", {"steps": STEPS // 2}, marks=pytest.mark.xdist_group("diffusion_ql")),
    # the distillation weight is set for this bandit's Q scale (10) rather than locomotion's (hundreds)
    pytest.param("fql", {"alpha": 0.1}, marks=pytest.mark.xdist_group("fql")),
])
def test_policy_improvement_chooses_the_rewarded_corner(name, overrides):
    overrides = dict(overrides)
    actions = bandit_actions(name, overrides.pop("steps", STEPS), **overrides)
    assert np.all(nearest_corner(actions) == 0), (name, actions[:8])
    assert np.mean(np.all(actions >= 0.3, axis=1)) >= 0.9, (name, actions[:8])  # well inside the corner's quadrant


@pytest.mark.xdist_group("idql")
def test_idql_acts_with_its_averaged_denoiser():
    """act samples from ema_actor_params, which move by actor_ema_tau per update: the live denoiser's weights do
    not change the actions, the average's do; after one update the average is tau * live + (1 - tau) * initial."""
    from offrl.algos import idql

    config = idql.Config(actor_hidden_dims=(16,), hidden_dims=(16,), num_samples=4, actor_ema_tau=0.25, batch_size=8)
    state = idql.init(config, DataSpec(3, 2), jax.random.PRNGKey(0), 10)
    batch = Batch(observations=np.ones((8, 3), np.float32), actions=np.zeros((8, 2), np.float32),
                                      rewards=np.ones(8, np.float32), next_observations=np.ones((8, 3), np.float32),
                                      terminals=np.zeros(8, np.float32), discounts=np.full(8, 0.99, np.float32))
    new, _ = jax.jit(lambda s, b: idql.update(config, s, b, jax.random.PRNGKey(1)))(state, batch)
    expected = jax.tree.map(lambda live, old: 0.25 * live + 0.75 * old, new.actor.params, state.actor.params)
    for got, want in zip(jax.tree.leaves(new.ema_actor_params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    obs = np.ones((5, 3), np.float32)
    act_jit = jax.jit(lambda s: idql.act(config, s, obs, jax.random.PRNGKey(2)))  # one compile for the three calls
    act = lambda s: np.asarray(act_jit(s))
    zeroed = jax.tree.map(np.zeros_like, new.actor.params)
    np.testing.assert_array_equal(act(new), act(new.replace(actor=new.actor.replace(params=zeroed))))
    assert not np.allclose(act(new), act(new.replace(ema_actor_params=new.actor.params)))


@pytest.mark.xdist_group("bc")
def test_behaviour_cloning_does_not_choose_the_rewarded_corner():
    actions = bandit_actions("bc", STEPS)
    assert np.all(np.abs(actions) < 0.3), actions[:8]  # the data's mean, between the four corners


def test_decision_diffuser_windows_stay_in_their_episode_and_returns_are_discounted():
    """Two episodes of 3 and 4 steps, reward 1 per step: the condition is the discounted return-to-go, min-max
    normalised; each window holds consecutive states of one episode, the last state repeated past its end."""
    from offrl.algos import decision_diffuser as dd
    from offrl.config import ConfigError
    from offrl.data import to_device

    n = 7
    obs = np.arange(n, dtype=np.float32)[:, None]  # state i is the number i
    ends = np.zeros(n, np.float32)
    ends[[2, 6]] = 1
    dataset = Dataset.from_arrays(observations=obs, actions=np.zeros((n, 1), np.float32), rewards=np.ones(n, np.float32),
                                  next_observations=obs + 1, terminals=np.zeros(n, np.float32), timeouts=ends,
                                  info=DatasetInfo(name="two-episodes"))
    config = dd.Config(planning_horizon=3, discount=0.5, batch_size=64)
    arrays = {k: getattr(dataset, k) for k in ("observations", "actions", "rewards", "next_observations", "terminals")}
    condition = dd.device_extras(config, arrays, dataset)["condition"]
    returns = np.array([1.75, 1.5, 1.0, 1.875, 1.75, 1.5, 1.0])  # sum_k 0.5^k to each episode's end
    np.testing.assert_allclose(condition, (returns - 1.0) / 0.875, rtol=1e-6)
    data = to_device(arrays, dataset, {"condition": condition})
    batch = jax.jit(lambda k: dd.make_batch(config, data, k))(jax.random.PRNGKey(0))
    windows, first = np.asarray(batch.extras["window"])[..., 0], np.asarray(batch.observations)[:, 0]
    last = np.where(first <= 2, 2, 6)
    np.testing.assert_array_equal(windows, np.minimum(first[:, None] + np.arange(3), last[:, None]))
    np.testing.assert_allclose(np.asarray(batch.extras["condition"]), condition[first.astype(int)])
    with pytest.raises(ConfigError, match="sampling_steps = 60 exceeds diffusion_steps = 50"):
        dd.init(dd.Config(sampling_steps=60), DataSpec(1, 1), jax.random.PRNGKey(0), 10)
