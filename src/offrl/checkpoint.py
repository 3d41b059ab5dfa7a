"""The one checkpoint format: a single msgpack file, written atomically, with no pickle.

Layout of ``checkpoint.msgpack``::

    {"format": "offrl-checkpoint", "format_version": 1,
     "meta":  <JSON text: library version, algorithm, its config, transforms, dataset info, step, ...>,
     "state": <flax state dict of the agents (parameters, optimiser states), leading axis = seeds>,
     "keys":  <uint32 array: the training RNG key of every seed>}

Arrays are encoded by flax's msgpack extension (dtype, shape, raw bytes). Loading never executes
code from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

FORMAT = "offrl-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.msgpack"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message says why and what to do."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees either the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, state_dict: Any, keys: np.ndarray, meta: dict) -> Path:
    """Serialise a state dict (``flax.serialization.to_state_dict`` of the agents) atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": json.dumps(meta, sort_keys=True),
        "state": state_dict,
        "keys": np.asarray(keys),
    }
    path = Path(path)
    atomic_write_bytes(path, serialization.msgpack_serialize(payload))
    return path


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """Accept a run folder or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: pass a run folder made by `offrl train` (it holds {FILENAME}) "
            f"or the path of a {FILENAME} file"
        )
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, np.ndarray, dict]:
    """Read a checkpoint; returns ``(state_dict, keys, meta)``."""
    path = resolve_checkpoint_path(path)
    raw = path.read_bytes()
    if not raw:
        raise CheckpointError(f"checkpoint {path} is empty (the run was killed while creating it?); delete it and retrain")
    try:
        payload = serialization.msgpack_restore(raw)
    except Exception as exc:  # msgpack raises several unrelated types for damaged input
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
            "restore it from a copy or retrain the run"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an offrl checkpoint (no '{FORMAT}' header)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload['format_version']}, newer than this offrl "
            f"understands ({FORMAT_VERSION}); upgrade offrl"
        )
    return payload["state"], np.asarray(payload["keys"]), json.loads(payload["meta"])
