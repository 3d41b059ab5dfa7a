"""Flat D4RL-layout transitions -> d3rlpy ``MDPDataset``; shared by the d3rlpy peer scripts.

Used by ``benchmarks/peer_d3rlpy_speed.py`` (.npz input) and ``benchmarks/peers/d3rlpy.py``
(offrl's HDF5 files). Runs in the peer venv (``.venv-d3rlpy``), never in offrl's environment.

Semantics. The arrays are flat transitions (observations, actions, rewards, next_observations,
terminals, timeouts). d3rlpy's ``MDPDataset`` (like its ``get_d4rl``) takes no
next_observations: it cuts episodes at ``terminals | timeouts`` and uses ``observations[t + 1]``
as the successor inside an episode; the last step of an episode that ended by timeout has no
successor, so it is never sampled (one transition per timed-out episode, 0.1% for 1000-step
episodes). A terminal step gets a zero next observation and terminal=1. Rows flagged both
terminal and timeout are treated as terminal (d3rlpy asserts the two never coincide) and trailing
rows after the last episode end get ``timeouts[-1] = 1`` (else d3rlpy silently drops them).

Because next_observations are dropped, :func:`to_mdp_dataset` counts the rows inside an episode
whose stored ``next_observations[t]`` differs from ``observations[t + 1]``
(``info["next_obs_mismatch_rows"]``): 0 for every file offrl writes; anything else means d3rlpy
trains on different successors than offrl does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
REQUIRED = ("observations", "actions", "rewards", "terminals")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The D4RL arrays of an .npz file (missing optional keys are left out)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in KEYS if k in z}


def read_hdf5(path: str | Path) -> dict[str, np.ndarray]:
    """The D4RL arrays of an HDF5 file (top-level datasets; groups such as infos/ are ignored)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {k: np.asarray(f[k][()]) for k in KEYS if k in f and isinstance(f[k], h5py.Dataset)}


def to_mdp_dataset(arrays: Mapping[str, np.ndarray], source: str = "arrays", discrete: bool = False,
                   num_actions: int | None = None):
    """Build a d3rlpy MDPDataset (continuous actions, or ``discrete`` indices of ``num_actions`` choices);
    returns ``(dataset, info dict)``."""
    import d3rlpy

    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise SystemExit(f"{source}: missing arrays {missing}")
    obs = np.asarray(arrays["observations"], dtype=np.float32)
    actions = np.asarray(arrays["actions"], dtype=np.int32 if discrete else np.float32)
    rewards = np.asarray(arrays["rewards"], dtype=np.float32).reshape(-1)
    terminals = (np.asarray(arrays["terminals"]).reshape(-1) > 0.5).astype(np.float32)
    if "timeouts" in arrays:
        timeouts = (np.asarray(arrays["timeouts"]).reshape(-1) > 0.5).astype(np.float32)
    else:
        timeouts = np.zeros_like(terminals)
    n = obs.shape[0]
    if actions.ndim == 1 and not discrete:
        actions = actions[:, None]
    timeouts[terminals > 0] = 0.0  # d3rlpy asserts terminals & timeouts never coincide
    if terminals[-1] == 0 and timeouts[-1] == 0:
        timeouts[-1] = 1.0  # otherwise d3rlpy drops the trailing partial episode

    mismatch = None
    if "next_observations" in arrays:
        nxt = np.asarray(arrays["next_observations"], dtype=np.float32)
        inside = (terminals[:-1] == 0) & (timeouts[:-1] == 0)  # rows whose successor is row t+1
        mismatch = int(np.any(nxt[:-1][inside] != obs[1:][inside], axis=1).sum())

    dataset = d3rlpy.dataset.MDPDataset(
        observations=obs, actions=actions, rewards=rewards, terminals=terminals,
        timeouts=timeouts,
        action_space=d3rlpy.ActionSpace.DISCRETE if discrete else d3rlpy.ActionSpace.CONTINUOUS,
        action_size=int(num_actions or actions.max() + 1) if discrete else actions.shape[1])
    info = {"rows": int(n), "obs_dim": int(obs.shape[1]), "act_dim": int(num_actions or actions.max() + 1) if discrete else int(actions.shape[1]),
            "episodes": len(dataset.episodes),
            "sampled_transitions": int(dataset.transition_count),
            "next_obs_mismatch_rows": mismatch}
    return dataset, info
