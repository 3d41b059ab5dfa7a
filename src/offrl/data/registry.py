"""Named datasets: a registry of makers and an on-disk cache.

``load_dataset(name_or_path)`` accepts an existing ``.hdf5``/``.h5``/``.npz`` file, or a registered
name, in which case the dataset is loaded from ``$OFFRL_HOME/datasets/NAME[-seedS].hdf5``
(default ``~/.offrl``), generated and atomically saved on first use.

The built-in datasets are made by the layer above (:data:`BUILTINS_PACKAGE`, ``offrl.datasets``:
generators, reference scores, built-in names). ``offrl.data`` imports nothing of it, nor of
``offrl.envs``: the first call that needs the registry imports that package by name and lets it
register its makers (:func:`builtins_package`), so ``import offrl.data`` alone resolves built-in
names and the import graph of offrl's packages has no cycle (``tests/test_layering.py``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Callable

from offrl.data.dataset import Dataset, DatasetError
from offrl.data.integrity import array_checksum, read_checksum

__all__ = ["list_datasets", "register_dataset", "dataset_path", "load_dataset", "offrl_home"]

#: ``maker(seed: int, size: int | None) -> Dataset``
Maker = Callable[..., Dataset]

_REGISTRY: dict[str, tuple[Maker, str]] = {}
_BUILTINS_LOADED = False
_FILE_SUFFIXES = (".hdf5", ".h5", ".npz")

#: The package that makes the built-in datasets; it provides ``register_builtin_datasets(add)``,
#: ``make_env(env_id, env_kwargs)`` and ``position_panel(dataset)``. Imported by name, on first use.
BUILTINS_PACKAGE = "offrl.datasets"


def builtins_package() -> ModuleType:
    """The dataset-generation layer above ``offrl.data`` (:data:`BUILTINS_PACKAGE`), imported on first use."""
    return importlib.import_module(BUILTINS_PACKAGE)


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return

    def add(name: str, maker: Maker, description: str) -> None:  # not register_dataset: it would recurse here
        _REGISTRY.setdefault(name, (maker, description))

    builtins_package().register_builtin_datasets(add)
    _BUILTINS_LOADED = True


def register_dataset(name: str, maker: Maker, description: str = "", *, overwrite: bool = False) -> None:
    """Register ``maker(seed, size) -> Dataset`` under ``name`` (lowercase, no path separators)."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.endswith(_FILE_SUFFIXES):
        raise DatasetError(
            f"dataset name {name!r} is invalid: use a short name such as 'pendulum-mixed' "
            "(no path separators, no file suffix)"
        )
    if not callable(maker):
        raise DatasetError(f"maker for dataset {name!r} must be callable (seed, size) -> Dataset, got {maker!r}")
    _ensure_builtins()
    if name in _REGISTRY and not overwrite:
        raise DatasetError(f"dataset {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = (maker, description)


def list_datasets() -> dict[str, str]:
    """``{name: description}`` of every registered dataset, sorted by name."""
    _ensure_builtins()
    return {name: _REGISTRY[name][1] for name in sorted(_REGISTRY)}


def offrl_home() -> Path:
    """The cache root: ``$OFFRL_HOME`` if set, else ``~/.offrl``."""
    env = os.environ.get("OFFRL_HOME")
    return Path(env).expanduser() if env else Path.home() / ".offrl"


def dataset_path(name: str, seed: int = 0) -> Path:
    """Cache file of a named dataset: ``OFFRL_HOME/datasets/NAME.hdf5`` (seed 0) or ``NAME-seedS.hdf5``."""
    seed = int(seed)
    stem = name if seed == 0 else f"{name}-seed{seed}"
    return offrl_home() / "datasets" / f"{stem}.hdf5"


def _load_file(path: Path) -> Dataset:
    return Dataset.load(path)


def load_dataset(name_or_path: str | os.PathLike, *, seed: int = 0, regenerate: bool = False) -> Dataset:
    """Load a dataset from a file path or a registered name.

    * an existing ``.hdf5``/``.h5``/``.npz`` file is loaded with ``Dataset.load`` (``seed`` and
      ``regenerate`` do not apply);
    * a registered name is read from :func:`dataset_path` ``(name, seed)``; it is generated with
      ``maker(seed=seed, size=None)`` and saved atomically when the file is missing or
      ``regenerate`` is true;
    * anything else raises :class:`DatasetError` listing the known names.
    """
    text = os.fspath(name_or_path)
    if text.startswith("minari:"):
        from offrl.data.minari_io import load_minari_name

        return load_minari_name(text)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() in _FILE_SUFFIXES:
        return _load_file(path)

    _ensure_builtins()
    if path.is_file() and text not in _REGISTRY:
        raise DatasetError(
            f"dataset file {path} has suffix {path.suffix!r}; expected one of {', '.join(_FILE_SUFFIXES)}. "
            "Fix: rename or convert the file"
        )
    if text not in _REGISTRY:
        looks_like_path = (
            isinstance(name_or_path, os.PathLike)
            or any(c in text for c in "/\\")
            or text.lower().endswith(_FILE_SUFFIXES)
        )
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        head = f"dataset file {path} does not exist" if looks_like_path else f"unknown dataset {text!r}"
        raise DatasetError(
            f"{head}: give a registered dataset name (known: {known}) or the path of an existing "
            f".hdf5/.h5/.npz file (the path must exist)"
        )

    cache = dataset_path(text, seed)
    if cache.exists() and not regenerate:
        try:
            dataset = _load_file(cache)
            stored = read_checksum(cache)
            if stored is not None and stored != array_checksum(dataset):
                raise DatasetError(f"its arrays do not match the checksum stored when it was written ({stored[:12]}…)")
            return dataset
        except Exception as exc:  # noqa: BLE001 - any failure to read the cache means a bad file
            raise DatasetError(
                f"cached dataset file {cache} for {text!r} (seed {seed}) is corrupt or unreadable "
                f"[{type(exc).__name__}: {exc}]. Fix: delete the file (rm '{cache}') and it will be "
                f"regenerated on the next load, or pass regenerate=True "
                f"(load_dataset({text!r}, seed={seed}, regenerate=True))"
            ) from exc

    maker, _ = _REGISTRY[text]
    dataset = maker(seed=int(seed), size=None)
    cache.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_hdf5(cache)
    return dataset


def make_dataset(name: str, *, seed: int = 0, size: int | None = None, out: str | os.PathLike | None = None) -> Path:
    """Generate a registered dataset and write it atomically; returns the file's path.

    Without ``out`` the file goes to the cache (:func:`dataset_path`), with ``-nSIZE`` added to its
    name when ``size`` is not the default, so later loads of the default size are not affected.
    """
    _ensure_builtins()
    if name not in _REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    if size is not None and size < 1:
        raise DatasetError(f"size must be a positive number of transitions, got {size}")
    path = Path(out).expanduser() if out is not None else dataset_path(name, seed)
    if out is None and size is not None:
        path = path.with_name(f"{path.stem}-n{size}{path.suffix}")
    maker, _ = _REGISTRY[name]
    dataset = maker(seed=int(seed), size=size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npz":
        return dataset.save_npz(path)
    return dataset.save_hdf5(path)
