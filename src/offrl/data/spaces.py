"""How a non-flat observation space becomes a dataset row, recorded so that an env can be flattened alike.

A *layout* is a JSON-able description of a gymnasium space, made by :func:`space_layout`:

* ``{"type": "Box", "shape": [...]}`` and ``{"type": "MultiBinary", "shape": [...]}``: the values,
  reshaped to one row;
* ``{"type": "Discrete", "n": n, "start": s}``: a one-hot row of ``n`` values;
* ``{"type": "MultiDiscrete", "nvec": [...], "start": [...]}``: one one-hot block per entry;
* ``{"type": "Dict", "spaces": [[key, layout], ...]}``: the blocks of the keys, in this order;
* ``{"type": "Tuple", "spaces": [layout, ...]}``: the blocks of the entries, in order.

:func:`flatten_batch` flattens exactly as ``gymnasium.spaces.flatten(space, x)`` does, vectorised
over rows. The Minari loader (``offrl.data.minari_io``) flattens a dataset's observations with it and
stores the layout in ``DatasetInfo.obs_layout``, which travels with every checkpoint; the evaluation
loop and ``Agent.act`` flatten an env's raw observation (a dict, say) with the same layout and the same
function, so an agent sees the env's observations exactly as it saw the dataset's rows.

``gymnasium`` is imported only by :func:`space_layout`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from offrl.data.dataset import DatasetError

__all__ = ["flatten_batch", "flatten_observations", "layout_size", "space_layout"]

_SEQUENCE_TYPES = ("Dict", "Tuple")


def space_layout(space: Any) -> dict:
    """The layout of a gymnasium space (see the module docstring); an error for a space of no fixed size."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": [int(d) for d in space.shape]}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": [int(d) for d in np.atleast_1d(space.shape)]}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).reshape(-1).tolist(),
                "start": np.asarray(space.start).reshape(-1).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[str(k), space_layout(s)] for k, s in space.spaces.items()]}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_layout(s) for s in space.spaces]}
    raise DatasetError(f"the space {space} cannot be flattened to a fixed size vector. Fix: offrl "
                       "supports Box, Discrete, MultiDiscrete, MultiBinary and Dict/Tuple of those")


def layout_size(layout: Mapping) -> int:
    """Width of the flat row of a layout."""
    kind = layout["type"]
    if kind in ("Box", "MultiBinary"):
        return int(np.prod(layout["shape"], dtype=np.int64))
    if kind == "Discrete":
        return int(layout["n"])
    if kind == "MultiDiscrete":
        return int(np.sum(layout["nvec"]))
    if kind == "Dict":
        return sum(layout_size(sub) for _, sub in layout["spaces"])
    if kind == "Tuple":
        return sum(layout_size(sub) for sub in layout["spaces"])
    raise DatasetError(f"observation layout: unknown type {kind!r}. Fix: the layout was not written "
                       "by offrl.data.spaces.space_layout; remake the dataset")


def flatten_batch(layout: Mapping, values: Any, n: int, what: str) -> np.ndarray:
    """``np.stack([gymnasium.spaces.flatten(space, v) for v in values])`` without the loop.

    ``values`` holds ``n`` rows in the structure of the space (a dict of arrays with a leading
    axis of ``n`` for a ``Dict``); ``what`` names the field in error messages.
    """
    kind = layout["type"]
    if kind in ("Box", "MultiBinary"):
        arr = np.asarray(values)
        if arr.shape[:1] != (n,):
            raise DatasetError(f"field '{what}': has {arr.shape[:1]} rows, expected {n}. Fix: "
                               "pass one value per row")
        size = layout_size(layout)
        if arr.size != n * size:
            raise DatasetError(f"field '{what}': has shape {arr.shape[1:]} per row, expected "
                               f"{tuple(layout['shape'])}. Fix: use the space the data were "
                               "recorded with")
        return arr.reshape(n, -1)
    if kind == "Discrete":
        idx = np.asarray(values, dtype=np.int64).reshape(n) - int(layout["start"])
        out = np.zeros((n, int(layout["n"])), dtype=np.float32)
        out[np.arange(n), idx] = 1.0
        return out
    if kind == "MultiDiscrete":
        nvec = np.asarray(layout["nvec"], dtype=np.int64)
        start = np.asarray(layout["start"], dtype=np.int64)
        idx = np.asarray(values, dtype=np.int64).reshape(n, -1) - start
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        out = np.zeros((n, int(nvec.sum())), dtype=np.float32)
        out[np.arange(n)[:, None], offsets + idx] = 1.0
        return out
    if kind == "Dict":
        if not isinstance(values, Mapping):
            raise DatasetError(f"field '{what}': is a {type(values).__name__}, expected a dict with "
                               f"the keys {_keys(layout)}. Fix: pass the env's dict observation")
        parts = []
        for key, sub in layout["spaces"]:
            if key not in values:
                raise DatasetError(f"field '{what}': has no key {key!r} (keys: "
                                   f"{', '.join(map(str, values))}; expected {_keys(layout)}). "
                                   "Fix: use the env the data were recorded on")
            parts.append(flatten_batch(sub, values[key], n, f"{what}.{key}"))
        return np.concatenate([p.astype(np.float64) for p in parts], axis=1)
    if kind == "Tuple":
        subs = layout["spaces"]
        if not isinstance(values, (tuple, list)) or len(values) != len(subs):
            raise DatasetError(f"field '{what}': expected a tuple of {len(subs)} entries. Fix: "
                               "pass the env's tuple observation")
        parts = [flatten_batch(sub, values[i], n, f"{what}[{i}]") for i, sub in enumerate(subs)]
        return np.concatenate([p.astype(np.float64) for p in parts], axis=1)
    layout_size(layout)  # raises the unknown-type error
    raise AssertionError(kind)


def flatten_observations(layout: Mapping | None, observations: Any) -> tuple[np.ndarray, bool]:
    """Rows ``(B, obs_dim)`` float32 of one raw observation or a batch, and whether it was one.

    With a ``Dict``/``Tuple`` layout a raw observation is a dict (tuple) whose entries have the
    shapes of the space, and a batch a dict (tuple) of arrays with a leading batch axis, or a list of
    raw observations; a ``Box``/``MultiBinary`` layout reshapes ``shape`` to one row. Anything else
    (already flat rows, or ``layout`` None) is taken as ``(obs_dim,)`` or ``(B, obs_dim)`` rows.
    """
    if layout is None or not _is_raw(layout, observations):
        arr = np.asarray(observations, np.float32)
        return (arr[None], True) if arr.ndim == 1 else (arr, False)
    if isinstance(observations, list) and layout["type"] in _SEQUENCE_TYPES \
            and all(isinstance(o, (Mapping, tuple)) for o in observations):
        rows = [flatten_batch(layout, _one_row(layout, o), 1, "observation")[0] for o in observations]
        return np.stack(rows).astype(np.float32), False
    leaf, leaf_value = _first_leaf(layout, observations)
    extra = np.ndim(leaf_value) - _leaf_ndim(leaf)
    if extra not in (0, 1):
        raise DatasetError(f"observation: an entry has shape {np.shape(leaf_value)}, expected "
                           f"{_leaf_shape(leaf)} (one observation) or (batch, *{_leaf_shape(leaf)}). "
                           "Fix: pass the env's observation")
    if extra == 0:
        return flatten_batch(layout, _one_row(layout, observations), 1, "observation").astype(np.float32), True
    n = int(np.shape(leaf_value)[0])
    return flatten_batch(layout, observations, n, "observation").astype(np.float32), False


def _keys(layout: Mapping) -> str:
    return ", ".join(str(k) for k, _ in layout["spaces"])


def _is_raw(layout: Mapping, observations: Any) -> bool:
    kind = layout["type"]
    if isinstance(observations, Mapping):
        return True
    if kind == "Tuple":
        return isinstance(observations, tuple) or (
            isinstance(observations, list) and bool(observations) and isinstance(observations[0], tuple))
    if kind == "Dict":
        return isinstance(observations, list) and bool(observations) and isinstance(observations[0], Mapping)
    if kind in ("Box", "MultiBinary"):
        shape = tuple(layout["shape"])
        arr_shape = np.shape(observations)
        return len(shape) != 1 and len(arr_shape) >= len(shape) and arr_shape[len(arr_shape) - len(shape):] == shape
    return False


def _first_leaf(layout: Mapping, value: Any) -> tuple[Mapping, Any]:
    kind = layout["type"]
    if kind == "Dict":
        key, sub = layout["spaces"][0]
        if not isinstance(value, Mapping) or key not in value:
            flatten_batch(layout, value, 1, "observation")  # raises the missing-key error
        return _first_leaf(sub, value[key])
    if kind == "Tuple":
        if not isinstance(value, (tuple, list)) or not value:
            flatten_batch(layout, value, 1, "observation")
        return _first_leaf(layout["spaces"][0], value[0])
    return layout, value


def _leaf_shape(leaf: Mapping) -> tuple:
    kind = leaf["type"]
    if kind in ("Box", "MultiBinary"):
        return tuple(leaf["shape"])
    if kind == "MultiDiscrete":
        return (len(leaf["nvec"]),)
    return ()


def _leaf_ndim(leaf: Mapping) -> int:
    return len(_leaf_shape(leaf))


def _one_row(layout: Mapping, value: Any) -> Any:
    """One raw observation with a leading axis of 1 on every entry."""
    kind = layout["type"]
    if kind == "Dict":
        if not isinstance(value, Mapping):
            return value  # flatten_batch names the problem
        subs = dict(layout["spaces"])
        return {k: _one_row(subs[k], v) if k in subs else v for k, v in value.items()}
    if kind == "Tuple":
        if not isinstance(value, (tuple, list)) or len(value) != len(layout["spaces"]):
            return value
        return tuple(_one_row(sub, v) for sub, v in zip(layout["spaces"], value))
    return np.asarray(value)[None]
