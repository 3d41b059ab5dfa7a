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

The dataset (``gridworld-stitch``, made by :mod:`offrl.datasets.gridworld`) holds three behaviours
(:data:`TRAJECTORIES`), each a 2-step trajectory:

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

import numpy as np

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
    "state_of",
]

SIDE = 3
NUM_STATES = SIDE * SIDE
NUM_ACTIONS = 4
ACTION_NAMES = ("up", "right", "down", "left")
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))
START_STATE = 0  # s1
GOAL_STATE = 8  # s9
DEFAULT_GAMMA = 0.9

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
