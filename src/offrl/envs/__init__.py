"""Environment construction and normalised scores.

``offrl.envs`` holds environments and controllers only: offrl's own envs (PointMaze, :mod:`.maze`;
the stitching gridworld MDP, :mod:`.gridworld`), scripted controllers (:mod:`.pendulum`,
:mod:`.discrete`, the maze planner) and the behaviour-policy zoo (:mod:`.policies`). It imports
nothing of ``offrl.data``, ``offrl.evaluate`` or ``offrl.checkpoint``; the datasets made with these
envs live in :mod:`offrl.datasets`. No submodule is imported here, so ``import offrl.envs`` stays cheap.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
import warnings
from typing import Any, Iterator, Mapping

import numpy as np

__all__ = ["UnknownEnvError", "make_env", "normalized_score", "known_env_ids"]


def known_env_ids() -> list[str]:
    """Every environment id registered with gymnasium (sorted)."""
    import gymnasium as gym

    return sorted(gym.registry.keys())


class UnknownEnvError(ValueError):
    """An environment id gymnasium does not know; the message lists close matches."""


def make_env(
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    max_episode_steps: int | None = None,
):
    """Build one gymnasium environment: ``gymnasium.make(env_id, **env_kwargs)``.

    ``max_episode_steps`` overrides the registered time limit when given. An id that
    gymnasium does not know raises a ``ValueError`` listing close matches. Ids of the form
    ``"module:EnvName-v0"`` are passed through to gymnasium (it imports the module first).
    """
    import gymnasium as gym

    if isinstance(env_id, str) and env_id.startswith("offrl/"):
        import offrl.envs.maze  # noqa: F401  registers the offrl/PointMaze*-v0 envs

    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env_id must be a non-empty string, got {env_id!r}")
    kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    if ":" not in env_id and env_id not in gym.registry:
        _register_robotics_envs()
    if ":" not in env_id and env_id not in gym.registry:
        raise UnknownEnvError(_unknown_env_message(env_id, list(gym.registry.keys())))
    try:
        with _mujoco_model_warnings():
            env = gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv as exc:  # e.g. "module:Name" whose module registers nothing
        raise UnknownEnvError(f"{_unknown_env_message(env_id, list(gym.registry.keys()))} ({exc})") from exc
    if "tmp_xml_file_path" in vars(env.unwrapped):  # gymnasium-robotics' PointMaze / AntMaze ids
        from offrl.envs.maze import remove_maze_model_file

        remove_maze_model_file(env.unwrapped)
    return env


def _register_robotics_envs() -> None:
    """Register gymnasium-robotics' envs (PointMaze_UMaze-v3, ...; Minari's D4RL datasets name them)."""
    try:
        import gymnasium_robotics  # noqa: F401  registers its ids on import
    except ImportError:
        pass


# MuJoCo warnings about gymnasium's own model files, which a user cannot act on (HalfCheetah's XML sets the
# deprecated compiler attribute `settotalmass`). MuJoCo prints its warnings from C; while an environment is
# built, these are dropped and any other is raised as a Python `RuntimeWarning` (so it can be filtered).
_KNOWN_MODEL_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def _forward_mujoco_warning(message: str) -> None:
    if any(known in message for known in _KNOWN_MODEL_WARNINGS):
        return
    try:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)
    except Exception:  # warnings turned into errors: never raise through MuJoCo's C code
        print(f"MuJoCo warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _mujoco_model_warnings() -> Iterator[None]:
    """Route MuJoCo's warnings through `_forward_mujoco_warning` (no-op where MuJoCo is not installed)."""
    try:
        import mujoco
    except ImportError:
        yield
        return
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_forward_mujoco_warning)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _unknown_env_message(env_id: str, known: list[str]) -> str:
    matches = difflib.get_close_matches(env_id, known, n=5, cutoff=0.6)
    if not matches:  # compare without the version suffix ("Pendulum-v0" -> "Pendulum")
        base = env_id.rsplit("-v", 1)[0].lower()
        matches = sorted(k for k in known if base and base in k.lower())[:5]
    msg = f"unknown environment id {env_id!r} (not registered with gymnasium)"
    if matches:
        msg += "; close matches: " + ", ".join(matches)
    else:
        msg += "; see offrl.envs.known_env_ids() for the registered ids"
    return msg


def normalized_score(returns, ref_min: float, ref_max: float) -> np.ndarray:
    """D4RL-style normalised score ``100 * (R - ref_min) / (ref_max - ref_min)``.

    Works on a scalar or any array of returns; returns a float64 numpy array (0-d for a scalar).
    """
    ref_min = float(ref_min)
    ref_max = float(ref_max)
    if not np.isfinite(ref_min) or not np.isfinite(ref_max) or ref_max == ref_min:
        raise ValueError(
            f"reference scores must be finite and different, got ref_min={ref_min}, ref_max={ref_max}"
        )
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
