"""PointMaze (gymnasium-robotics, MuJoCo) with a waypoint planner and D4RL-style datasets.

The environment
---------------
``offrl/PointMazeUMaze-v0``, ``offrl/PointMazeMedium-v0`` and ``offrl/PointMazeLarge-v0``
(registered with gymnasium when this module is imported; time limits 300 / 600 / 800 steps as
D4RL's maze2d and gymnasium-robotics' PointMaze) wrap gymnasium-robotics' ``PointMazeEnv`` so that
``gymnasium.make(env_id, **env_kwargs)`` rebuilds the evaluation task exactly:

* observation: flat float64 ``[x, y, vx, vy]`` (D4RL maze2d layout; no goal in the observation);
* action: force in ``[-1, 1]^2`` (the env's own action space);
* a FIXED goal: the centre of ``goal_cell`` (no noise), and a fixed start: the centre of
  ``start_cell`` plus uniform noise in ``[-start_noise, start_noise]^2`` drawn from the reset seed;
* reward on the successor position, the env's own rule: ``sparse`` = 1 when within 0.45 of the
  goal, ``dense`` = ``exp(-distance)``; the task never terminates (continuing, like D4RL), episodes
  end by the time limit; ``info["success"]`` is the env's own criterion (distance <= 0.45).

Cells are ``(row, col)`` indices into the maze map (1 = wall); cell ``(i, j)`` has centre
``x = j + 0.5 - width / 2``, ``y = height / 2 - i - 0.5`` (maze_size_scaling 1).

The planner
-----------
:class:`MazePlanner` runs BFS over the free cells of the maze map (4-neighbourhood) and steers with
the PD law ``action = clip(10 * (waypoint - pos) - 1 * vel, -1, 1)``, where the waypoint is the
centre of the next cell on a shortest cell path to the goal cell, or the goal itself once the
point is in the goal cell.

The datasets
------------
``maze-{umaze,medium,large}-{sparse,dense}`` follow D4RL's maze2d recipe: ONE long stream in which
the planner (with Gaussian action noise, std 0.3) drives the point mass to a uniformly random goal
cell (centre + uniform noise of +-0.25); when it gets within 0.45 of that goal a new random goal is
drawn. The stream is cut into fixed-length episodes (300 / 600 / 800 steps) that end with
``timeouts = 1`` (there are no terminals); the state is not reset at the cuts. Rewards are relabelled
with the fixed evaluation goal (as D4RL's maze2d), computed on ``next_observations`` exactly as the
environment computes them. The sparse and dense variants of a maze share their observations and
actions (same seed -> same stream).

``maze-{umaze,medium,large}-stitch`` (sparse reward) hold short segments instead: each starts at
rest near the centre of a random free cell, and the planner (same noise) drives it to a goal cell 3
to 5 BFS steps away (a cell path of 4 to 6 cells); the segment ends (``timeouts = 1``) when the goal
is reached or after :data:`STITCH_MAX_STEPS` steps. A segment that visits both the evaluation start
cell and the evaluation goal cell (any of its observations or next observations) is discarded, so
no trajectory solves the evaluation task: a policy has to stitch segments together.

Reference scores (per maze and reward type, measured once per process on the evaluation env,
reset seeds 0..19, full time limit): ``ref_min_score`` is the mean return of uniform random
actions, ``ref_max_score`` that of the noise-free planner; their std and the episode count are
stored in the dataset metadata.

Default sizes (every variant): 200k (umaze), 400k (medium), 600k (large) transitions; the makers
take ``size`` to override. Generation runs at about 11k-20k steps/s on one CPU core.

Generation is deterministic: the same name, seed and size give identical arrays.

``gymnasium-robotics`` is imported lazily (building an env or a dataset needs it; importing this
module, registering the ids and using the planner do not).
"""

from __future__ import annotations

import collections
import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo

__all__ = [
    "MAZES",
    "MazeSpec",
    "MazePlanner",
    "PointMazeFlatEnv",
    "env_id_for",
    "planner_policy",
    "random_policy",
    "generate_maze",
    "maze_reference_scores",
    "register_maze_datasets",
    "MAZE_DATASETS",
    "GENERATOR_VERSION",
]

#: Bump when generation changes in a way that changes the arrays (cached files are then stale).
GENERATOR_VERSION = 1

#: The env's success radius (gymnasium-robotics MazeEnv: distance <= 0.45).
GOAL_RADIUS = 0.45
#: PD gains of the planner.
KP = 10.0
KD = 1.0
#: Behaviour noise: std of the Gaussian noise added to the planner's action (then clipped).
BEHAVIOUR_NOISE = 0.3
#: Uniform noise half-width around a cell centre for random collection goals and starts.
CELL_NOISE = 0.25
#: Stitch segments: goal cells this many BFS steps from the start cell (path of 4..6 cells).
STITCH_MIN_DIST = 3
STITCH_MAX_DIST = 5
#: A stitch segment ends after this many steps if its goal was not reached.
STITCH_MAX_STEPS = 200
REFERENCE_EPISODES = 20
REFERENCE_SEED = 0

# The maps of gymnasium_robotics.envs.maze.maps (copied so that the planner and the dataset
# registry do not import gymnasium-robotics; tests check they equal what the env exposes).
_U_MAZE = (
    (1, 1, 1, 1, 1),
    (1, 0, 0, 0, 1),
    (1, 1, 1, 0, 1),
    (1, 0, 0, 0, 1),
    (1, 1, 1, 1, 1),
)
_MEDIUM_MAZE = (
    (1, 1, 1, 1, 1, 1, 1, 1),
    (1, 0, 0, 1, 1, 0, 0, 1),
    (1, 0, 0, 1, 0, 0, 0, 1),
    (1, 1, 0, 0, 0, 1, 1, 1),
    (1, 0, 0, 1, 0, 0, 0, 1),
    (1, 0, 1, 0, 0, 1, 0, 1),
    (1, 0, 0, 0, 1, 0, 0, 1),
    (1, 1, 1, 1, 1, 1, 1, 1),
)
_LARGE_MAZE = (
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1),
    (1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1),
    (1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1),
    (1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1),
    (1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
    (1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1),
    (1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1),
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
)


@dataclass(frozen=True)
class MazeSpec:
    """A maze: its map, the evaluation task and the dataset defaults."""

    name: str
    maze_map: tuple[tuple[int, ...], ...]
    env_id: str
    episode_length: int  # time limit of the env and the episode cut of the navigate datasets
    start_cell: tuple[int, int]  # evaluation start (D4RL maze2d starts are random; ours fixed)
    goal_cell: tuple[int, int]  # evaluation goal (D4RL maze2d's goals)
    default_size: int  # navigate datasets (sparse/dense)
    default_stitch_size: int


MAZES: dict[str, MazeSpec] = {
    "umaze": MazeSpec("umaze", _U_MAZE, "offrl/PointMazeUMaze-v0", 300, (3, 1), (1, 1),
                      200_000, 200_000),
    "medium": MazeSpec("medium", _MEDIUM_MAZE, "offrl/PointMazeMedium-v0", 600, (1, 1), (6, 6),
                       400_000, 400_000),
    "large": MazeSpec("large", _LARGE_MAZE, "offrl/PointMazeLarge-v0", 800, (1, 1), (7, 9),
                      600_000, 600_000),
}


def env_id_for(maze: str) -> str:
    """The gymnasium id of a maze (``"umaze"`` -> ``"offrl/PointMazeUMaze-v0"``)."""
    return _spec(maze).env_id


def _spec(maze: str) -> MazeSpec:
    try:
        return MAZES[maze]
    except KeyError:
        raise ValueError(f"unknown maze {maze!r}; known: {sorted(MAZES)}") from None


# ---------------------------------------------------------------------------------------------
# Planner
# ---------------------------------------------------------------------------------------------


class MazePlanner:
    """BFS waypoints over the free cells of a maze map + the PD controller.

    ``maze_map``: rows of cells, ``1`` a wall, anything else free (gymnasium-robotics maps, whose
    ``"r"``/``"g"``/``"c"`` marks are free cells too).
    """

    def __init__(self, maze_map: Sequence[Sequence[Any]], kp: float = KP, kd: float = KD):
        self.maze_map = tuple(tuple(1 if c == 1 else 0 for c in row) for row in maze_map)
        self.height = len(self.maze_map)
        self.width = len(self.maze_map[0])
        if any(len(row) != self.width for row in self.maze_map):
            raise ValueError("maze_map rows must all have the same length")
        self.kp = float(kp)
        self.kd = float(kd)
        self.free_cells: list[tuple[int, int]] = [
            (i, j) for i in range(self.height) for j in range(self.width) if self.maze_map[i][j] != 1
        ]
        if not self.free_cells:
            raise ValueError("maze_map has no free cell")
        self._index = {c: k for k, c in enumerate(self.free_cells)}
        n = len(self.free_cells)
        self.centers = np.array([self.cell_center(c) for c in self.free_cells], dtype=np.float64)
        # dist[a, b]: BFS steps from cell a to cell b; next_hop[a, b]: the next cell from a to b.
        self.dist = np.full((n, n), -1, dtype=np.int64)
        self.next_hop = np.zeros((n, n), dtype=np.int64)
        for b in range(n):  # BFS from the goal b; the parent of a on the tree is a's next hop
            self.dist[b, b] = 0
            self.next_hop[b, b] = b
            queue = collections.deque([b])
            while queue:
                u = queue.popleft()
                for v in self._neighbours(u):
                    if self.dist[v, b] < 0:
                        self.dist[v, b] = self.dist[u, b] + 1
                        self.next_hop[v, b] = u
                        queue.append(v)
        # map of every grid position to the index of a free cell (walls -> nearest free centre)
        grid = np.zeros((self.height, self.width), dtype=np.int64)
        for i in range(self.height):
            for j in range(self.width):
                if (i, j) in self._index:
                    grid[i, j] = self._index[(i, j)]
                else:
                    grid[i, j] = int(np.argmin(np.sum((self.centers - self.cell_center((i, j))) ** 2, 1)))
        self._grid = grid
        self._grid_list = grid.tolist()
        self._next_list = self.next_hop.tolist()
        self._centers_list = self.centers.tolist()

    def _neighbours(self, k: int) -> list[int]:
        i, j = self.free_cells[k]
        out = []
        for di, dj in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            c = (i + di, j + dj)
            if c in self._index:
                out.append(self._index[c])
        return out

    # -- coordinates ---------------------------------------------------------------------------

    def cell_center(self, cell: Sequence[int]) -> tuple[float, float]:
        """Centre ``(x, y)`` of cell ``(row, col)``."""
        i, j = int(cell[0]), int(cell[1])
        return (j + 0.5 - self.width / 2.0, self.height / 2.0 - i - 0.5)

    def cell_of(self, xy) -> np.ndarray:
        """``(row, col)`` of positions ``xy`` (shape (..., 2)) -> int array (..., 2)."""
        xy = np.asarray(xy, dtype=np.float64)
        i = np.floor(self.height / 2.0 - xy[..., 1]).astype(np.int64)
        j = np.floor(xy[..., 0] + self.width / 2.0).astype(np.int64)
        return np.stack([i, j], axis=-1)

    def cell_index(self, cell: Sequence[int]) -> int:
        """Index of a free cell in :attr:`free_cells`."""
        key = (int(cell[0]), int(cell[1]))
        if key not in self._index:
            raise ValueError(f"cell {key} is a wall or outside the maze")
        return self._index[key]

    def _position_index(self, xy) -> np.ndarray:
        cells = self.cell_of(xy)
        i = np.clip(cells[..., 0], 0, self.height - 1)
        j = np.clip(cells[..., 1], 0, self.width - 1)
        return self._grid[i, j]

    def path(self, start_cell, goal_cell) -> list[tuple[int, int]]:
        """A shortest cell path from ``start_cell`` to ``goal_cell`` (both included)."""
        a, b = self.cell_index(start_cell), self.cell_index(goal_cell)
        if self.dist[a, b] < 0:
            raise ValueError(f"no path from {tuple(start_cell)} to {tuple(goal_cell)}")
        out = [self.free_cells[a]]
        while a != b:
            a = int(self.next_hop[a, b])
            out.append(self.free_cells[a])
        return out

    # -- control -------------------------------------------------------------------------------

    def waypoints(self, positions, goal_xy) -> np.ndarray:
        """Waypoints (B, 2) for positions (B, 2) and goals (2,) or (B, 2)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        goal_xy = np.broadcast_to(np.asarray(goal_xy, dtype=np.float64), positions.shape)
        here = self._position_index(positions)
        goal = self._position_index(goal_xy)
        nxt = self.next_hop[here, goal]
        return np.where((here == goal)[:, None], goal_xy, self.centers[nxt])

    def act(self, observations, goal_xy) -> np.ndarray:
        """Noise-free actions (B, 2) float32 for observations (B, 4) = [x, y, vx, vy]."""
        obs = np.asarray(observations, dtype=np.float64).reshape(-1, 4)
        wp = self.waypoints(obs[:, :2], goal_xy)
        return np.clip(self.kp * (wp - obs[:, :2]) - self.kd * obs[:, 2:], -1.0, 1.0).astype(np.float32)

    def act_one(self, x: float, y: float, vx: float, vy: float, gx: float, gy: float,
                goal_index: int) -> tuple[float, float]:
        """Scalar fast path of :meth:`act` for one observation (used by the generators)."""
        i = min(max(math.floor(self.height / 2.0 - y), 0), self.height - 1)
        j = min(max(math.floor(x + self.width / 2.0), 0), self.width - 1)
        here = self._grid_list[i][j]
        if here == goal_index:
            wx, wy = gx, gy
        else:
            wx, wy = self._centers_list[self._next_list[here][goal_index]]
        ax = self.kp * (wx - x) - self.kd * vx
        ay = self.kp * (wy - y) - self.kd * vy
        return min(max(ax, -1.0), 1.0), min(max(ay, -1.0), 1.0)


@functools.cache
def _planner(maze: str) -> MazePlanner:
    return MazePlanner(_spec(maze).maze_map)


def planner_policy(maze: str = "umaze", goal_cell: Sequence[int] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An :func:`offrl.evaluate.evaluate` policy: the noise-free planner to the fixed goal.

    Maps observations (P, E, 4) to actions (P, E, 2). ``goal_cell`` defaults to the maze's
    evaluation goal (it must match the env's ``goal_cell``).
    """
    spec = _spec(maze)
    planner = _planner(maze)
    goal_xy = np.array(planner.cell_center(spec.goal_cell if goal_cell is None else goal_cell))

    def policy(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        return planner.act(obs.reshape(-1, 4), goal_xy).reshape(*obs.shape[:-1], 2)

    return policy


def random_policy(seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """An :func:`offrl.evaluate.evaluate` policy: uniform random actions in [-1, 1]^2."""
    rng = np.random.default_rng(seed)

    def policy(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(*np.asarray(obs).shape[:-1], 2)).astype(np.float32)

    return policy


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------


def _import_point_maze():
    try:
        from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "the PointMaze environments and maze datasets need gymnasium-robotics: "
            "pip install 'gymnasium-robotics>=1.4,<1.5'"
        ) from exc
    return PointMazeEnv


def _make_inner(maze: str, reward_type: str = "sparse", render_mode: str | None = None):
    """gymnasium-robotics' PointMazeEnv for ``maze`` (continuing task, fixed goal, no noise)."""
    PointMazeEnv = _import_point_maze()
    env = PointMazeEnv(
        maze_map=[list(row) for row in _spec(maze).maze_map],
        reward_type=reward_type,
        continuing_task=True,
        reset_target=False,
        render_mode=render_mode,
    )
    env.position_noise_range = 0.0  # goal and reset at cell centres; we add our own start noise
    return env


try:
    import gymnasium as _gym

    _EnvBase = _gym.Env
except ImportError:  # pragma: no cover
    _gym = None
    _EnvBase = object


class PointMazeFlatEnv(_EnvBase):
    """PointMaze with flat ``[x, y, vx, vy]`` observations and a fixed start and goal.

    Args:
        maze: ``"umaze"``, ``"medium"`` or ``"large"``.
        reward_type: ``"sparse"`` (1 within 0.45 of the goal) or ``"dense"`` (exp(-distance)).
        start_cell: ``[row, col]`` of the start (default: the maze's evaluation start).
        goal_cell: ``[row, col]`` of the goal (default: the maze's evaluation goal).
        start_noise: half-width of the uniform noise added to the start cell's centre.
        render_mode: passed to gymnasium-robotics.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 50}

    def __init__(self, maze: str = "umaze", reward_type: str = "sparse",
                 start_cell: Sequence[int] | None = None, goal_cell: Sequence[int] | None = None,
                 start_noise: float = CELL_NOISE, render_mode: str | None = None):
        spec = _spec(maze)
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        self.maze_name = maze
        self.planner = _planner(maze)
        self.start_cell = tuple(int(v) for v in (spec.start_cell if start_cell is None else start_cell))
        self.goal_cell = tuple(int(v) for v in (spec.goal_cell if goal_cell is None else goal_cell))
        self.planner.cell_index(self.start_cell)  # validates: free cells only
        self.planner.cell_index(self.goal_cell)
        self.start_noise = float(start_noise)
        self.reward_type = reward_type
        self._inner = _make_inner(maze, reward_type, render_mode)
        self.render_mode = render_mode
        self.action_space = self._inner.action_space
        self.observation_space = _gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        self.goal_xy = np.array(self.planner.cell_center(self.goal_cell), dtype=np.float64)

    @property
    def maze(self):
        """gymnasium-robotics' ``Maze`` object (``maze.maze_map``, coordinate conversions)."""
        return self._inner.maze

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._inner.reset(seed=seed, options={"goal_cell": np.array(self.goal_cell),
                                              "reset_cell": np.array(self.start_cell)})
        self._inner.goal = self.goal_xy.copy()
        self._inner.update_target_site_pos()
        start = np.array(self.planner.cell_center(self.start_cell), dtype=np.float64)
        start += self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
        point = self._inner.point_env
        point.set_state(start, np.zeros(point.model.nv))
        obs = point._get_obs()[0]
        return obs.copy(), {"success": bool(np.linalg.norm(obs[:2] - self.goal_xy) <= GOAL_RADIUS)}

    def step(self, action):
        obs_dict, reward, terminated, truncated, info = self._inner.step(np.asarray(action, dtype=np.float64))
        return (obs_dict["observation"].copy(), float(reward), bool(terminated), bool(truncated),
                {"success": bool(info["success"])})

    def render(self):
        return self._inner.render()

    def close(self):
        self._inner.close()


def _register_envs() -> None:
    if _gym is None:  # pragma: no cover
        return
    for name, spec in MAZES.items():
        if spec.env_id not in _gym.registry:
            _gym.register(id=spec.env_id, entry_point="offrl.envs.maze:PointMazeFlatEnv",
                          kwargs={"maze": name}, max_episode_steps=spec.episode_length)


_register_envs()


# ---------------------------------------------------------------------------------------------
# Rewards and reference scores
# ---------------------------------------------------------------------------------------------


def _rewards(next_positions: np.ndarray, goal_xy: np.ndarray, reward_type: str) -> np.ndarray:
    """The env's reward (float64) for successor positions (..., 2) and a fixed goal."""
    d = np.linalg.norm(np.asarray(next_positions, dtype=np.float64) - goal_xy, axis=-1)
    if reward_type == "sparse":
        return (d <= GOAL_RADIUS).astype(np.float64)
    if reward_type == "dense":
        return np.exp(-d)
    raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")


def _eval_env_kwargs(maze: str, reward_type: str) -> dict:
    spec = _spec(maze)
    return {"reward_type": reward_type, "start_cell": list(spec.start_cell),
            "goal_cell": list(spec.goal_cell)}


@functools.cache
def _reference_positions(maze: str) -> dict[str, np.ndarray]:
    """Successor positions (episodes, steps, 2) of the reference episodes of both policies.

    One evaluation env, episode ``k`` reset with seed ``REFERENCE_SEED + k`` and run for the
    full time limit (the task never terminates). The rewards do not change the dynamics, so
    both reward types are labelled from the same rollouts.
    """
    spec = _spec(maze)
    planner = _planner(maze)
    goal_xy = np.array(planner.cell_center(spec.goal_cell))
    rng = np.random.default_rng(REFERENCE_SEED)
    env = PointMazeFlatEnv(maze, "sparse")
    out = {}
    try:
        for policy in ("random", "planner"):
            pos = np.empty((REFERENCE_EPISODES, spec.episode_length, 2))
            for k in range(REFERENCE_EPISODES):
                obs, _ = env.reset(seed=REFERENCE_SEED + k)
                for t in range(spec.episode_length):
                    if policy == "random":
                        act = rng.uniform(-1.0, 1.0, size=2)
                    else:
                        # float32 observations, as offrl.evaluate hands them to a policy
                        act = planner.act(obs[None].astype(np.float32), goal_xy)[0]
                    obs = env.step(act)[0]
                    pos[k, t] = obs[:2]
            out[policy] = pos
    finally:
        env.close()
    return out


def maze_reference_scores(maze: str, reward_type: str = "sparse") -> dict[str, float]:
    """Mean/std returns of uniform random actions (min) and the noise-free planner (max).

    Measured once per process on the evaluation env: :data:`REFERENCE_EPISODES` episodes of the
    full time limit from the fixed start (reset seeds 0..19) to the fixed goal; the random
    policy draws from ``numpy.random.default_rng(0)``. The planner's returns equal those of
    ``offrl.evaluate.evaluate(planner_policy(maze), env_id, episodes=20, seed=0, ...)``.
    """
    spec = _spec(maze)
    goal_xy = np.array(_planner(maze).cell_center(spec.goal_cell))
    pos = _reference_positions(maze)
    returns = {k: _rewards(v, goal_xy, reward_type).sum(axis=1) for k, v in pos.items()}
    success = (np.linalg.norm(pos["planner"] - goal_xy, axis=-1) <= GOAL_RADIUS).any(axis=1)
    return {
        "ref_min_score": float(returns["random"].mean()),
        "ref_min_score_std": float(returns["random"].std()),
        "ref_max_score": float(returns["planner"].mean()),
        "ref_max_score_std": float(returns["planner"].std()),
        "ref_max_success_rate": float(success.mean()),
        "episodes": REFERENCE_EPISODES,
    }


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _rngs(seed: int, maze: str, kind: str, n: int) -> list[np.random.Generator]:
    words = [int(seed), GENERATOR_VERSION, *maze.encode(), *kind.encode()]
    return [np.random.default_rng(s) for s in np.random.SeedSequence(words).spawn(n)]


def _random_goal(planner: MazePlanner, rng: np.random.Generator, exclude: int,
                 choices: np.ndarray | None = None) -> tuple[int, float, float]:
    pool = choices if choices is not None else np.arange(len(planner.free_cells))
    if exclude >= 0 and len(pool) > 1:
        pool = pool[pool != exclude]
    k = int(pool[rng.integers(len(pool))])
    cx, cy = planner.centers[k]
    nx, ny = rng.uniform(-CELL_NOISE, CELL_NOISE, size=2)
    return k, float(cx + nx), float(cy + ny)


def _navigate_stream(maze: str, seed: int, size: int) -> dict[str, np.ndarray]:
    """D4RL maze2d: one stream of noisy planner driving to random goals, ``size`` steps."""
    planner = _planner(maze)
    env = _make_inner(maze)
    point = env.point_env
    goal_rng, noise_rng = _rngs(seed, maze, "navigate", 2)
    noise = BEHAVIOUR_NOISE * noise_rng.standard_normal(size=(size, 2))
    try:
        env.reset(seed=int(seed))
        start, sx, sy = _random_goal(planner, goal_rng, -1)
        point.set_state(np.array([sx, sy]), np.zeros(2))
        obs = point._get_obs()[0]
        goal, gx, gy = _random_goal(planner, goal_rng, start)
        observations = np.empty((size + 1, 4), dtype=np.float64)
        actions = np.empty((size, 2), dtype=np.float64)
        observations[0] = obs
        x, y, vx, vy = (float(v) for v in obs)
        for t in range(size):
            ax, ay = planner.act_one(x, y, vx, vy, gx, gy, goal)
            a = np.clip((ax + noise[t, 0], ay + noise[t, 1]), -1.0, 1.0)
            actions[t] = a
            obs = point.step(a)[0]
            observations[t + 1] = obs
            x, y, vx, vy = (float(v) for v in obs)
            if (x - gx) ** 2 + (y - gy) ** 2 <= GOAL_RADIUS**2:
                here = int(planner._position_index(np.array([x, y])))
                goal, gx, gy = _random_goal(planner, goal_rng, here)
    finally:
        env.close()
    return {"obs": observations[:-1], "next": observations[1:], "act": actions}


def _stitch_segments(maze: str, seed: int, size: int) -> dict[str, np.ndarray]:
    """Short goal-reaching segments that never hold both the eval start and goal cells."""
    spec = _spec(maze)
    planner = _planner(maze)
    start_eval = planner.cell_index(spec.start_cell)
    goal_eval = planner.cell_index(spec.goal_cell)
    env = _make_inner(maze)
    point = env.point_env
    plan_rng, noise_rng = _rngs(seed, maze, "stitch", 2)
    n_cells = len(planner.free_cells)
    pools = [np.flatnonzero((planner.dist[a] >= STITCH_MIN_DIST) & (planner.dist[a] <= STITCH_MAX_DIST))
             for a in range(n_cells)]
    starts = np.array([a for a in range(n_cells) if len(pools[a])])
    if not len(starts):
        raise ValueError(f"maze {maze!r} has no cell pair {STITCH_MIN_DIST}..{STITCH_MAX_DIST} steps apart")
    parts: list[dict[str, np.ndarray]] = []
    total = 0
    rejected = 0
    seg_obs = np.empty((STITCH_MAX_STEPS + 1, 4), dtype=np.float64)
    seg_act = np.empty((STITCH_MAX_STEPS, 2), dtype=np.float64)
    try:
        env.reset(seed=int(seed))
        while total < size:
            a = int(starts[plan_rng.integers(len(starts))])
            sx, sy = planner.centers[a] + plan_rng.uniform(-CELL_NOISE, CELL_NOISE, size=2)
            goal, gx, gy = _random_goal(planner, plan_rng, a, pools[a])
            noise = BEHAVIOUR_NOISE * noise_rng.standard_normal(size=(STITCH_MAX_STEPS, 2))
            point.set_state(np.array([sx, sy]), np.zeros(2))
            obs = point._get_obs()[0]
            seg_obs[0] = obs
            x, y, vx, vy = (float(v) for v in obs)
            n = 0
            while n < STITCH_MAX_STEPS:
                ax, ay = planner.act_one(x, y, vx, vy, gx, gy, goal)
                act = np.clip((ax + noise[n, 0], ay + noise[n, 1]), -1.0, 1.0)
                seg_act[n] = act
                obs = point.step(act)[0]
                n += 1
                seg_obs[n] = obs
                x, y, vx, vy = (float(v) for v in obs)
                if (x - gx) ** 2 + (y - gy) ** 2 <= GOAL_RADIUS**2:
                    break
            visited = set(planner._position_index(seg_obs[: n + 1, :2]).tolist())
            if start_eval in visited and goal_eval in visited:
                rejected += 1
                continue
            parts.append({"obs": seg_obs[:n].copy(), "next": seg_obs[1 : n + 1].copy(),
                          "act": seg_act[:n].copy(), "tout": np.eye(1, n, n - 1)[0]})
            total += n
    finally:
        env.close()
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["rejected"] = np.array(rejected)
    out["segments"] = np.array(len(parts))
    return out


def generate_maze(maze: str, variant: str, seed: int = 0, size: int | None = None) -> Dataset:
    """Generate ``maze-{maze}-{variant}`` (variant ``sparse``, ``dense`` or ``stitch``).

    ``size`` is the number of transitions (``None``: the maze's default for the variant).
    """
    spec = _spec(maze)
    if variant not in ("sparse", "dense", "stitch"):
        raise ValueError(f"variant must be 'sparse', 'dense' or 'stitch', got {variant!r}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if size is None:
        size = spec.default_stitch_size if variant == "stitch" else spec.default_size
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be a positive number of transitions, got {size}")
    reward_type = "sparse" if variant == "stitch" else variant
    planner = _planner(maze)
    goal_xy = np.array(planner.cell_center(spec.goal_cell))

    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if variant == "stitch":
        arrays = _stitch_segments(maze, seed, size)
        timeouts = arrays["tout"][:size].astype(np.float32)
        extra = {"segments": int(arrays["segments"]), "rejected_segments": int(arrays["rejected"]),
                 "segment_goal_bfs_steps": [STITCH_MIN_DIST, STITCH_MAX_DIST],
                 "segment_max_steps": STITCH_MAX_STEPS}
        behaviour = ("short segments: noisy planner from rest at a random cell to a cell "
                     f"{STITCH_MIN_DIST}-{STITCH_MAX_DIST} BFS steps away; no segment visits both "
                     "the evaluation start and goal cells")
    else:
        arrays = _navigate_stream(maze, seed, size)
        timeouts = np.zeros(size, dtype=np.float32)
        timeouts[spec.episode_length - 1 :: spec.episode_length] = 1.0
        extra = {"episode_length": spec.episode_length}
        behaviour = ("D4RL maze2d: one stream of the noisy planner driving to random goal cells, "
                     f"cut into {spec.episode_length}-step episodes")
    seconds = time.perf_counter() - t0
    obs = arrays["obs"][:size]
    nxt = arrays["next"][:size]
    act = arrays["act"][:size]
    timeouts[-1] = 1.0
    rewards = _rewards(nxt[:, :2], goal_xy, reward_type).astype(np.float32)

    ref = maze_reference_scores(maze, reward_type)
    ends = np.flatnonzero(timeouts > 0)
    ep_returns = np.add.reduceat(rewards.astype(np.float64), np.r_[0, ends[:-1] + 1])
    info = DatasetInfo(
        name=f"maze-{maze}-{variant}",
        env_id=spec.env_id,
        env_kwargs=_eval_env_kwargs(maze, reward_type),
        action_low=(-1.0, -1.0),
        action_high=(1.0, 1.0),
        ref_min_score=ref["ref_min_score"],
        ref_max_score=ref["ref_max_score"],
        metadata={
            "generator": "offrl.envs.maze",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "size": size,
            "episodes": int(len(ends)),
            "maze": maze,
            "variant": variant,
            "reward_type": reward_type,
            "behaviour": behaviour,
            "behaviour_noise_std": BEHAVIOUR_NOISE,
            "controller": f"BFS waypoints + clip({KP:g} (waypoint - pos) - {KD:g} vel, -1, 1)",
            "eval_start_cell": list(spec.start_cell),
            "eval_goal_cell": list(spec.goal_cell),
            "episode_return_mean": float(ep_returns.mean()),
            "ref_min_score_std": ref["ref_min_score_std"],
            "ref_max_score_std": ref["ref_max_score_std"],
            "ref_max_success_rate": ref["ref_max_success_rate"],
            "reference": (f"{REFERENCE_EPISODES} episodes on the evaluation env, reset seeds "
                          f"{REFERENCE_SEED}..{REFERENCE_SEED + REFERENCE_EPISODES - 1}; min: uniform "
                          "random actions, max: noise-free planner"),
            "reference_episodes": REFERENCE_EPISODES,
            "generation_seconds": round(seconds, 2),
            **extra,
        },
    )
    return Dataset.from_arrays(
        observations=obs.astype(np.float32),
        actions=act.astype(np.float32),
        rewards=rewards,
        next_observations=nxt.astype(np.float32),
        terminals=np.zeros(size, dtype=np.float32),
        timeouts=timeouts,
        info=info,
    )


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def _maker(maze: str, variant: str) -> Callable[..., Dataset]:
    spec = _spec(maze)
    default = spec.default_stitch_size if variant == "stitch" else spec.default_size

    def make(seed: int = 0, size: int | None = None) -> Dataset:
        return generate_maze(maze, variant, seed=seed, size=size)

    name = f"maze-{maze}-{variant}"
    make.__name__ = name.replace("-", "_")
    if variant == "stitch":
        what = ("short segments (4-6 cells) that never hold both the evaluation start and goal; "
                "sparse reward")
    else:
        what = f"D4RL maze2d-style stream to random goals, {spec.episode_length}-step episodes; {variant} reward"
    make.__doc__ = f"PointMaze {maze} ({spec.env_id}), {what}. Default size {default} transitions."
    return make


#: name -> (maker, description)
MAZE_DATASETS: dict[str, tuple[Callable[..., Dataset], str]] = {}
for _m in MAZES:
    for _v in ("sparse", "dense", "stitch"):
        _f = _maker(_m, _v)
        MAZE_DATASETS[f"maze-{_m}-{_v}"] = (_f, _f.__doc__ or "")


def register_maze_datasets(register: Callable[[str, Callable[..., Dataset], str], Any]) -> None:
    """Call ``register(name, maker, description)`` for every maze dataset."""
    for name, (maker, description) in MAZE_DATASETS.items():
        register(name, maker, description)


def maze_of_env_id(env_id: str | None) -> str | None:
    """The maze name of one of offrl's PointMaze env ids, or None for any other env."""
    return next((name for name, spec in MAZES.items() if spec.env_id == env_id), None)


def draw_positions(ax, dataset: Dataset, maze: str, max_points: int = 50_000) -> None:
    """Draw the maze walls, the visited (x, y) positions of ``dataset``, and the evaluation start/goal."""
    from matplotlib.patches import Rectangle

    spec = _spec(maze)
    planner = _planner(maze)
    for r, row in enumerate(planner.maze_map):
        for c, wall in enumerate(row):
            if wall:
                x, y = planner.cell_center((r, c))
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1.0, 1.0, color="0.35"))
    xy = dataset.observations[:, :2]
    if len(xy) > max_points:  # an even subsample keeps the picture and the file small
        xy = xy[np.linspace(0, len(xy) - 1, max_points).astype(int)]
    ax.scatter(xy[:, 0], xy[:, 1], s=1, alpha=0.15, color="tab:blue", rasterized=True)
    for cell, colour, label in ((spec.start_cell, "tab:green", "eval start"), (spec.goal_cell, "tab:red", "eval goal")):
        x, y = planner.cell_center(cell)
        ax.scatter([x], [y], s=120, marker="*", color=colour, edgecolor="black", zorder=3, label=label)
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.set_title(f"visited positions ({len(dataset.observations):,} transitions)")
    ax.legend(fontsize="small", loc="upper right")
