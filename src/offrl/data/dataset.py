"""The offline dataset: flat, validated numpy arrays plus episode boundaries.

`Dataset.from_arrays` is the single entry point that validates and converts raw arrays; the
file loaders (`from_hdf5`, `from_npz`, `load`) read arrays and hand them to it. Every
validation failure raises `DatasetError` whose message names the field, what is wrong and how
to fix it. The writers (`save_hdf5`, `save_npz`) are atomic: a failed or killed write never
leaves a file at the target path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from offrl.data.integrity import CHECKSUM_KEY, array_checksum

__all__ = ["Dataset", "DatasetError", "DatasetInfo"]

#: Array keys every dataset file must hold.
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
#: Array keys a dataset file may hold.
OPTIONAL_KEYS = ("timeouts", "next_observations", "behaviour_log_probs")
#: Attribute (HDF5) / array (npz) holding the JSON-encoded `DatasetInfo`.
INFO_KEY = "offrl_info"
#: Tolerance on action bounds before an out-of-bounds action is an error (it is then clipped).
ACTION_BOUND_TOLERANCE = 1e-4

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class DatasetError(ValueError):
    """An invalid dataset (arrays or file); the message names the field, the problem, the fix."""


def _error(field_name: str, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"field '{field_name}': {problem}. Fix: {fix}.")


# ---------------------------------------------------------------------------------------------
# DatasetInfo
# ---------------------------------------------------------------------------------------------


def _as_bounds(value: Any, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        bounds = tuple(float(v) for v in np.ravel(np.asarray(value, dtype=np.float64)))
    except (TypeError, ValueError) as exc:
        raise _error(f"info.{name}", f"cannot be read as a sequence of floats ({exc})",
                     "pass a list/tuple/array of floats, one per action dimension") from None
    return bounds


def _as_num_actions(value: Any) -> int | None:
    if value is None:
        return None
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value, ok = int(value), True
    if not ok or int(value) < 1:
        raise _error("info.num_actions", f"must be a positive integer or None, got {value!r}",
                     "pass the size K of the discrete action space (gymnasium Discrete(K).n), or "
                     "None for continuous actions")
    return int(value)


def _check_json(value: Any, name: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise _error(f"info.{name}", f"is not JSON-serialisable ({exc})",
                     "keep only str/int/float/bool/None/list/dict values") from None


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata travelling with a dataset (all JSON-able).

    Attributes:
        name: dataset name, e.g. ``"hopper-medium-v2"``.
        env_id: gymnasium id of the environment the data came from, if any.
        env_kwargs: keyword arguments for ``gymnasium.make(env_id, **env_kwargs)``.
        action_low: per-dimension lower action bound in env units (None: unknown).
        action_high: per-dimension upper action bound in env units (None: unknown).
        ref_min_score: episode return of the reference random policy (score normalisation).
        ref_max_score: episode return of the reference expert policy (score normalisation).
        metadata: free-form JSON-able extras (provenance, generator settings, ...).
        num_actions: number of discrete actions K, or None for continuous (Box) actions. A
            discrete dataset stores ``actions`` as int32 indices in ``[0, K)`` of shape (N,)
            and has no action bounds.
        obs_layout: how the env's raw observations (a dict, say) were flattened to the rows of
            ``observations`` (a layout of :mod:`offrl.data.spaces`: key order and shapes), or None
            when the env's observations are already flat vectors. Evaluation and ``Agent.act``
            flatten the env's observations with it.
    """

    name: str = ""
    env_id: str | None = None
    env_kwargs: dict = field(default_factory=dict)
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    metadata: dict = field(default_factory=dict)
    num_actions: int | None = None
    obs_layout: dict | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_actions", _as_num_actions(self.num_actions))
        if self.num_actions is not None and (self.action_low is not None
                                             or self.action_high is not None):
            raise _error("info.action_low/action_high", f"are set but num_actions={self.num_actions} "
                         "makes the actions discrete, and discrete actions have no bounds",
                         "leave action_low/action_high unset (None) for a discrete dataset, or "
                         "set num_actions=None for continuous actions")
        object.__setattr__(self, "action_low", _as_bounds(self.action_low, "action_low"))
        object.__setattr__(self, "action_high", _as_bounds(self.action_high, "action_high"))
        for name in ("ref_min_score", "ref_max_score"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs or {}))
        object.__setattr__(self, "metadata", dict(self.metadata or {}))
        _check_json(self.env_kwargs, "env_kwargs")
        _check_json(self.metadata, "metadata")
        if self.obs_layout is not None:
            _check_json(self.obs_layout, "obs_layout")
            if not isinstance(self.obs_layout, Mapping) or "type" not in self.obs_layout:
                raise _error("info.obs_layout", f"is {self.obs_layout!r}, not a layout",
                             "leave it None or set it with offrl.data.spaces.space_layout(space)")
            object.__setattr__(self, "obs_layout", json.loads(json.dumps(self.obs_layout)))

    @property
    def is_discrete(self) -> bool:
        """True when the actions are discrete indices (``num_actions`` is set)."""
        return self.num_actions is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists; ``num_actions`` only when discrete,
        ``obs_layout`` only when set)."""
        out = dataclasses.asdict(self)
        for name in ("action_low", "action_high"):
            if out[name] is not None:
                out[name] = list(out[name])
        if out["num_actions"] is None:  # continuous: the JSON of earlier versions, unchanged
            del out["num_actions"]
        if out["obs_layout"] is None:  # flat observations: the JSON of earlier versions, unchanged
            del out["obs_layout"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetInfo:
        """Inverse of `to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _as_numeric(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise _error(name, f"cannot be converted to an array ({exc})",
                     "pass a numeric numpy array") from None
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise _error(name, f"has non-numeric dtype {arr.dtype}", "pass a float (or 0/1) array")
    return arr


def _check_matrix(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim != 2:
        dim = "act_dim" if name == "actions" else "obs_dim"
        fix = ("reshape it to (N, dim), e.g. arr.reshape(len(arr), -1) "
               "(a 1-dimensional space still needs shape (N, 1))")
        if name == "actions" and arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            fix += ("; if these are discrete action indices, set DatasetInfo(num_actions=K) "
                    "(in a file: the 'num_actions' attribute) and keep shape (N,)")
        raise _error(name, f"must be 2-D (N, {dim}) but has shape {arr.shape}", fix)
    if arr.shape[1] == 0:
        raise _error(name, f"has shape {arr.shape} with zero features",
                     "each row must hold at least one value")
    return arr


def _check_vector(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim != 1:
        raise _error(name, f"must have shape (N,) or (N, 1) but has shape {arr.shape}",
                     "pass one scalar per transition")
    return arr


def _to_float32(arr: np.ndarray, name: str) -> np.ndarray:
    """Check finiteness in the input precision, then cast and check the float32 range."""
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            flat = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
            raise _error(name, f"holds {int(bad.sum())} NaN/Inf values "
                         f"(first in row {int(flat[0])})",
                         "remove or repair those transitions before building the dataset")
    with np.errstate(over="ignore"):
        out = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        rows = np.flatnonzero(~np.isfinite(out).reshape(len(out), -1).all(axis=1))
        raise _error(name, f"has {rows.size} rows with values beyond the float32 range "
                     f"(|x| > {_FLOAT32_MAX:.3g}, first in row {int(rows[0])})",
                     "rescale or repair those values; datasets are stored as float32")
    return out


def _check_discrete_shape(arr: np.ndarray, num_actions: int) -> np.ndarray:
    """(N,) or (N, 1) action indices -> (N,)."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim != 1:
        fix = "pass one action index per transition, shape (N,)"
        if arr.ndim == 2 and arr.shape[1] == num_actions:
            fix += ("; if the rows are one-hot (or probabilities), pass actions.argmax(axis=1)")
        raise _error("actions", f"discrete actions (num_actions={num_actions}) must have shape "
                     f"(N,) or (N, 1) but have shape {arr.shape}", fix)
    return arr


def _to_discrete_actions(arr: np.ndarray, num_actions: int) -> np.ndarray:
    """Check that discrete actions are whole numbers in [0, num_actions); return int32."""
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise _error("actions", f"discrete actions (num_actions={num_actions}) must be "
                         f"integers but {int(bad.sum())} values are not (first: {arr[first]!r} "
                         f"at row {first})", "store the action indices themselves, e.g. "
                         "np.asarray(actions, dtype=np.int64); for continuous actions set "
                         "DatasetInfo(num_actions=None)")
    wide = arr.astype(np.int64)
    bad = (wide < 0) | (wide >= num_actions)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _error("actions", f"{int(bad.sum())} discrete actions lie outside [0, "
                     f"{num_actions}) (first: {int(wide[first])} at row {first}; range "
                     f"{int(wide.min())}..{int(wide.max())})",
                     "set info.num_actions to the size of the action space (at least the largest "
                     "action + 1), or map the actions to 0..num_actions-1 (for gymnasium "
                     "Discrete(n, start=s) subtract s)")
    return wide.astype(np.int32)


def _to_flags(arr: np.ndarray, name: str) -> np.ndarray:
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _error(name, f"must be 0/1 but {int(bad.sum())} values are not "
                     f"(first: {arr[first]!r} at index {first})",
                     f"convert it to booleans, e.g. ({name} > 0.5)")
    return arr.astype(np.float32)


def _derive_next_observations(
    obs: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Derive s_{t+1} inside each episode.

    Returns (keep mask, next_observations, timeouts). A terminal step uses s_t itself (its value
    is masked); the last step of a timed-out episode has no known successor and is dropped, the
    step before it then ends the episode with ``timeouts = 1``.
    """
    is_term = terminals > 0
    drop = (timeouts > 0) & ~is_term
    ends = is_term | (timeouts > 0)
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[is_term] = obs[is_term]
    timeouts = timeouts.copy()
    # The predecessor of a dropped step inherits the episode end, unless it ends an episode itself
    # (then the dropped step was a one-step episode, removed entirely).
    prev = np.flatnonzero(drop[1:])
    prev = prev[~ends[prev]]
    timeouts[prev] = 1.0
    keep = ~drop
    return keep, next_obs[keep], timeouts[keep]


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write via ``write(file)`` into a temp file next to `path`, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DatasetError(f"{path}: file not found. Fix: check the path, or build/download "
                           "the dataset first (see `offrl data`).")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a dataset file. Fix: pass the path of "
                           "an .hdf5 or .npz file.")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: the file is empty. Fix: re-download or remake it.")


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated offline dataset of N transitions (build it with `Dataset.from_arrays`).

    Arrays are float32 and read-only: ``observations`` / ``next_observations`` (N, obs_dim),
    ``actions`` (N, act_dim) in env units, ``rewards`` / ``terminals`` / ``timeouts`` (N,).
    Discrete datasets (``info.num_actions = K``) hold ``actions`` as int32 indices of shape (N,).
    An episode ends at every index where ``terminals or timeouts``; the last transition always
    ends an episode. ``behaviour_log_probs`` (N,) float32, optional (``None`` when unknown): the
    log-probability (discrete actions) or log-density in env units (continuous actions) of each
    logged action under the policy that chose it, written by generators that know their behaviour
    policy and read by off-policy evaluation (:mod:`offrl.ope`); ``-inf`` marks an action the
    behaviour policy could not take (off-policy evaluation refuses it).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    info: DatasetInfo = field(default_factory=DatasetInfo)
    behaviour_log_probs: np.ndarray | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        observations: Any,
        actions: Any,
        rewards: Any,
        terminals: Any,
        timeouts: Any = None,
        next_observations: Any = None,
        info: DatasetInfo | None = None,
        behaviour_log_probs: Any = None,
    ) -> Dataset:
        """Validate raw arrays and build a dataset (arrays are copied to read-only float32).

        ``observations``/``actions``/``next_observations`` must be 2-D; ``rewards``,
        ``terminals`` (0/1) and ``timeouts`` (0/1) may be (N,) or (N, 1). ``timeouts`` defaults
        to all zeros; at least one terminal or timeout is required. Arrays that end mid-episode
        get ``timeouts[-1] = 1``. When ``next_observations`` is None it is derived from
        ``observations[t + 1]`` inside each episode (a terminal step uses ``observations[t]``),
        and the last step of every timed-out episode, whose successor is unknown, is dropped.
        Actions outside ``info.action_low/high`` by at most 1e-4 are clipped; further outside
        is an error. With ``info.num_actions = K`` the actions are discrete: indices of shape
        (N,) or (N, 1), whole numbers in ``[0, K)`` (an int or float array), stored as int32 (N,).
        ``behaviour_log_probs`` (optional, (N,) or (N, 1)): the behaviour policy's log-probability
        of each logged action; NaN and +inf are errors, -inf (probability zero) is kept.
        """
        info = DatasetInfo() if info is None else info
        if not isinstance(info, DatasetInfo):
            raise _error("info", f"must be a DatasetInfo, got {type(info).__name__}",
                         "wrap the metadata with DatasetInfo(...) or DatasetInfo.from_dict(...)")
        raw = {"observations": observations, "actions": actions, "rewards": rewards,
               "terminals": terminals}
        for name, value in raw.items():
            if value is None:
                raise _error(name, "is missing (None)", f"pass the '{name}' array")
        arrays = {name: _as_numeric(value, name) for name, value in raw.items()}
        if timeouts is not None:
            arrays["timeouts"] = _as_numeric(timeouts, "timeouts")
        if next_observations is not None:
            arrays["next_observations"] = _as_numeric(next_observations, "next_observations")
        if behaviour_log_probs is not None:
            arrays["behaviour_log_probs"] = _as_numeric(behaviour_log_probs, "behaviour_log_probs")

        obs = arrays["observations"]
        if obs.ndim >= 1 and obs.shape[0] == 0:
            raise _error("observations", "the dataset is empty (0 transitions)",
                         "pass at least one transition")
        num_actions = info.num_actions
        for name in ("observations", "actions", "next_observations"):
            if name in arrays:
                if name == "actions" and num_actions is not None:
                    arrays[name] = _check_discrete_shape(arrays[name], num_actions)
                    continue
                arrays[name] = _check_matrix(arrays[name], name)
        for name in ("rewards", "terminals", "timeouts", "behaviour_log_probs"):
            if name in arrays:
                arrays[name] = _check_vector(arrays[name], name)

        lengths = {name: len(arr) for name, arr in arrays.items()}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"{k}={v}" for k, v in lengths.items())
            majority = Counter(lengths.values()).most_common(1)[0][0]
            bad = [k for k, v in lengths.items() if v != majority]
            raise _error(bad[0], f"length mismatch ({listing})",
                         "every array needs one row per transition; trim or fix the arrays "
                         "so the lengths agree")
        n = lengths["observations"]
        if "next_observations" in arrays and arrays["next_observations"].shape != obs.shape:
            raise _error("next_observations",
                         f"has shape {arrays['next_observations'].shape} but observations has "
                         f"{obs.shape}", "next_observations must have the same shape as "
                         "observations")

        for name in ("observations", "actions", "rewards", "next_observations"):
            if name in arrays:
                if name == "actions" and num_actions is not None:
                    arrays[name] = _to_discrete_actions(arrays[name], num_actions)
                    continue
                arrays[name] = _to_float32(arrays[name], name)
        terminals = _to_flags(arrays["terminals"], "terminals")
        timeouts = (_to_flags(arrays["timeouts"], "timeouts") if "timeouts" in arrays
                    else np.zeros(n, dtype=np.float32))

        if not (terminals.any() or timeouts.any()):
            raise _error("terminals/timeouts", "both are all zero, so there is no episode end "
                         "at all", "supply timeouts (time-limit cuts) or terminals marking where "
                         "each episode ends")
        if terminals[-1] == 0 and timeouts[-1] == 0:
            timeouts[-1] = 1.0  # the arrays end mid-episode: a time-limit style cut

        log_probs = arrays.get("behaviour_log_probs")
        if log_probs is not None:
            log_probs = np.asarray(log_probs, dtype=np.float64)
            bad = np.isnan(log_probs) | (log_probs == np.inf)
            if bad.any():
                raise _error("behaviour_log_probs", f"{int(bad.sum())} values are NaN or +inf (first at row "
                             f"{int(np.argmax(bad))})", "store log pi_beta(a|s) of every logged action "
                             "(finite, or -inf where its probability is zero), or leave the array out")
        obs = arrays["observations"]
        actions, rewards = arrays["actions"], arrays["rewards"]
        next_obs = arrays.get("next_observations")
        if next_obs is None:
            keep, next_obs, timeouts = _derive_next_observations(obs, terminals, timeouts)
            if log_probs is not None:
                log_probs = log_probs[keep]
            obs, actions = obs[keep], actions[keep]
            rewards, terminals = rewards[keep], terminals[keep]
            if len(obs) == 0:
                raise _error("next_observations", "is absent and every transition ends a "
                             "timed-out one-step episode, so no transition with a known "
                             "successor remains", "supply next_observations")

        if num_actions is None:
            actions = _check_action_bounds(actions, info)
        out = {"observations": obs, "actions": actions, "rewards": rewards,
               "next_observations": next_obs, "terminals": terminals, "timeouts": timeouts}
        for name, arr in out.items():
            dtype = np.int32 if name == "actions" and num_actions is not None else np.float32
            arr = np.array(arr, dtype=dtype, order="C")  # a private copy, never the input
            arr.flags.writeable = False
            out[name] = arr
        if log_probs is not None:
            log_probs = np.array(log_probs, dtype=np.float32, order="C")
            log_probs.flags.writeable = False
        return cls(**out, info=info, behaviour_log_probs=log_probs)

    # -- derived quantities ------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_transitions

    def __repr__(self) -> str:
        actions = (f"num_actions={self.num_actions}" if self.is_discrete
                   else f"act_dim={self.act_dim}")
        return (f"Dataset(name={self.info.name!r}, transitions={self.num_transitions}, "
                f"episodes={self.num_episodes}, obs_dim={self.obs_dim}, {actions})")

    @property
    def num_transitions(self) -> int:
        """Number of transitions N."""
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        """Observation dimension."""
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action dimension (1 for discrete actions: one index per transition)."""
        return 1 if self.actions.ndim == 1 else int(self.actions.shape[1])

    @property
    def num_actions(self) -> int | None:
        """Number of discrete actions K, or None for continuous actions."""
        return self.info.num_actions

    @property
    def is_discrete(self) -> bool:
        """True when ``actions`` are int32 indices in [0, num_actions)."""
        return self.info.num_actions is not None

    @cached_property
    def episode_ends(self) -> np.ndarray:
        """(N,) bool: transition t is the last of its episode."""
        ends = (self.terminals > 0) | (self.timeouts > 0)
        ends[-1] = True
        ends.flags.writeable = False
        return ends

    @cached_property
    def episode_starts(self) -> np.ndarray:
        """(N,) bool: transition t is the first of its episode."""
        starts = np.empty_like(self.episode_ends)
        starts[0] = True
        starts[1:] = self.episode_ends[:-1]
        starts.flags.writeable = False
        return starts

    @cached_property
    def episode_id(self) -> np.ndarray:
        """(N,) int64: episode number (0-based, in order) of each transition."""
        ids = np.cumsum(self.episode_starts, dtype=np.int64) - 1
        ids.flags.writeable = False
        return ids

    @cached_property
    def episode_end_index(self) -> np.ndarray:
        """(N,) int64: index of the last transition of each transition's episode."""
        idx = np.flatnonzero(self.episode_ends)[self.episode_id]
        idx.flags.writeable = False
        return idx

    @cached_property
    def episode_start_index(self) -> np.ndarray:
        """(N,) int64: index of the first transition of each transition's episode."""
        idx = np.flatnonzero(self.episode_starts)[self.episode_id]
        idx.flags.writeable = False
        return idx

    @property
    def num_episodes(self) -> int:
        """Number of episodes (including a final partial one)."""
        return int(self.episode_ends.sum())

    def episode_returns(self) -> np.ndarray:
        """(num_episodes,) float64: undiscounted return of every episode."""
        return np.bincount(self.episode_id, weights=self.rewards.astype(np.float64),
                           minlength=self.num_episodes)

    def episode_lengths(self) -> np.ndarray:
        """(num_episodes,) int64: number of transitions of every episode."""
        return np.bincount(self.episode_id, minlength=self.num_episodes)

    def select_episodes(self, episodes: Any) -> Dataset:
        """A new dataset of whole episodes, in their original order, with the same `info`.

        ``episodes`` is a boolean mask of length ``num_episodes`` or a sequence of episode numbers
        (``episode_id`` values; repeats are ignored). Every episode keeps its end flags, so episode
        boundaries, returns and n-step/segment sampling are unchanged for the kept episodes.
        """
        sel = np.asarray(episodes)
        n_ep = self.num_episodes
        if sel.dtype == np.bool_:
            if sel.shape != (n_ep,):
                raise _error("episodes", f"a boolean mask must have shape ({n_ep},) (one entry per "
                             f"episode) but has shape {sel.shape}", "pass one True/False per episode, "
                             "or a list of episode numbers")
            mask = sel
        else:
            if sel.size and not np.issubdtype(sel.dtype, np.integer):
                raise _error("episodes", f"must be a boolean mask or integer episode numbers, got "
                             f"dtype {sel.dtype}", "pass e.g. np.flatnonzero(mask) or a bool mask")
            ids = sel.astype(np.int64).ravel()
            if ids.size and (ids.min() < 0 or ids.max() >= n_ep):
                raise _error("episodes", f"episode numbers must lie in [0, {n_ep - 1}] but got "
                             f"{int(ids.min())}..{int(ids.max())}", "use episode_id values of this dataset")
            mask = np.zeros(n_ep, dtype=bool)
            mask[ids] = True
        if not mask.any():
            raise _error("episodes", "selects no episode", "select at least one episode")
        keep = mask[self.episode_id]
        arrays = {name: arr[keep] for name, arr in self.stored_arrays().items()}
        return Dataset.from_arrays(**arrays, info=self.info)

    def arrays(self) -> dict[str, np.ndarray]:
        """The six arrays by name (D4RL keys)."""
        return {name: getattr(self, name) for name in
                ("observations", "actions", "rewards", "next_observations", "terminals",
                 "timeouts")}

    def stored_arrays(self) -> dict[str, np.ndarray]:
        """The six arrays plus ``behaviour_log_probs`` when the dataset has it: what the files hold."""
        out = self.arrays()
        if self.behaviour_log_probs is not None:
            out["behaviour_log_probs"] = self.behaviour_log_probs
        return out

    # -- files -------------------------------------------------------------------------------

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike) -> Dataset:
        """Load a D4RL-layout HDF5 file (extra groups such as ``infos/`` are ignored)."""
        path = Path(path)
        _check_readable(path)
        try:
            with h5py.File(path, "r") as f:
                found = sorted(f.keys())
                missing = [k for k in REQUIRED_KEYS if k not in f]
                if missing:
                    raise _missing_keys_error(path, missing, found)
                arrays = {}
                for key in REQUIRED_KEYS + OPTIONAL_KEYS:
                    if key not in f:
                        continue
                    if not isinstance(f[key], h5py.Dataset):
                        raise DatasetError(f"{path}: field '{key}': is an HDF5 group, not an "
                                           "array. Fix: store it as a top-level dataset.")
                    arrays[key] = f[key][()]
                info = _info_from_attrs(dict(f.attrs), path)
        except DatasetError:
            raise
        except (OSError, KeyError, RuntimeError) as exc:
            raise DatasetError(f"{path}: cannot be read ({exc}); the file is truncated or not "
                               "HDF5. Fix: re-download or remake it.") from None
        return _from_file_arrays(path, arrays, info)

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> Dataset:
        """Load an ``.npz`` file written by `save_npz` (or any npz with the D4RL keys)."""
        path = Path(path)
        _check_readable(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                found = sorted(f.files)
                missing = [k for k in REQUIRED_KEYS if k not in found]
                if missing:
                    raise _missing_keys_error(path, missing, found)
                arrays = {k: f[k] for k in REQUIRED_KEYS + OPTIONAL_KEYS if k in found}
                info_json = str(f[INFO_KEY][()]) if INFO_KEY in found else None
        except DatasetError:
            raise
        except Exception as exc:  # zipfile.BadZipFile, OSError, ValueError, EOFError, ...
            raise DatasetError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); the file "
                               "is truncated or not npz. Fix: re-download or remake it.") from None
        info = _info_from_attrs({INFO_KEY: info_json} if info_json else {}, path)
        return _from_file_arrays(path, arrays, info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dataset:
        """Load an HDF5 or npz dataset, recognised by its content (then by its suffix)."""
        path = Path(path)
        _check_readable(path)
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(_HDF5_MAGIC):
            return cls.from_hdf5(path)
        if head.startswith(_ZIP_MAGIC):
            return cls.from_npz(path)
        suffix = path.suffix.lower()
        if suffix in (".h5", ".hdf5", ".hdf"):
            return cls.from_hdf5(path)
        if suffix == ".npz":
            return cls.from_npz(path)
        raise DatasetError(f"{path}: unknown file format (neither HDF5 nor npz). Fix: pass an "
                           ".hdf5 file in the D4RL layout or an .npz file written by save_npz.")

    def save_hdf5(self, path: str | os.PathLike) -> Path:
        """Atomically write the D4RL layout; `info` goes into the file attributes."""

        def write(f: BinaryIO) -> None:
            with h5py.File(f, "w") as h5:
                for name, arr in self.stored_arrays().items():
                    if name in ("terminals", "timeouts"):
                        arr = arr > 0  # D4RL stores the flags as booleans
                    h5.create_dataset(name, data=arr)
                h5.attrs[INFO_KEY] = json.dumps(self.info.to_dict())
                h5.attrs[CHECKSUM_KEY] = array_checksum(self)
                for key, value in self.info.to_dict().items():
                    if isinstance(value, (str, int, float)) and key != INFO_KEY:
                        h5.attrs[key] = value

        return _atomic_write(path, write)

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Atomically write an uncompressed ``.npz`` (info as a JSON string array)."""

        def write(f: BinaryIO) -> None:
            np.savez(f, **self.stored_arrays(), **{INFO_KEY: np.array(json.dumps(self.info.to_dict())),
                                            CHECKSUM_KEY: np.array(array_checksum(self))})

        return _atomic_write(path, write)


def _check_action_bounds(actions: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """Validate actions against known bounds; clip values within the tolerance."""
    if info.action_low is None and info.action_high is None:
        return actions
    if info.action_low is None or info.action_high is None:
        raise _error("info.action_low/action_high", "only one of the two bounds is set",
                     "set both bounds or neither")
    act_dim = actions.shape[1]
    low = np.asarray(info.action_low, dtype=np.float32)
    high = np.asarray(info.action_high, dtype=np.float32)
    for name, bound in (("info.action_low", low), ("info.action_high", high)):
        if bound.shape != (act_dim,):
            raise _error(name, f"has {bound.size} values but actions have act_dim={act_dim}",
                         "give one bound per action dimension")
        if not np.isfinite(bound).all():
            raise _error(name, "holds non-finite values", "give finite action bounds")
    if not (low < high).all():
        raise _error("info.action_low/action_high", f"low {low.tolist()} is not below high "
                     f"{high.tolist()} in every dimension", "check the bounds")
    excess = np.maximum(low - actions, actions - high)
    bad = excess > ACTION_BOUND_TOLERANCE
    if bad.any():
        row, col = np.unravel_index(int(np.argmax(excess)), excess.shape)
        raise _error("actions", f"{int(bad.sum())} values lie outside the action bounds by more "
                     f"than {ACTION_BOUND_TOLERANCE:g} (worst: {float(actions[row, col]):.6g} at "
                     f"row {row}, dimension {col}; bounds low={low.tolist()}, "
                     f"high={high.tolist()})", "clip the actions to the bounds (np.clip) before "
                     "building the dataset, or correct info.action_low/action_high")
    return np.clip(actions, low, high)


def _missing_keys_error(path: Path, missing: list[str], found: list[str]) -> DatasetError:
    return DatasetError(
        f"{path}: field '{missing[0]}': missing key(s) {missing}; found {found}, required "
        f"{list(REQUIRED_KEYS)} (optional {list(OPTIONAL_KEYS)}). Fix: write the file with the "
        "D4RL key layout, e.g. Dataset.from_arrays(...).save_hdf5(path).")


def _info_from_attrs(attrs: Mapping[str, Any], path: Path) -> DatasetInfo:
    """Read `DatasetInfo` from file attributes: the JSON attr, else plain attrs, else defaults."""
    raw = attrs.get(INFO_KEY)
    if raw is not None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        try:
            return DatasetInfo.from_dict(json.loads(str(raw)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DatasetError(f"{path}: field '{INFO_KEY}': is not valid JSON ({exc}). Fix: "
                               "remake the file with save_hdf5/save_npz.") from None
    plain: dict[str, Any] = {}
    for key in ("name", "env_id", "ref_min_score", "ref_max_score", "num_actions"):
        value = attrs.get(key)
        if value is not None:
            plain[key] = value.decode("utf-8") if isinstance(value, bytes) else value
    for key in ("name", "env_id"):
        if key in plain:
            plain[key] = str(plain[key])
    plain.setdefault("name", path.stem)
    return DatasetInfo.from_dict(plain)


def _from_file_arrays(path: Path, arrays: dict[str, np.ndarray], info: DatasetInfo) -> Dataset:
    try:
        return Dataset.from_arrays(**arrays, info=info)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
