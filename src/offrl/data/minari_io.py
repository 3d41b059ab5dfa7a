"""Interop with Minari (https://minari.farama.org), the Farama offline-RL dataset format.

Optional: needs the ``minari`` extra (``pip install 'offrl[minari]'``, which installs
``minari[create,hdf5,arrow]==0.5.4``). ``minari`` is imported only when a function here runs.

* :func:`from_minari` reads a *local* Minari dataset (by id, from ``$MINARI_DATASETS_PATH``,
  default ``~/.minari/datasets``, or by folder path) into an offrl :class:`Dataset`. Both of
  Minari's storages (HDF5 and Arrow/Parquet) are read through ``minari``'s own reader. Nothing is
  ever downloaded: fetch remote datasets first with ``minari download ID``.
* :func:`to_minari` writes any offrl :class:`Dataset` as a Minari dataset that
  ``minari.load_dataset(dataset_id)`` opens.
* :func:`load_minari_name` resolves ``"minari:NAMESPACE/NAME-vN"`` names for
  ``offrl.data.load_dataset``.

Conversion rules (Minari stores ``T + 1`` observations for an episode of ``T`` steps):

* ``observations = obs[:-1]``, ``next_observations = obs[1:]`` per episode;
* ``terminals = terminations``; ``timeouts = truncations and not terminations``; the last step of
  an episode that is neither terminated nor truncated gets ``timeouts = 1`` (offrl needs every
  episode to end);
* a ``Discrete(n)`` action space (with ``start`` 0) gives a discrete dataset: integer actions of
  shape (N,) and ``info.num_actions = n``; ``to_minari`` writes a discrete dataset with a
  ``Discrete(num_actions)`` action space;
* observations and actions of any other non-flat space (``Dict``, ``Tuple``, ``Discrete`` with a
  non-zero ``start``, ``MultiDiscrete``, multi-dimensional ``Box``) are flattened exactly as
  ``gymnasium.spaces.flatten(space, x)`` does (``Dict`` in the space's key order, discrete values
  one-hot), vectorised over the episode; ``Text``/``Graph``/``Sequence`` spaces are rejected. The
  original spaces are recorded as strings in ``info.metadata``, and the observations' flattening
  (key order, shapes) in ``info.obs_layout``, so evaluation and ``Agent.act`` flatten the env's
  raw observations alike (``offrl.data.spaces``);
* ``env_id``/``env_kwargs`` come from the dataset's evaluation env spec when it has one, else
  from the collection env spec (``max_episode_steps`` is kept in ``env_kwargs`` when it differs
  from the registered one); ``action_low/high`` from a ``Box`` action space with finite bounds;
  ``ref_min_score``/``ref_max_score`` from the Minari metadata (Minari normalises to 0..1, offrl to
  0..100 with the same references);
* episodes of 0 steps are skipped; ``infos`` are ignored except the key below.

Writing (:func:`to_minari`): episodes follow offrl's episode boundaries; an episode's Minari
observations are its ``observations`` plus its last ``next_observation``. When some
``next_observations[t]`` inside an episode is not ``observations[t + 1]`` (data that are not one
chained trajectory), Minari's layout cannot hold both; by default the true successors are also
stored per step in ``infos["offrl_next_observations"]`` (``T + 1`` rows, row ``t + 1`` is the
successor of step ``t``, the Minari convention for infos) and :func:`from_minari` uses them, so the
round trip is exact. The offrl ``DatasetInfo`` travels in the Minari metadata (``offrl_info``),
with the array checksum (``offrl_sha256``) which :func:`from_minari` checks.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset, DatasetError, DatasetInfo
from offrl.data.spaces import flatten_batch, space_layout

__all__ = ["MINARI_PREFIX", "from_minari", "load_minari_name", "to_minari"]

#: Prefix of Minari names accepted by ``offrl.data.load_dataset``.
MINARI_PREFIX = "minari:"
#: How to install the optional dependency.
INSTALL_HINT = "pip install 'offrl[minari]'"
#: Per-step info key holding the true successors when they are not the chained observations.
NEXT_OBS_INFO_KEY = "offrl_next_observations"
#: Minari metadata keys written by :func:`to_minari`.
INFO_METADATA_KEY = "offrl_info"
CHECKSUM_METADATA_KEY = "offrl_sha256"
#: Rows (steps + 1) of an episode that Minari 0.5.4's Arrow/Parquet storage keeps intact: longer
#: episodes are split into 32768-row batches that its writer reorders and its reader truncates.
_ARROW_SAFE_ROWS = 32768


def _import_minari():
    try:
        import minari
    except ImportError as exc:
        raise ImportError(
            f"Minari support is an optional extra: install it with {INSTALL_HINT} "
            f"(minari[create,hdf5,arrow]==0.5.4). [{exc}]"
        ) from exc
    return minari


def _minari_root() -> Path:
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env).expanduser() if env else Path.home() / ".minari" / "datasets"


# ---------------------------------------------------------------------------------------------
# Space flattening (vectorised gymnasium.spaces.flatten)
# ---------------------------------------------------------------------------------------------


def _flatten_batch(space: Any, values: Any, n: int, what: str) -> np.ndarray:
    """``np.stack([gymnasium.spaces.flatten(space, v) for v in values])`` without the loop."""
    try:
        layout = space_layout(space)
    except DatasetError as exc:
        raise DatasetError(f"field '{what}': {exc}") from None
    return flatten_batch(layout, values, n, what)


def _is_flat(space: Any) -> bool:
    from gymnasium import spaces

    return isinstance(space, spaces.Box) and len(space.shape) == 1


def _is_index_space(space: Any) -> bool:
    """A ``Discrete(n)`` action space starting at 0: read as integer action indices."""
    from gymnasium import spaces

    return isinstance(space, spaces.Discrete) and int(space.start) == 0


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _open(source: Any):
    """A ``MinariDataset`` from an instance, a folder, or a local dataset id."""
    minari = _import_minari()
    if isinstance(source, minari.MinariDataset):
        return source
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        for data_path in (path / "data", path):
            if (data_path / "metadata.json").is_file():
                return minari.MinariDataset(data_path)
        raise DatasetError(f"Minari dataset folder {path}: holds no data/metadata.json. Fix: pass "
                           "a Minari dataset folder (the one holding data/) or a local dataset id")
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(text)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"Minari dataset id {text!r} is malformed ({exc}) and is not an "
                           "existing folder. Fix: use NAMESPACE/NAME-vN (the version is "
                           "required), e.g. "
                           "'D4RL/door/human-v2', or the path of a Minari dataset folder") from None
    try:
        return minari.load_dataset(text, download=False)
    except FileNotFoundError:
        raise DatasetError(f"Minari dataset {text!r} is not in the local store "
                           f"{_minari_root() / text} ($MINARI_DATASETS_PATH, default "
                           "~/.minari/datasets); offrl never downloads. Fix: `minari download "
                           f"{text}` first, set MINARI_DATASETS_PATH, or write it with "
                           "offrl.data.minari_io.to_minari") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        value = sorted(value) if isinstance(value, set) else list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _env_fields(spec: Any) -> tuple[str | None, dict]:
    if spec is None:
        return None, {}
    import gymnasium as gym

    kwargs = {k: v for k, v in dict(spec.kwargs or {}).items() if _jsonable(v) is not None
              or v is None}
    registered = gym.registry.get(spec.id)
    if spec.max_episode_steps is not None and (
            registered is None or registered.max_episode_steps != spec.max_episode_steps):
        kwargs["max_episode_steps"] = int(spec.max_episode_steps)
    return spec.id, kwargs


def _info_from_minari(mds: Any, meta: dict, obs_space: Any, act_space: Any) -> DatasetInfo:
    from gymnasium import spaces

    raw = meta.get(INFO_METADATA_KEY)
    if raw is not None:
        try:
            return DatasetInfo.from_dict(json.loads(raw))
        except (TypeError, ValueError) as exc:
            warnings.warn(f"Minari dataset {mds.id}: unreadable {INFO_METADATA_KEY} metadata "
                          f"({exc}); rebuilding the info from the Minari metadata", stacklevel=3)
    eval_spec = getattr(mds, "_eval_env_spec", None)
    env_id, env_kwargs = _env_fields(eval_spec if eval_spec is not None else mds.env_spec)
    low = high = None
    if isinstance(act_space, spaces.Box):
        lo = np.asarray(act_space.low, np.float64).reshape(-1)
        hi = np.asarray(act_space.high, np.float64).reshape(-1)
        if np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all():
            low, high = lo.tolist(), hi.tolist()
    extras = {k: _jsonable(meta[k]) for k in ("author", "author_email", "algorithm_name",
                                                 "description", "code_permalink",
                                                 "requirements", "num_episodes_average_score")
              if meta.get(k) is not None}
    metadata = {
        "source": "minari",
        "minari_dataset_id": mds.id,
        "minari_version": mds.minari_version,
        "minari_data_format": meta.get("data_format"),
        "minari_env_id": mds.env_spec.id if mds.env_spec is not None else None,
        "minari_eval_env_id": eval_spec.id if eval_spec is not None else None,
        "observation_space": str(obs_space),
        "action_space": str(act_space),
        "observations_flattened": not _is_flat(obs_space),
        "actions_flattened": not (_is_flat(act_space) or _is_index_space(act_space)),
        **{k: v for k, v in extras.items() if v is not None},
    }
    ref_min, ref_max = meta.get("ref_min_score"), meta.get("ref_max_score")
    return DatasetInfo(name=mds.id, env_id=env_id, env_kwargs=env_kwargs, action_low=low,
                       action_high=high,
                       num_actions=int(act_space.n) if _is_index_space(act_space) else None,
                       obs_layout=None if _is_flat(obs_space) else space_layout(obs_space),
                       ref_min_score=None if ref_min is None else float(ref_min),
                       ref_max_score=None if ref_max is None else float(ref_max),
                       metadata=metadata)


def from_minari(dataset_id_or_path: Any, *, clip_actions: bool = False) -> Dataset:
    """Load a local Minari dataset as an offrl :class:`Dataset` (see the module docstring).

    Args:
        dataset_id_or_path: a Minari id (``NAMESPACE/NAME-vN``, looked up in
            ``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``; never downloaded), the path
            of a Minari dataset folder (the one holding ``data/``, or ``data/`` itself), or a
            ``minari.MinariDataset``.
        clip_actions: clip actions to the action space's bounds first (for datasets whose actions
            leave the bounds by more than offrl's tolerance, which is otherwise an error).

    Raises:
        ImportError: ``minari`` is not installed (``pip install 'offrl[minari]'``).
        DatasetError: the id is malformed or not stored locally, a space cannot be flattened, or
            the arrays fail offrl's validation.
    """
    mds = _open(dataset_id_or_path)
    meta = mds.storage.metadata
    obs_space, act_space = mds.observation_space, mds.action_space

    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    for ep in mds.iterate_episodes():
        t = len(ep.rewards)
        if t == 0:
            continue
        obs = _flatten_batch(obs_space, ep.observations, t + 1, "observations")
        infos = ep.infos or {}
        if NEXT_OBS_INFO_KEY in infos:
            succ = np.asarray(infos[NEXT_OBS_INFO_KEY]).reshape(t + 1, -1)[1:]
        else:
            succ = obs[1:]
        term = np.asarray(ep.terminations, dtype=bool).reshape(t)
        trunc = np.asarray(ep.truncations, dtype=bool).reshape(t)
        tout = trunc & ~term
        if not (term[-1] or trunc[-1]):
            tout[-1] = True
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(succ)
        if _is_index_space(act_space):
            parts["actions"].append(np.asarray(ep.actions).reshape(t))
        else:
            parts["actions"].append(_flatten_batch(act_space, ep.actions, t, "actions"))
        parts["rewards"].append(np.asarray(ep.rewards, dtype=np.float64).reshape(t))
        parts["terminals"].append(term)
        parts["timeouts"].append(tout)
    if not parts["rewards"]:
        raise DatasetError(f"Minari dataset {mds.id}: field 'episodes': holds no steps. Fix: "
                           "choose a dataset with at least one non-empty episode")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    expected = int(mds.total_steps)
    if expected != len(arrays["rewards"]):
        why = (f" Minari 0.5.4's {meta.get('data_format')} storage loses steps of episodes longer "
               f"than {_ARROW_SAFE_ROWS - 1} steps (its writer also reorders their rows)."
               if meta.get("data_format") in ("arrow", "parquet") else "")
        raise DatasetError(
            f"Minari dataset {mds.id}: field 'episodes': the metadata counts {expected} steps but "
            f"the episodes hold {len(arrays['rewards'])}.{why} Fix: remake the dataset (with "
            "data_format='hdf5')")
    info = _info_from_minari(mds, meta, obs_space, act_space)
    if clip_actions and info.action_low is not None:
        arrays["actions"] = np.clip(arrays["actions"], info.action_low, info.action_high)
    try:
        dataset = Dataset.from_arrays(**arrays, info=info)
    except DatasetError as exc:
        raise DatasetError(f"Minari dataset {mds.id}: {exc}") from None
    stored = meta.get(CHECKSUM_METADATA_KEY)
    if stored is not None:
        from offrl.data.integrity import array_checksum

        if array_checksum(dataset) != stored:
            warnings.warn(f"Minari dataset {mds.id}: its arrays differ from those offrl wrote "
                          f"(checksum {CHECKSUM_METADATA_KEY} mismatch): the dataset was changed "
                          "after export or is corrupt", stacklevel=2)
    return dataset


def load_minari_name(name: str) -> Dataset:
    """``"minari:NAMESPACE/NAME-vN"`` (or a bare id/folder) -> :func:`from_minari`."""
    text = os.fspath(name)
    if text.startswith(MINARI_PREFIX):
        text = text[len(MINARI_PREFIX):]
    if not text:
        raise DatasetError("dataset name 'minari:' names no Minari dataset. Fix: use "
                           "minari:NAMESPACE/NAME-vN, e.g. minari:D4RL/door/human-v2")
    return from_minari(text)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _make_env(info: DatasetInfo):
    """The dataset's env (for the Minari env spec), or None when it cannot be made."""
    if not info.env_id:
        return None
    from offrl.data.registry import builtins_package

    try:  # offrl.envs.make_env through the layer above data: gymnasium.make, with offrl's own ids
        return builtins_package().make_env(info.env_id, info.env_kwargs)  # registered, MuJoCo's model warning dropped
    except Exception as exc:  # noqa: BLE001 - unknown id, missing extra, bad kwargs: keep going
        warnings.warn(f"to_minari: cannot make env {info.env_id!r} ({type(exc).__name__}: "
                      f"{exc}); the Minari dataset gets no env spec (env_id still travels in "
                      f"{INFO_METADATA_KEY})", stacklevel=3)
        return None


def _spaces(dataset: Dataset, env: Any):
    from gymnasium import spaces

    info = dataset.info
    obs_space = None
    if env is not None and isinstance(env.observation_space, spaces.Box) \
            and env.observation_space.shape == (dataset.obs_dim,):
        obs_space = spaces.Box(env.observation_space.low, env.observation_space.high,
                               (dataset.obs_dim,), np.float32)
    if obs_space is None:
        obs_space = spaces.Box(-np.inf, np.inf, (dataset.obs_dim,), np.float32)
    if info.num_actions is not None:
        act_space = spaces.Discrete(info.num_actions)
    elif info.action_low is not None:
        act_space = spaces.Box(np.asarray(info.action_low, np.float32),
                               np.asarray(info.action_high, np.float32), (dataset.act_dim,),
                               np.float32)
    elif env is not None and isinstance(env.action_space, spaces.Box) \
            and env.action_space.shape == (dataset.act_dim,):
        act_space = spaces.Box(env.action_space.low, env.action_space.high, (dataset.act_dim,),
                               np.float32)
    else:
        act_space = spaces.Box(-np.inf, np.inf, (dataset.act_dim,), np.float32)
    return obs_space, act_space


def to_minari(
    dataset: Dataset,
    dataset_id: str,
    *,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    algorithm_name: str | None = None,
    description: str | None = None,
    data_format: str = "hdf5",
    exact_next_observations: bool = True,
    overwrite: bool = False,
):
    """Write ``dataset`` as the local Minari dataset ``dataset_id`` and return it opened.

    The dataset goes to ``$MINARI_DATASETS_PATH/dataset_id`` (default ``~/.minari/datasets``).
    When ``info.env_id`` can be made with gymnasium, its env spec is recorded (so Minari's
    ``recover_environment`` works) and its observation bounds are used when the shapes match.
    Reference scores are stored when both are known. Unset ``author``/``description``/... are
    simply left out (Minari's warnings about them are silenced).

    Args:
        dataset: any offrl dataset.
        dataset_id: ``(NAMESPACE/)NAME-vN``; the version is required by Minari.
        author, author_email, code_permalink, algorithm_name, description: Minari metadata
            (``description`` defaults to one naming the offrl dataset).
        data_format: Minari storage, ``"hdf5"`` (default, one file) or ``"arrow"``/``"parquet"``
            (one folder per episode; slower to write for many episodes).
        exact_next_observations: when ``next_observations`` are not the chained observations,
            also store them in ``infos`` (see the module docstring) so the round trip is exact;
            False drops them (Minari readers then see ``observations[t + 1]`` as successors).
        overwrite: replace an existing local dataset with this id (default: error).

    Raises:
        ImportError: ``minari`` is not installed. DatasetError: bad id, or the id exists.
    """
    minari = _import_minari()
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    from offrl.data.integrity import array_checksum

    if not isinstance(dataset, Dataset):
        raise DatasetError(f"to_minari needs an offrl Dataset, got {type(dataset).__name__}. "
                           "Fix: build one with Dataset.from_arrays or offrl.data.load_dataset")
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"Minari dataset id {dataset_id!r} is malformed ({exc}). Fix: use "
                           "(NAMESPACE/)NAME-vN with a version and a namespace of 2+ characters, "
                           "e.g. 'offrl/pendulum-mixed-v0'") from None
    target = Path(get_dataset_path(dataset_id))
    if target.exists():
        if not overwrite:
            raise DatasetError(f"Minari dataset {dataset_id!r} already exists at {target}. Fix: "
                               "choose another id or version, delete it "
                               f"(minari.delete_dataset({dataset_id!r})), or pass overwrite=True")
        shutil.rmtree(target)

    info = dataset.info
    obs, nxt = dataset.observations, dataset.next_observations
    inner = np.flatnonzero(~dataset.episode_ends)
    chained = bool(np.array_equal(nxt[inner], obs[inner + 1]))
    store_next = exact_next_observations and not chained

    starts = np.flatnonzero(dataset.episode_starts)
    ends = np.flatnonzero(dataset.episode_ends)
    buffers = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        ep_obs = np.concatenate([obs[s:e + 1], nxt[e:e + 1]])
        infos = None
        if store_next:
            infos = {NEXT_OBS_INFO_KEY: np.concatenate([obs[s:s + 1], nxt[s:e + 1]])}
        buffers.append(EpisodeBuffer(
            observations=ep_obs,
            actions=np.asarray(dataset.actions[s:e + 1]),
            rewards=np.asarray(dataset.rewards[s:e + 1]),
            terminations=dataset.terminals[s:e + 1] > 0,
            truncations=dataset.timeouts[s:e + 1] > 0,
            infos=infos,
        ))

    longest = int(dataset.episode_lengths().max())
    if data_format in ("arrow", "parquet") and longest + 1 > _ARROW_SAFE_ROWS:
        raise DatasetError(
            f"to_minari: field 'data_format': the longest episode has {longest} steps, but Minari "
            f"0.5.4's {data_format} storage reorders the rows of episodes longer than "
            f"{_ARROW_SAFE_ROWS - 1} steps on write and truncates them on read. Fix: use "
            "data_format='hdf5'")
    env = _make_env(info)
    obs_space, act_space = _spaces(dataset, env)
    if description is None:
        description = f"offrl dataset {info.name or '(unnamed)'} exported by offrl.data.minari_io"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is set to None.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"env_spec is None.*", category=UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env, observation_space=obs_space,
                action_space=act_space, algorithm_name=algorithm_name, author=author,
                author_email=author_email, code_permalink=code_permalink,
                description=description, data_format=data_format, jpeg_encoding=False,
            )
        extra: dict[str, Any] = {
            INFO_METADATA_KEY: json.dumps(info.to_dict()),
            CHECKSUM_METADATA_KEY: array_checksum(dataset),
        }
        if info.ref_min_score is not None and info.ref_max_score is not None:
            # Set directly: through create_dataset_from_buffers Minari keeps them only with an
            # eval env, and computes a missing ref_min_score with 100 random episodes.
            extra["ref_min_score"] = info.ref_min_score
            extra["ref_max_score"] = info.ref_max_score
        mds = minari.load_dataset(dataset_id)
        mds.storage.update_metadata(extra)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # never leave a half-written dataset
        raise
    finally:
        if env is not None:
            env.close()
    return minari.load_dataset(dataset_id)
