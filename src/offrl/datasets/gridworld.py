"""The ``gridworld-stitch`` dataset on the 3x3 stitching gridworld of :mod:`offrl.envs.gridworld`.

Trajectories A (s1 -> s2 -> s3), B (s7 -> s8 -> s9, reward 1, terminal) and C (s2 -> s5 -> s8, the
connector) repeated, their order shuffled by the seed. Observations are one-hot vectors (9 floats);
actions are stored as a (N, 1) float array of action indices, with
``info.metadata["discrete_actions"] = 4`` and action bounds ``[0, 3]``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo
from offrl.envs.gridworld import (ACTION_NAMES, GOAL_STATE, NUM_ACTIONS, NUM_STATES, START_STATE, TRAJECTORIES,
                                  step)

__all__ = ["DEFAULT_SIZE", "GRIDWORLD_DATASETS", "gridworld_dataset", "register_gridworld_datasets"]

GENERATOR_VERSION = 1
DEFAULT_SIZE = 300


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
            # the generator's module before it moved to offrl.datasets: kept so that files stay byte-identical
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
