"""D4RL-style datasets on offrl's PointMaze envs (:mod:`offrl.envs.maze`) and their reference scores.

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

Generation uses the planner and the envs of :mod:`offrl.envs.maze`.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo
from offrl.envs.maze import (CELL_NOISE, GOAL_RADIUS, KD, KP, MAZES, MazePlanner, PointMazeFlatEnv, _make_inner,
                             _planner, _rewards, _spec)

__all__ = [
    "generate_maze",
    "maze_reference_scores",
    "register_maze_datasets",
    "MAZE_DATASETS",
    "GENERATOR_VERSION",
]

#: Bump when generation changes in a way that changes the arrays (cached files are then stale).
GENERATOR_VERSION = 1

#: Behaviour noise: std of the Gaussian noise added to the planner's action (then clipped).
BEHAVIOUR_NOISE = 0.3
#: Stitch segments: goal cells this many BFS steps from the start cell (path of 4..6 cells).
STITCH_MIN_DIST = 3
STITCH_MAX_DIST = 5
#: A stitch segment ends after this many steps if its goal was not reached.
STITCH_MAX_STEPS = 200
REFERENCE_EPISODES = 20
REFERENCE_SEED = 0


# ---------------------------------------------------------------------------------------------
# Reference scores
# ---------------------------------------------------------------------------------------------


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
            # the generator's module before it moved to offrl.datasets: kept so that files stay byte-identical
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
