"""The one checkpoint format: a single msgpack file, written atomically, verified on load, with no pickle.

Layout of ``checkpoint.msgpack`` (format version 2)::

    {"format": "offrl-checkpoint", "format_version": 2,
     "sha256": <hex digest of the bytes of "body">,
     "body":  <msgpack bytes of {
        "meta":  <JSON text: library version, algorithm, its config, transforms, dataset info, step, ...>,
        "state": <flax state dict of the agents (parameters, optimiser states), leading axis = seeds>,
        "keys":  <uint32 array: the training RNG key of every seed>}>}

Arrays are encoded by flax's msgpack extension (dtype, shape, raw bytes). Every load hashes the
body and refuses a file whose digest differs (:class:`CheckpointCorruptError`), so a flipped byte
or a truncated file never loads as other weights. Version 1 files (``meta``, ``state`` and ``keys``
at the top level, no digest) still load, unverified. Loading never executes code from the file.

The training loop writes with ``keep_previous=True``: the checkpoint being replaced, if it verifies,
is kept as ``checkpoint.prev.msgpack`` until the new one is written and verified, and a resumed run
(:func:`load_checkpoint_or_previous`) falls back to it when the latest file is damaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from flax import serialization

FORMAT = "offrl-checkpoint"
FORMAT_VERSION = 2
FILENAME = "checkpoint.msgpack"
PREVIOUS_FILENAME = "checkpoint.prev.msgpack"

_log = logging.getLogger("offrl")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message says why and what to do."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint file whose bytes are damaged: empty, truncated, or not matching its stored sha256."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes, before_replace: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` to ``path`` so that a reader sees either the old file or the new one, never a part.

    ``before_replace(tmp_path)``, if given, runs once the data is on disk under its temporary name
    and before it replaces ``path`` (to verify it, or to keep the old file); if it raises, ``path``
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def previous_path(path: str | os.PathLike) -> Path:
    """Where ``save_checkpoint(path, ..., keep_previous=True)`` keeps the checkpoint it replaced."""
    path = Path(path)
    return path.with_name(PREVIOUS_FILENAME if path.name == FILENAME else f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | os.PathLike, state_dict: Any, keys: np.ndarray, meta: dict, *,
                    keep_previous: bool = False) -> Path:
    """Serialise a state dict (``flax.serialization.to_state_dict`` of the agents) atomically, with its sha256.

    The written file is read back and verified before it replaces ``path``. ``keep_previous``: the
    checkpoint at ``path``, if it verifies, is first kept as :func:`previous_path` (a damaged one is
    not, so the last good previous checkpoint stays).
    """
    body = serialization.msgpack_serialize({
        "meta": json.dumps(meta, sort_keys=True),
        "state": state_dict,
        "keys": np.asarray(keys),
    })
    digest = hashlib.sha256(body).hexdigest()
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "sha256": digest, "body": body}
    path = Path(path)

    def verify_then_keep_previous(tmp: Path) -> None:
        if _verified_body(tmp, tmp.read_bytes()) != body:
            raise CheckpointCorruptError(f"checkpoint {path} read back differently than it was written; check the disk")
        if keep_previous and path.exists():
            try:
                _decode(path, path.read_bytes())
            except CheckpointError as exc:
                _log.warning("offrl: not keeping %s as the previous checkpoint: %s", path, exc)
                return
            _keep_copy(path, previous_path(path))

    atomic_write_bytes(path, serialization.msgpack_serialize(payload), before_replace=verify_then_keep_previous)
    return path


def _keep_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` an atomic copy of ``src`` (a hard link where the file system allows)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def _corrupt(path: Path, what: str) -> CheckpointCorruptError:
    prev = previous_path(path)
    fallback = f"`offrl train --resume` falls back to {prev.name} beside it; otherwise " if prev.exists() else ""
    return CheckpointCorruptError(f"checkpoint {path} is corrupt or truncated: {what}; {fallback}restore it from a copy or retrain the run")


def _decode(path: Path, raw: bytes) -> dict:
    """The verified payload of a checkpoint file: a dict holding ``meta``, ``state`` and ``keys``."""
    if not raw:
        raise _corrupt(path, "the file is empty (the run was killed while creating it?)")
    try:
        payload = serialization.msgpack_restore(raw)
    except Exception as exc:  # msgpack raises several unrelated types for damaged input
        raise _corrupt(path, f"it does not decode ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an offrl checkpoint (no '{FORMAT}' header)")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, newer than this offrl understands ({FORMAT_VERSION}); "
            "upgrade offrl"
        )
    if version >= 2:
        body = _verified_body(path, raw, payload)
        try:
            payload = serialization.msgpack_restore(body)
        except Exception as exc:
            raise _corrupt(path, f"its body does not decode ({type(exc).__name__}: {exc})") from None
    # version 1 (no digest) is read as it is; a missing entry still means damage
    if not isinstance(payload, dict) or not {"meta", "state", "keys"} <= set(payload):
        raise _corrupt(path, "entries 'meta', 'state' or 'keys' are missing")
    return payload


def _verified_body(path: Path, raw: bytes, payload: dict | None = None) -> bytes:
    """The body bytes of a version 2 file, after checking them against the stored sha256."""
    if payload is None:
        try:
            payload = serialization.msgpack_restore(raw)
        except Exception as exc:
            raise _corrupt(path, f"it does not decode ({type(exc).__name__}: {exc})") from None
    body, digest = (payload.get("body"), payload.get("sha256")) if isinstance(payload, dict) else (None, None)
    if not isinstance(body, bytes) or not isinstance(digest, str):
        raise _corrupt(path, "its body or sha256 entry is missing")
    if hashlib.sha256(body).hexdigest() != digest:
        raise _corrupt(path, "its contents do not match the sha256 stored in it (bytes changed after it was written)")
    return body


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, np.ndarray, dict]:
    """Read and verify a checkpoint; returns ``(state_dict, keys, meta)``.

    Raises :class:`CheckpointCorruptError` (a :class:`CheckpointError`, a ``ValueError``) for a
    damaged file, with a one-line message naming the file and the fix.
    """
    path = resolve_checkpoint_path(path)
    payload = _decode(path, path.read_bytes())
    return payload["state"], np.asarray(payload["keys"]), json.loads(payload["meta"])


def load_checkpoint_or_previous(path: str | os.PathLike, warn: bool = True) -> tuple[dict, np.ndarray, dict, Path]:
    """``load_checkpoint``, falling back to the previous checkpoint kept beside a damaged or missing one.

    Returns ``(state_dict, keys, meta, path_read)``; a fallback is logged as a warning on the
    ``offrl`` logger (unless ``warn=False``). When the previous checkpoint is unusable too, the
    latest file's error is raised.
    """
    path = Path(path)
    latest = path / FILENAME if path.is_dir() else path
    try:
        return (*load_checkpoint(latest), latest)
    except CheckpointError as exc:
        prev = previous_path(latest)
        if not prev.exists() or (latest.exists() and not isinstance(exc, CheckpointCorruptError)):
            raise
        try:
            result = load_checkpoint(prev)
        except CheckpointError:
            raise exc from None
        if warn:
            _log.warning("offrl: %s; resuming from the previous checkpoint %s (step %s) instead", exc, prev, result[2].get("step"))
        return (*result, prev)
