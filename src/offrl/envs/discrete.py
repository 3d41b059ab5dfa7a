"""Scripted controllers for CartPole-v1, Acrobot-v1 and LunarLander-v3 (discrete actions).

Vectorised numpy controllers, :func:`controller_actions`:

* CartPole: a linear rule on the state, push right when
  ``0.05 x + 0.2 x_dot + theta + theta_dot > 0`` (a PD law on the pole angle with small cart terms);
* Acrobot: energy pumping, torque +1 when ``theta2_dot - 0.4 theta1_dot > 0``, else -1;
* LunarLander: gymnasium's ``lunar_lander.heuristic`` (discrete branch), vectorised; the tests
  check that it gives the same action as gymnasium's function.

:data:`TASKS` holds each env's controller and its behaviour levels (the probability of a uniformly
random action per step, :func:`behaviour_epsilon`). The datasets made with them
(``cartpole-medium``, ...) and their reference scores live in :mod:`offrl.datasets.discrete`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "TASKS",
    "Task",
    "acrobot_controller",
    "behaviour_epsilon",
    "cartpole_controller",
    "controller_actions",
    "lunar_lander_controller",
]



# ---------------------------------------------------------------------------------------------
# Scripted controllers: observations (B, obs_dim) -> int64 actions (B,)
# ---------------------------------------------------------------------------------------------


def _batch(obs: Any, dim: int, env: str) -> np.ndarray:
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != dim:
        raise ValueError(f"{env} observations must have shape (batch, {dim}), got {obs.shape}")
    return obs


#: CartPole gains on [x, x_dot, theta, theta_dot].
CARTPOLE_GAINS = (0.05, 0.2, 1.0, 1.0)


def cartpole_controller(obs: Any) -> np.ndarray:
    """CartPole-v1: push right (1) when ``k . [x, x_dot, theta, theta_dot] > 0``, else left (0).

    The pole term (angle + angular velocity) is a PD law that keeps the pole up; the small cart
    terms keep the cart near the centre so that the episode reaches the 500-step limit.
    """
    obs = _batch(obs, 4, "CartPole")
    return (obs @ np.asarray(CARTPOLE_GAINS) > 0.0).astype(np.int64)


#: Weight of theta1_dot in the Acrobot pumping rule.
ACROBOT_PUMP = 0.4


def acrobot_controller(obs: Any) -> np.ndarray:
    """Acrobot-v1: torque +1 (action 2) when ``theta2_dot - 0.4 theta1_dot > 0``, else -1 (action 0).

    Pushing the second joint along its own motion, relative to the first link's swing, feeds
    energy into the swing until the tip crosses the goal height (about 80 steps from rest).
    """
    obs = _batch(obs, 6, "Acrobot")
    return np.where(obs[:, 5] - ACROBOT_PUMP * obs[:, 4] > 0.0, 2, 0).astype(np.int64)


def lunar_lander_controller(obs: Any) -> np.ndarray:
    """LunarLander-v3 (discrete): gymnasium's ``heuristic`` for a batch of states.

    Actions: 0 noop, 1 fire left engine, 2 main engine, 3 fire right engine. Same thresholds and
    precedence as ``gymnasium.envs.box2d.lunar_lander.heuristic`` with ``continuous=False``.
    """
    s = _batch(obs, 8, "LunarLander")
    angle_targ = np.clip(s[:, 0] * 0.5 + s[:, 2] * 1.0, -0.4, 0.4)  # point towards the centre
    hover_targ = 0.55 * np.abs(s[:, 0])  # target height grows with the horizontal offset
    angle_todo = (angle_targ - s[:, 4]) * 0.5 - s[:, 5] * 1.0
    hover_todo = (hover_targ - s[:, 1]) * 0.5 - s[:, 3] * 0.5
    contact = (s[:, 6] != 0) | (s[:, 7] != 0)
    angle_todo = np.where(contact, 0.0, angle_todo)
    hover_todo = np.where(contact, -s[:, 3] * 0.5, hover_todo)
    a = np.zeros(len(s), dtype=np.int64)
    a = np.where(angle_todo > 0.05, 1, a)
    a = np.where(angle_todo < -0.05, 3, a)
    return np.where((hover_todo > np.abs(angle_todo)) & (hover_todo > 0.05), 2, a).astype(np.int64)


@dataclass(frozen=True)
class Task:
    """One environment's generation settings."""

    key: str
    env_id: str
    num_actions: int
    controller: Callable[[Any], np.ndarray]
    medium_epsilon: float
    expert_epsilon: float
    default_size: int
    controller_description: str


TASKS: dict[str, Task] = {
    "cartpole": Task("cartpole", "CartPole-v1", 2, cartpole_controller, 0.4, 0.05, 50_000,
                     "PD rule 0.05 x + 0.2 x_dot + theta + theta_dot > 0 -> push right"),
    "acrobot": Task("acrobot", "Acrobot-v1", 3, acrobot_controller, 0.75, 0.05, 50_000,
                    "energy pumping: torque sign(theta2_dot - 0.4 theta1_dot)"),
    "lunarlander": Task("lunarlander", "LunarLander-v3", 4, lunar_lander_controller, 0.25, 0.02, 100_000,
                        "gymnasium's lunar_lander.heuristic, vectorised"),
}

def _task(key: str) -> Task:
    if key not in TASKS:
        raise ValueError(f"unknown discrete task {key!r}; known: {', '.join(TASKS)}")
    return TASKS[key]


def behaviour_epsilon(task: Task, behaviour: str) -> float:
    """Probability of a uniformly random action per step for ``random``/``medium``/``expert``."""
    table = {"random": 1.0, "medium": task.medium_epsilon, "expert": task.expert_epsilon}
    if behaviour not in table:
        raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(table)}")
    return table[behaviour]


def controller_actions(task: str | Task, obs: Any, epsilon: float = 0.0,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """The task's controller for a batch, each action replaced by a uniform one with prob ``epsilon``.

    Random numbers are always drawn in the same order (B uniforms, then B actions), whatever
    ``epsilon``, so a given ``rng`` state gives reproducible actions.
    """
    task = _task(task) if isinstance(task, str) else task
    actions = task.controller(obs)
    if rng is None:
        if epsilon > 0.0:
            raise ValueError("epsilon > 0 needs an rng")
        return actions
    replace = rng.random(len(actions)) < epsilon
    uniform = rng.integers(0, task.num_actions, size=len(actions))
    return np.where(replace, uniform, actions).astype(np.int64)
