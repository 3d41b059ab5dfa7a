"""PointMaze: planner, flat env, D4RL-style and stitch datasets, reference scores, registration."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from offrl.data import registry  # noqa: E402
from offrl.datasets import maze as MD  # noqa: E402
from offrl.envs import make_env  # noqa: E402
from offrl.envs import maze as M  # noqa: E402
from offrl.evaluate import evaluate  # noqa: E402


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test do not leak into the global registry."""
    registry.list_datasets()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _reach(maze: str, start_xy, goal_cell, noise: float, rng, max_steps: int = 400) -> bool:
    planner = M._planner(maze)
    env = M._make_inner(maze)
    try:
        env.reset(seed=0)
        point = env.point_env
        point.set_state(np.asarray(start_xy, dtype=np.float64), np.zeros(2))
        obs = point._get_obs()[0]
        goal = np.array(planner.cell_center(goal_cell))
        for _ in range(max_steps):
            a = planner.act(obs[None], goal)[0] + noise * rng.standard_normal(2)
            obs = point.step(np.clip(a, -1.0, 1.0))[0]
            if np.linalg.norm(obs[:2] - goal) <= M.GOAL_RADIUS:
                return True
        return False
    finally:
        env.close()


def _cells(maze: str, xy: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(c) for c in M._planner(maze).cell_of(xy).tolist()}


# -- maps, planner, env --------------------------------------------------------------------------


@pytest.mark.parametrize("maze", sorted(M.MAZES))
def test_maps_match_the_env_and_ids_are_registered(maze):
    spec = M.MAZES[maze]
    env = make_env(spec.env_id, MD._eval_env_kwargs(maze, "sparse"))
    try:
        assert env.unwrapped.maze.maze_map == [list(r) for r in spec.maze_map]
        assert env.spec.max_episode_steps == spec.episode_length
        assert env.observation_space.shape == (4,)
        obs, info = env.reset(seed=3)
        start = np.array(M._planner(maze).cell_center(spec.start_cell))
        assert obs.shape == (4,) and np.all(np.abs(obs[:2] - start) <= M.CELL_NOISE + 1e-9)
        np.testing.assert_array_equal(obs[2:], 0.0)
        assert info == {"success": False}
        obs2, r, term, trunc, info = env.step(np.zeros(2, np.float32))
        assert r == 0.0 and not term and not trunc and set(info) == {"success"}
    finally:
        env.close()


@pytest.mark.parametrize("env_id", [M.MAZES["umaze"].env_id, "PointMaze_UMaze-v3"])  # offrl's, gymnasium-robotics'
def test_building_a_maze_env_leaves_no_model_file_behind(env_id):
    env = make_env(env_id)
    try:
        inner = getattr(env.unwrapped, "_inner", env.unwrapped)
        assert os.path.basename(inner.tmp_xml_file_path).startswith("ant_maze")
        assert not os.path.exists(inner.tmp_xml_file_path)  # gymnasium-robotics wrote it; the env removed it
        env.reset(seed=0)
        env.step(env.action_space.sample())  # the simulator does not need the file again
    finally:
        env.close()


def test_planner_bfs_paths():
    p = M.MazePlanner(M.MAZES["umaze"].maze_map)
    assert p.path((3, 1), (1, 1)) == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert p.dist[p.cell_index((3, 1)), p.cell_index((1, 1))] == 6
    assert tuple(p.cell_of(np.array(p.cell_center((2, 3))))) == (2, 3)
    with pytest.raises(ValueError, match="wall"):
        p.cell_index((0, 0))
    # the scalar fast path is the batched controller
    rng = np.random.default_rng(0)
    obs = np.c_[rng.uniform(-2.4, 2.4, (50, 2)), rng.uniform(-5, 5, (50, 2))]
    goal = np.array(p.cell_center((1, 1)))
    k = p.cell_index((1, 1))
    fast = np.array([p.act_one(*o, goal[0], goal[1], k) for o in obs])
    np.testing.assert_allclose(p.act(obs, goal), fast, atol=1e-6)


def test_planner_reaches_the_goal_from_every_umaze_cell_and_sampled_medium_cells():
    rng = np.random.default_rng(0)
    for maze, cells in (("umaze", None), ("medium", 6)):
        spec = M.MAZES[maze]
        planner = M._planner(maze)
        free = [c for c in planner.free_cells if c != spec.goal_cell]
        if cells is not None:
            free = [free[i] for i in rng.choice(len(free), cells, replace=False)]
        for cell in free:
            start = np.array(planner.cell_center(cell)) + rng.uniform(-0.25, 0.25, 2)
            for noise in (0.0, MD.BEHAVIOUR_NOISE):
                assert _reach(maze, start, spec.goal_cell, noise, rng), (maze, cell, noise)


def test_evaluate_with_the_planner_succeeds_and_matches_the_reference_rollouts():
    maze, spec = "umaze", M.MAZES["umaze"]
    for reward_type in ("sparse", "dense"):
        res = evaluate(M.planner_policy(maze), spec.env_id, episodes=2, seed=0,
                       env_kwargs=MD._eval_env_kwargs(maze, reward_type))[0]
        assert res["success_rate"] == 1.0
        assert res["length_mean"] == spec.episode_length
        ref = MD._reference_positions(maze)["planner"][:2]
        expected = M._rewards(ref, np.array(M._planner(maze).cell_center(spec.goal_cell)), reward_type)
        np.testing.assert_allclose(res["returns"], expected.sum(axis=1), rtol=1e-9)
    scores = MD.maze_reference_scores(maze, "sparse")
    assert scores["ref_min_score"] == 0.0 and scores["ref_max_score"] > 150.0
    assert scores["ref_max_success_rate"] == 1.0 and scores["episodes"] == MD.REFERENCE_EPISODES


# -- datasets ------------------------------------------------------------------------------------


def test_generation_is_deterministic_and_sparse_dense_share_the_stream():
    a = MD.generate_maze("umaze", "sparse", seed=0, size=700)
    b = MD.generate_maze("umaze", "sparse", seed=0, size=700)
    for k, v in a.arrays().items():
        np.testing.assert_array_equal(v, b.arrays()[k], err_msg=k)
    c = MD.generate_maze("umaze", "sparse", seed=1, size=700)
    assert not np.array_equal(a.observations, c.observations)
    d = MD.generate_maze("umaze", "dense", seed=0, size=700)
    np.testing.assert_array_equal(a.observations, d.observations)
    np.testing.assert_array_equal(a.actions, d.actions)
    goal = np.array(M._planner("umaze").cell_center(M.MAZES["umaze"].goal_cell))
    dist = np.linalg.norm(a.next_observations[:, :2].astype(np.float64) - goal, axis=1)
    np.testing.assert_array_equal(a.rewards, (dist <= M.GOAL_RADIUS).astype(np.float32))
    np.testing.assert_allclose(d.rewards, np.exp(-dist), rtol=1e-5)
    s = MD.generate_maze("umaze", "stitch", seed=0, size=500)
    t = MD.generate_maze("umaze", "stitch", seed=0, size=500)
    for k, v in s.arrays().items():
        np.testing.assert_array_equal(v, t.arrays()[k], err_msg=k)


def test_navigate_data_is_one_stream_cut_by_timeouts():
    ds = MD.generate_maze("umaze", "sparse", seed=0, size=1000)
    assert len(ds) == 1000 and not ds.terminals.any()
    np.testing.assert_array_equal(np.flatnonzero(ds.timeouts), [299, 599, 899, 999])
    # one stream: the successor of every step (episode cuts included) is the next observation
    np.testing.assert_array_equal(ds.next_observations[:-1], ds.observations[1:])
    assert np.all(np.abs(ds.actions) <= 1.0) and ds.observations.shape == (1000, 4)
    info = ds.info
    assert info.env_id == "offrl/PointMazeUMaze-v0"
    assert info.env_kwargs == {"reward_type": "sparse", "start_cell": [3, 1], "goal_cell": [1, 1]}
    assert info.metadata["reference_episodes"] == 20 and "ref_max_score_std" in info.metadata
    assert info.ref_max_score > info.ref_min_score
    # the stream visits many cells (random goals) and reaches the evaluation goal
    assert len(_cells("umaze", ds.observations[:, :2])) == 7 and ds.rewards.sum() > 0


@pytest.mark.parametrize("maze,size", [("umaze", 4000), ("medium", 3000)])
def test_stitch_segments_never_hold_both_start_and_goal(maze, size):
    spec = M.MAZES[maze]
    ds = MD.generate_maze(maze, "stitch", seed=0, size=size)
    assert len(ds) == size and not ds.terminals.any() and ds.timeouts[-1] == 1
    assert ds.info.env_kwargs["reward_type"] == "sparse"
    lengths = ds.episode_lengths()
    assert lengths.max() <= MD.STITCH_MAX_STEPS and ds.num_episodes > 20
    touches_start = touches_goal = 0
    for e in range(ds.num_episodes):
        sl = ds.episode_id == e
        cells = _cells(maze, np.r_[ds.observations[sl, :2], ds.next_observations[sl, :2]])
        assert not (spec.start_cell in cells and spec.goal_cell in cells), e
        touches_start += spec.start_cell in cells
        touches_goal += spec.goal_cell in cells
        obs, nxt = ds.observations[sl], ds.next_observations[sl]
        np.testing.assert_array_equal(nxt[:-1], obs[1:])  # contiguous inside a segment
    # both ends of the task are covered, by different segments: stitching is needed and possible
    assert touches_start > 0 and touches_goal > 0 and ds.rewards.sum() > 0


def test_maze_datasets_are_built_in(scratch_registry):
    names = registry.list_datasets()
    expected = {f"maze-{m}-{v}" for m in ("umaze", "medium", "large") for v in ("sparse", "dense", "stitch")}
    assert expected <= set(names)
    maker = registry._REGISTRY["maze-medium-dense"][0]
    ds = maker(seed=0, size=300)
    assert ds.info.name == "maze-medium-dense" and len(ds) == 300
    assert ds.info.env_kwargs["reward_type"] == "dense"
    with pytest.raises(Exception, match="already registered"):
        MD.register_maze_datasets(registry.register_dataset)  # names are unique


def test_maze_plot_shows_positions_on_the_map(tmp_path):
    import matplotlib.image as mpimg

    from offrl.data.inspect import plot_returns

    ds = MD.generate_maze("umaze", "stitch", seed=0, size=500)
    assert M.maze_of_env_id(ds.info.env_id) == "umaze" and M.maze_of_env_id("Pendulum-v1") is None
    path = plot_returns(ds, tmp_path / "maze.png")
    height, width = mpimg.imread(path).shape[:2]
    assert width > 2 * height  # two panels side by side: returns and the visited positions
