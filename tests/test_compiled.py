"""offrl.compiled: cached compiled programs are released before the process runs out of memory maps
(each CPU program holds its own mappings; past ``vm.max_map_count`` the kernel ends the process)."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
from conftest import make_dataset

from offrl import compiled
from offrl.algos import iql
from offrl.train import _make_train_chunk, fit

pytestmark = pytest.mark.skipif(compiled.memory_maps() is None or compiled.map_limit() is None,
                                reason="needs /proc/self/maps and vm.max_map_count (Linux)")


def _fit(path, run_dir, hidden=16):
    config = iql.Config(hidden_dims=(hidden, hidden), batch_size=32)
    return fit(config, str(path), steps=40, seeds=1, chunk=20, eval_interval=None, eval_episodes=0,
               run_dir=run_dir, progress=False, plot=False)


def test_release_drops_the_cached_programs_and_their_mappings(tmp_path):
    path = tmp_path / "data.npz"
    make_dataset().save_npz(path)
    _fit(path, tmp_path / "a", hidden=17)
    assert _make_train_chunk.cache_info().currsize >= 1
    assert compiled.release_if_near_map_limit(fraction=1.0) is False  # far below the limit: nothing released
    assert _make_train_chunk.cache_info().currsize >= 1
    before = compiled.memory_maps()
    assert compiled.release_if_near_map_limit(fraction=0.0) is True
    assert all(cache.cache_info().currsize == 0 for cache in compiled._CACHES)
    assert compiled.memory_maps() < before - 100  # the programs' code mappings went with them


def test_fit_near_the_limit_releases_first_and_trains_the_same_agent(tmp_path, monkeypatch, caplog):
    path = tmp_path / "data.npz"
    make_dataset().save_npz(path)
    _fit(path, tmp_path / "other", hidden=19)  # another config's programs, cached
    plain = _fit(path, tmp_path / "plain")
    assert _make_train_chunk.cache_info().currsize >= 2
    monkeypatch.setattr(compiled, "MAP_FRACTION", 0.0)  # every process is "near" its limit
    monkeypatch.setattr(compiled, "_skip", [0])  # and it is checked at once
    with caplog.at_level(logging.WARNING, logger="offrl"):
        released = _fit(path, tmp_path / "released")
    assert "released" in caplog.text and "memory mappings" in caplog.text
    assert _make_train_chunk.cache_info().currsize == 1  # only this fit's program: the others were dropped
    for a, b in zip(jax.tree.leaves(jax.device_get(plain.states)), jax.tree.leaves(jax.device_get(released.states))):
        np.testing.assert_array_equal(a, b)  # compiled again, the same agent bit for bit


def test_checks_skip_only_as_many_calls_as_the_room_left_allows(monkeypatch):
    """Limit 10,000, threshold 5,000: a count of 1,000 leaves room for 2 calls of 2,000 mappings, so the
    next 2 calls read nothing and the third reads again; a count past the threshold releases."""
    reads, released = [], []
    counts = iter([1000, 4000, 6000, 100])
    monkeypatch.setattr(compiled, "memory_maps", lambda: reads.append(1) or next(counts))
    monkeypatch.setattr(compiled, "map_limit", lambda: 10_000)
    monkeypatch.setattr(compiled, "clear", lambda: released.append(1) or 0)
    monkeypatch.setattr(compiled, "MAP_FRACTION", 0.5)
    monkeypatch.setattr(compiled, "_skip", [0])
    assert compiled.release_if_near_map_limit() is False and len(reads) == 1  # 1,000: skip the next 2
    assert compiled.release_if_near_map_limit() is False and compiled.release_if_near_map_limit() is False
    assert len(reads) == 1
    assert compiled.release_if_near_map_limit() is False and len(reads) == 2  # 4,000: no room for a skip
    assert compiled._skip == [0]
    assert compiled.release_if_near_map_limit() is True and released == [1]  # 6,000 > 5,000: released
    assert len(reads) == 4  # 6,000, then the count after releasing (100) for the warning
