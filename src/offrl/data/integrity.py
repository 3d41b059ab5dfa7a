"""Storage integrity: a checksum of a dataset's arrays and a verifier for dataset files.

``array_checksum(dataset)`` is the sha256 of the six arrays of a :class:`~offrl.data.Dataset`
in a fixed order (``observations, actions, rewards, next_observations, terminals, timeouts``),
each preceded by its name, dtype and shape. It is computed on the dataset's canonical in-memory
form (C-ordered little-endian float32), so a file written by ``save_hdf5`` (flags stored as
booleans) or ``save_npz`` and loaded back gives the same checksum. ``DatasetInfo`` is not part of
it.

Writers store it under :data:`CHECKSUM_KEY` (an HDF5 file attribute, or an npz string array);
``verify(path)`` reloads the file, recomputes the checksum and raises ``DatasetError`` naming the
command that remakes the file when the file cannot be read or the checksum differs.

This module imports nothing from ``offrl.data`` at import time, so ``dataset.py`` may import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ARRAY_ORDER", "CHECKSUM_KEY", "array_checksum", "read_checksum", "remake_command",
           "verify"]

#: HDF5 attribute / npz key holding the checksum.
CHECKSUM_KEY = "offrl_sha256"
#: The arrays hashed, in this order.
ARRAY_ORDER = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
#: Arrays hashed after :data:`ARRAY_ORDER` only when the dataset holds them.
OPTIONAL_ARRAYS = ("behaviour_log_probs",)
_DOMAIN = b"offrl-dataset-arrays-v1\0"


def array_checksum(dataset: Any) -> str:
    """Hex sha256 of the arrays of ``dataset`` (a ``Dataset`` or a mapping name -> array).

    Every array is hashed in :data:`ARRAY_ORDER` as ``name|dtype|shape`` followed by its bytes
    (C order, little-endian), so a changed value, shape or dtype changes the checksum. The
    optional ``behaviour_log_probs`` array is hashed after them when present (a dataset without it
    keeps the checksum it had before the array existed).
    """
    if hasattr(dataset, "stored_arrays"):
        arrays = dataset.stored_arrays()
    else:
        arrays = dataset.arrays() if hasattr(dataset, "arrays") else dataset
    if not isinstance(arrays, Mapping):
        raise TypeError(f"array_checksum needs a Dataset or a mapping of arrays, got "
                        f"{type(dataset).__name__}")
    h = hashlib.sha256(_DOMAIN)
    for name in ARRAY_ORDER + tuple(k for k in OPTIONAL_ARRAYS if k in arrays):
        arr = np.asarray(arrays[name])
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}\0".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def read_checksum(path: str | os.PathLike) -> str | None:
    """The checksum stored in an HDF5/npz dataset file, or None when it holds none."""
    import h5py

    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        with h5py.File(path, "r") as h5:
            value = h5.attrs.get(CHECKSUM_KEY)
    elif head.startswith(b"PK\x03\x04"):
        with np.load(path, allow_pickle=False) as npz:
            value = npz[CHECKSUM_KEY][()] if CHECKSUM_KEY in npz.files else None
    else:
        raise ValueError("neither HDF5 nor npz")
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value)


def _name_and_seed(path: Path, info: Any) -> tuple[str | None, int]:
    """Dataset name and seed: from the file's info, else from a ``NAME[-seedS]`` file name."""
    match = re.fullmatch(r"(.+?)(?:-seed(\d+))?", path.stem)
    stem_name, stem_seed = (match.group(1), int(match.group(2) or 0)) if match else (None, 0)
    if info is None or not info.name:
        return stem_name, stem_seed
    seed = info.metadata.get("seed")
    if not isinstance(seed, int):
        seed = stem_seed if stem_name == info.name else 0
    return info.name, seed


def _q(value: Any) -> str:
    """A Python string literal in double quotes (reads well inside single-quoted shell)."""
    return json.dumps(str(value))


def remake_command(path: str | os.PathLike, info: Any = None) -> str:
    """A shell command that remakes the dataset file at ``path`` (best effort).

    Built-in (registered) datasets are regenerated from their name and seed; datasets exported
    from Minari are re-read from the Minari store; anything else needs its own writer.
    """
    from offrl.data.registry import dataset_path, list_datasets

    path = Path(path)
    name, seed = _name_and_seed(path, info)
    if name is not None and name in list_datasets():
        code = ("from offrl.data import load_dataset; "
                f"load_dataset({_q(name)}, seed={seed}, regenerate=True)")
        try:
            is_cache = path.resolve() == dataset_path(name, seed).resolve()
        except OSError:
            is_cache = False
        if not is_cache:
            code += f".save_hdf5({_q(path)})"
        return f"python -c {shlex.quote(code)}"
    meta = getattr(info, "metadata", None) or {}
    if meta.get("source") == "minari" and meta.get("minari_dataset_id"):
        code = ("from offrl.data.minari_io import from_minari; "
                f"from_minari({_q(meta['minari_dataset_id'])}).save_hdf5({_q(path)})")
        return f"python -c {shlex.quote(code)}"
    return (f"the script that wrote {path} (it is not a built-in dataset: see "
            "`offrl data list`), e.g. Dataset.from_arrays(...).save_hdf5(path)")


def verify(dataset_path: str | os.PathLike, *, require: bool = False) -> None:
    """Check a dataset file against its stored checksum; return None when it is intact.

    Raises ``DatasetError`` (with the command that remakes the file) when the file is missing or
    unreadable, when the recomputed checksum differs from the stored one, or, with
    ``require=True``, when the file stores no checksum (files written before checksums existed
    pass silently otherwise).
    """
    from offrl.data.dataset import Dataset, DatasetError, _info_from_attrs

    path = Path(dataset_path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: does not exist or is not a file. Fix: remake it with "
                           f"{remake_command(path)}")
    info = None
    try:
        stored = read_checksum(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); the file is "
                           f"truncated or corrupt. Fix: remake it with {remake_command(path)}"
                           ) from None
    try:
        dataset = Dataset.load(path)
        info = dataset.info
    except DatasetError as exc:
        try:  # the arrays may be damaged while the attributes still name the dataset
            import h5py

            with h5py.File(path, "r") as h5:
                info = _info_from_attrs(dict(h5.attrs), path)
        except Exception:  # noqa: BLE001 - best effort only
            info = None
        raise DatasetError(f"{exc} Remake it with {remake_command(path, info)}") from None
    if stored is None:
        if require:
            raise DatasetError(f"{path}: field '{CHECKSUM_KEY}': the file stores no checksum, so "
                               "it cannot be verified. Fix: rewrite it with save_hdf5/save_npz "
                               f"(which store one) or remake it with {remake_command(path, info)}")
        return None
    actual = array_checksum(dataset)
    if actual != stored:
        raise DatasetError(f"{path}: field 'arrays': checksum mismatch (stored sha256 "
                           f"{stored[:12]}..., computed {actual[:12]}...): the file was modified "
                           f"or corrupted after it was written. Fix: remake it with "
                           f"{remake_command(path, info)}")
    return None
