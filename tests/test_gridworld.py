"""The stitching gridworld: dataset structure and exact values."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from offrl.data import registry
from offrl.datasets import gridworld as GD
from offrl.envs import gridworld as G


@pytest.fixture
def scratch_registry(monkeypatch):
    registry.list_datasets()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _trajectories(ds):
    """State sequences (observations then the final next observation) of every episode."""
    out = []
    for e in range(ds.num_episodes):
        sl = ds.episode_id == e
        states = G.state_of(ds.observations[sl]).tolist()
        out.append(states + [int(G.state_of(ds.next_observations[sl][-1:])[0])])
    return out


def test_no_trajectory_holds_both_s1_and_s9():
    ds = GD.gridworld_dataset(seed=0)
    trajs = _trajectories(ds)
    assert len(trajs) == GD.DEFAULT_SIZE // 2
    assert any(G.START_STATE in t for t in trajs) and any(G.GOAL_STATE in t for t in trajs)
    for t in trajs:
        assert not (G.START_STATE in t and G.GOAL_STATE in t), t


def test_union_of_transitions_connects_s1_to_s9():
    ds = GD.gridworld_dataset(seed=3, size=30)
    s, s2 = G.state_of(ds.observations), G.state_of(ds.next_observations)
    graph = collections.defaultdict(set)
    for a, b in zip(s.tolist(), s2.tolist()):
        graph[a].add(b)
    seen, queue = {G.START_STATE}, collections.deque([G.START_STATE])
    parent = {}
    while queue:
        u = queue.popleft()
        for v in graph[u]:
            if v not in seen:
                seen.add(v)
                parent[v] = u
                queue.append(v)
    assert G.GOAL_STATE in seen
    path, u = [G.GOAL_STATE], G.GOAL_STATE
    while u != G.START_STATE:
        u = parent[u]
        path.append(u)
    assert path[::-1] == [0, 1, 4, 7, 8]  # s1 -> s2 -> s5 -> s8 -> s9


def test_dataset_fields_and_determinism():
    ds = GD.gridworld_dataset(seed=0, size=31)
    assert ds.observations.shape == (31, 9) and ds.actions.shape == (31, 1)
    assert ds.info.metadata["discrete_actions"] == 4 and ds.info.env_id is None
    assert set(np.unique(ds.actions).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    # reward 1 exactly on the terminal step s8 -> s9
    term = ds.terminals > 0
    np.testing.assert_array_equal(ds.rewards > 0, term)
    assert np.all(G.state_of(ds.next_observations[term]) == G.GOAL_STATE)
    assert ds.timeouts[-1] == 1 and not np.any(term & (ds.timeouts > 0))
    # every transition agrees with the MDP
    for o, a, r, o2 in zip(G.state_of(ds.observations), ds.actions[:, 0], ds.rewards,
                           G.state_of(ds.next_observations)):
        assert G.step(int(o), int(a))[:2] == (int(o2), float(r))
    again = GD.gridworld_dataset(seed=0, size=31)
    np.testing.assert_array_equal(ds.observations, again.observations)
    other = GD.gridworld_dataset(seed=1, size=31)
    assert not np.array_equal(ds.observations, other.observations)


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99])
def test_value_iteration_matches_the_analytic_values(gamma):
    v, q = G.value_iteration(gamma)
    r, c = np.divmod(np.arange(9), 3)
    d = (2 - r) + (2 - c)  # Manhattan distance to s9
    v_expected = np.where(d > 0, gamma ** (d - 1.0), 0.0)
    np.testing.assert_allclose(v, v_expected, rtol=1e-10, atol=1e-12)
    nxt, _, _ = G.transition_table()
    q_expected = np.where(nxt == G.GOAL_STATE, 1.0, gamma ** d[nxt].astype(float))
    q_expected[G.GOAL_STATE] = 0.0
    np.testing.assert_allclose(q, q_expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(G.gridworld_q_star(gamma), q_expected, rtol=1e-10)
    np.testing.assert_allclose(G.gridworld_v_star(gamma), v_expected, rtol=1e-10)
    assert q[0, 1] == pytest.approx(gamma**3)  # s1 -> right


def test_in_sample_values_recover_the_optimum_along_the_stitched_path():
    gamma = 0.9
    q_in = G.gridworld_in_sample_q(gamma)
    q_star = G.gridworld_q_star(gamma)
    for s, a in [(0, 1), (1, 2), (4, 2), (7, 1)]:  # s1 R, s2 D, s5 D, s8 R
        assert q_in[s, a] == pytest.approx(q_star[s, a])
    assert q_in[1, 1] == 0.0  # s2 -> s3 leads nowhere in the data
    assert np.isnan(q_in[0, 2])  # s1 down is not in the data
    assert q_in[0, 1] == pytest.approx(gamma**3)


def test_gridworld_dataset_is_built_in(scratch_registry):
    assert "gridworld-stitch" in registry.list_datasets()
    ds = registry._REGISTRY["gridworld-stitch"][0](seed=0, size=None)
    assert len(ds) == GD.DEFAULT_SIZE
