"""The stitching picture as a tiny deterministic gridworld MDP (pure numpy, exact answers).

States ``s1..s9`` (indices 0..8) on a 3x3 grid, row-major::

    s1 s2 s3
    s4 s5 s6
    s7 s8 s9

Actions ``0 up, 1 right, 2 down, 3 left``; moves are deterministic and a move into the border
leaves the state unchanged. Entering ``s9`` gives reward 1 and ends the episode (``s9`` is
terminal); every other transition gives 0. With discount ``gamma`` the optimal values are, with
``d(s)`` the Manhattan distance from ``s`` to ``s9``::

    V*(s) = gamma ** (d(s) - 1)   (s != s9),      V*(s9) = 0
    Q*(s, a) = 1 if s' = s9 else gamma ** d(s')   (s' = step(s, a), s != s9),   Q*(s9, .) = 0

The dataset (``gridworld-stitch``) holds three behaviours, each a 2-step trajectory:

* ``A``: ``s1 -> s2 -> s3`` (right, right; ends by a timeout at s3),
* ``B``: ``s7 -> s8 -> s9`` (right, right; the second step earns 1 and is terminal),
* ``C``: ``s2 -> s5 -> s8`` (down, down; the connector, ends by a timeout at s8).

No trajectory contains both ``s1`` and ``s9``, but the union of the transitions holds the path
``s1 -> s2 -> s5 -> s8 -> s9`` (A's first step, then C, then B's second step), which is also
optimal (4 moves). An agent that only imitates or only evaluates whole trajectories cannot get
from s1 to s9; one that does dynamic programming over the transitions (stitching) can, and its
in-sample values equal V* along that path (:func:`gridworld_in_sample_q`).

Observations are one-hot vectors (9 floats); actions are stored as a (N, 1) float array of action
indices, with ``info.metadata["discrete_actions"] = 4`` (offrl has no discrete-action algorithms
yet) and action bounds ``[0, 3]``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo

__all__ = [
    "NUM_STATES",
    "NUM_ACTIONS",
    "GOAL_STATE",
    "START_STATE",
    "TRAJECTORIES",
    "step",
    "transition_table",
    "value_iteration",
    "gridworld_q_star",
    "gridworld_v_star",
    "gridworld_in_sample_q",
    "gridworld_dataset",
    "state_of",
    "register_gridworld_datasets",
    "GRIDWORLD_DATASETS",
]

GENERATOR_VERSION = 1
SIDE = 3
NUM_STATES = SIDE * SIDE
NUM_ACTIONS = 4
ACTION_NAMES = ("up", "right", "down", "left")
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))
START_STATE = 0  # s1
GOAL_STATE = 8  # s9
DEFAULT_GAMMA = 0.9
DEFAULT_SIZE = 300

#: name -> list of (state, action) steps; the successor of the last step ends the trajectory.
TRAJECTORIES: dict[str, list[tuple[int, int]]] = {
    "A": [(0, 1), (1, 1)],  # s1 -> s2 -> s3
    "B": [(6, 1), (7, 1)],  # s7 -> s8 -> s9 (reward 1, terminal)
    "C": [(1, 2), (4, 2)],  # s2 -> s5 -> s8 (connector)
}


def step(state: int, action: int) -> tuple[int, float, bool]:
    """One deterministic move: ``(next_state, reward, terminal)``; ``s9`` is absorbing."""
    state, action = int(state), int(action)
    if not 0 <= state < NUM_STATES or not 0 <= action < NUM_ACTIONS:
        raise ValueError(f"state must be in 0..{NUM_STATES - 1} and action in 0..{NUM_ACTIONS - 1}, "
                         f"got {state}, {action}")
    if state == GOAL_STATE:
        return state, 0.0, True
    r, c = divmod(state, SIDE)
    dr, dc = _MOVES[action]
    r2, c2 = min(max(r + dr, 0), SIDE - 1), min(max(c + dc, 0), SIDE - 1)
    nxt = r2 * SIDE + c2
    return nxt, float(nxt == GOAL_STATE), nxt == GOAL_STATE


def transition_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(next_state, reward, terminal)`` arrays of shape (NUM_STATES, NUM_ACTIONS)."""
    nxt = np.zeros((NUM_STATES, NUM_ACTIONS), dtype=np.int64)
    rew = np.zeros((NUM_STATES, NUM_ACTIONS), dtype=np.float64)
    term = np.zeros((NUM_STATES, NUM_ACTIONS), dtype=bool)
    for s in range(NUM_STATES):
        for a in range(NUM_ACTIONS):
            nxt[s, a], rew[s, a], term[s, a] = step(s, a)
    return nxt, rew, term


def value_iteration(gamma: float = DEFAULT_GAMMA, allowed: np.ndarray | None = None,
                    tol: float = 1e-12, max_iters: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Optimal ``(V, Q)`` by value iteration; ``Q`` has shape (NUM_STATES, NUM_ACTIONS).

    ``allowed`` (bool, same shape as Q) restricts the max to those state-action pairs (the others
    get ``Q = nan``); a state with no allowed action has ``V = 0``. The terminal state has
    ``V = Q = 0``.
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    nxt, rew, term = transition_table()
    mask = np.ones_like(term) if allowed is None else np.asarray(allowed, dtype=bool)
    mask = mask.copy()
    mask[GOAL_STATE] = False
    v = np.zeros(NUM_STATES)
    for _ in range(max_iters):
        q = rew + gamma * np.where(term, 0.0, v[nxt])
        q_masked = np.where(mask, q, -np.inf)
        v_new = np.where(mask.any(axis=1), q_masked.max(axis=1), 0.0)
        if np.max(np.abs(v_new - v)) < tol:
            v = v_new
            break
        v = v_new
    q = rew + gamma * np.where(term, 0.0, v[nxt])
    q[GOAL_STATE] = 0.0
    q = np.where(mask | (np.arange(NUM_STATES) == GOAL_STATE)[:, None], q, np.nan)
    return v, q


def gridworld_q_star(gamma: float = DEFAULT_GAMMA) -> np.ndarray:
    """Exact optimal Q (NUM_STATES, NUM_ACTIONS) by value iteration."""
    return value_iteration(gamma)[1]


def gridworld_v_star(gamma: float = DEFAULT_GAMMA) -> np.ndarray:
    """Exact optimal V (NUM_STATES,) by value iteration."""
    return value_iteration(gamma)[0]


def _dataset_pairs() -> np.ndarray:
    allowed = np.zeros((NUM_STATES, NUM_ACTIONS), dtype=bool)
    for steps in TRAJECTORIES.values():
        for s, a in steps:
            allowed[s, a] = True
    return allowed


def gridworld_in_sample_q(gamma: float = DEFAULT_GAMMA) -> np.ndarray:
    """Optimal Q using only the dataset's state-action pairs (``nan`` elsewhere).

    What an in-sample method (e.g. IQL with expectile -> 1) converges to on ``gridworld-stitch``;
    states without data actions count as ``V = 0``.
    """
    return value_iteration(gamma, allowed=_dataset_pairs())[1]


def state_of(observations) -> np.ndarray:
    """State indices from one-hot observations (N, 9) -> (N,) int."""
    return np.argmax(np.asarray(observations), axis=-1)


def gridworld_dataset(seed: int = 0, size: int | None = None, name: str = "gridworld-stitch") -> Dataset:
    """The stitching dataset: trajectories A, B, C repeated (order shuffled by ``seed``).

    ``size`` is the number of transitions (``None``: :data:`DEFAULT_SIZE`); a dataset cut
    mid-trajectory ends with ``timeouts[-1] = 1``.
    """
    seed, size = int(seed), DEFAULT_SIZE if size is None else int(size)
    if size < 1:
        raise ValueError(f"size must be a positive number of transitions, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    names = sorted(TRAJECTORIES)
    per_traj = len(TRAJECTORIES[names[0]])
    n_traj = -(-size // per_traj)
    order = [names[i % len(names)] for i in range(n_traj)]
    order = [order[i] for i in rng.permutation(n_traj)]
    states, actions, rewards, next_states, terms, touts = [], [], [], [], [], []
    for traj in order:
        steps = TRAJECTORIES[traj]
        for k, (s, a) in enumerate(steps):
            s2, r, term = step(s, a)
            states.append(s)
            actions.append(a)
            rewards.append(r)
            next_states.append(s2)
            terms.append(float(term))
            touts.append(float(k == len(steps) - 1 and not term))
    sl = slice(0, size)
    states, next_states = np.array(states[sl]), np.array(next_states[sl])
    terminals = np.array(terms[sl], dtype=np.float32)
    timeouts = np.array(touts[sl], dtype=np.float32)
    if terminals[-1] == 0:
        timeouts[-1] = 1.0
    eye = np.eye(NUM_STATES, dtype=np.float32)
    info = DatasetInfo(
        name=name,
        env_id=None,
        action_low=(0.0,),
        action_high=(float(NUM_ACTIONS - 1),),
        metadata={
            "generator": "offrl.envs.gridworld",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "size": size,
            "discrete_actions": NUM_ACTIONS,
            "action_names": list(ACTION_NAMES),
            "num_states": NUM_STATES,
            "observation": "one-hot state (s1..s9 = index 0..8, row-major 3x3 grid)",
            "start_state": START_STATE,
            "goal_state": GOAL_STATE,
            "trajectories": {k: [[s, a] for s, a in v] for k, v in TRAJECTORIES.items()},
            "behaviour": "A: s1->s2->s3, B: s7->s8->s9 (reward 1, terminal), C: s2->s5->s8 (connector)",
        },
    )
    return Dataset.from_arrays(
        observations=eye[states],
        actions=np.array(actions[sl], dtype=np.float32).reshape(-1, 1),
        rewards=np.array(rewards[sl], dtype=np.float32),
        next_observations=eye[next_states],
        terminals=terminals,
        timeouts=timeouts,
        info=info,
    )


def _gridworld_stitch(seed: int = 0, size: int | None = None) -> Dataset:
    return gridworld_dataset(seed=seed, size=size)


#: name -> (maker, description)
GRIDWORLD_DATASETS: dict[str, tuple[Callable[..., Dataset], str]] = {
    "gridworld-stitch": (
        _gridworld_stitch,
        "3x3 deterministic gridworld, trajectories s1->s3, s7->s9 and s2->s8: reaching s9 from s1 "
        f"needs stitching (discrete actions as (N, 1) indices). Default size {DEFAULT_SIZE}.",
    ),
}


def register_gridworld_datasets(register: Callable[[str, Callable[..., Dataset], str], Any]) -> None:
    """Call ``register(name, maker, description)`` for every gridworld dataset."""
    for name, (maker, description) in GRIDWORLD_DATASETS.items():
        register(name, maker, description)
