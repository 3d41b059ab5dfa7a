"""PointMaze (gymnasium-robotics, MuJoCo) with a waypoint planner.

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

The datasets made on these envs (``maze-*``) and their reference scores live in
:mod:`offrl.datasets.maze`.

``gymnasium-robotics`` is imported lazily (building an env needs it; importing this module,
registering the ids and using the planner do not).
"""

from __future__ import annotations

import collections
import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "MAZES",
    "MazeSpec",
    "MazePlanner",
    "PointMazeFlatEnv",
    "env_id_for",
    "planner_policy",
    "random_policy",
    "maze_of_env_id",
    "draw_positions",
]

#: The env's success radius (gymnasium-robotics MazeEnv: distance <= 0.45).
GOAL_RADIUS = 0.45
#: PD gains of the planner.
KP = 10.0
KD = 1.0
#: Uniform noise half-width around a cell centre for random collection goals and starts.
CELL_NOISE = 0.25

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
    remove_maze_model_file(env)
    return env


def remove_maze_model_file(env) -> None:
    """Delete the MJCF file gymnasium-robotics' maze envs write to the temp folder for each env they build.

    The simulator has loaded the model by then and never reads the file again; left alone, every
    maze env built (each evaluation, each test) leaves one ``ant_maze<time>.xml`` behind.
    """
    path = getattr(env, "tmp_xml_file_path", None)
    if isinstance(path, str) and os.path.basename(path).startswith("ant_maze") and path.endswith(".xml"):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


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
# Rewards
# ---------------------------------------------------------------------------------------------


def _rewards(next_positions: np.ndarray, goal_xy: np.ndarray, reward_type: str) -> np.ndarray:
    """The env's reward (float64) for successor positions (..., 2) and a fixed goal."""
    d = np.linalg.norm(np.asarray(next_positions, dtype=np.float64) - goal_xy, axis=-1)
    if reward_type == "sparse":
        return (d <= GOAL_RADIUS).astype(np.float64)
    if reward_type == "dense":
        return np.exp(-d)
    raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")


def maze_of_env_id(env_id: str | None) -> str | None:
    """The maze name of one of offrl's PointMaze env ids, or None for any other env."""
    return next((name for name, spec in MAZES.items() if spec.env_id == env_id), None)


def draw_positions(ax, dataset: Any, maze: str, max_points: int = 50_000) -> None:
    """Draw the maze walls, the visited (x, y) positions of ``dataset`` (an offrl ``Dataset``: its
    ``observations[:, :2]``), and the evaluation start/goal."""
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
