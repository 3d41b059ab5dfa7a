"""The caches of compiled programs, and their release before a process runs out of memory maps.

offrl keeps each jitted program it builds (an agent's init, a training chunk, the batched policy, an
online block) in a bounded cache, so repeated fits of one config compile once. On a CPU every
program XLA compiles holds its code in memory mappings of its own: one new config's fit adds about
900 of them (measured: 920 per IQL config, 2026-11-28), and Linux ends a process that asks for more
than ``vm.max_map_count`` mappings (65,530 by default) with a segmentation fault. A process that fits
many configs in a row (a sweep, a notebook, a test run) would get there after about 70 of them.

So before ``fit``, ``train_online`` or ``make_train_chunk`` builds programs, :func:`release_if_near_map_limit`
checks the process's mappings; past half the limit it empties these caches and JAX's own, and the
programs still needed compile again. Where the count cannot be read (not Linux), nothing is released.
"""

from __future__ import annotations

import functools
import inspect
import gc
import logging
from typing import Callable

__all__ = ["cached", "clear", "memory_maps", "map_limit", "release_if_near_map_limit", "MAP_FRACTION"]

#: Release compiled programs once the process holds this fraction of ``vm.max_map_count`` mappings.
MAP_FRACTION = 0.5

#: A check costs about 1.5 us per mapping (40 ms at 30,000): after one that finds the count well below the
#: threshold, the next checks are skipped, counting this many mappings per skipped call (a new config's
#: fit adds about 900), so the count cannot pass the threshold unseen.
_MAPS_PER_CALL = 2000

_CACHES: list = []
_log = logging.getLogger("offrl")
_skip = [0]  # checks left to skip


def cached(maxsize: int) -> Callable:
    """``functools.lru_cache(maxsize)``, registered so that :func:`clear` empties it. The key is the
    call's arguments bound to the signature, defaults filled in, so ``f(a, b)``, ``f(a, b, None)`` and
    ``f(a, b, members=None)`` share one entry (one compiled program)."""

    def wrap(fn):
        signature = inspect.signature(fn)
        cache = functools.lru_cache(maxsize=maxsize)(fn)
        _CACHES.append(cache)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return cache(*bound.args, **bound.kwargs)

        call.cache_info, call.cache_clear = cache.cache_info, cache.cache_clear
        return call

    return wrap


def clear() -> int:
    """Empty every registered cache and JAX's compilation caches; returns how many entries were dropped."""
    import jax

    dropped = sum(cache.cache_info().currsize for cache in _CACHES)
    for cache in _CACHES:
        cache.cache_clear()
    jax.clear_caches()
    gc.collect()  # jitted closures can sit in reference cycles: free their executables now
    return dropped


def memory_maps() -> int | None:
    """How many memory mappings this process holds (lines of ``/proc/self/maps``); None where unreadable."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def map_limit() -> int | None:
    """The kernel's per-process limit on memory mappings (``vm.max_map_count``); None where unreadable."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def release_if_near_map_limit(fraction: float | None = None) -> bool:
    """Call :func:`clear` when this process holds more than ``fraction`` (default :data:`MAP_FRACTION`)
    of its memory-map limit; returns whether it did. With ``fraction`` given, the count is always read;
    otherwise a check that found room for several more fits skips the next few (:data:`_MAPS_PER_CALL`)."""
    if fraction is None and _skip[0] > 0:
        _skip[0] -= 1
        return False
    used, limit = memory_maps(), map_limit()
    if used is None or limit is None:
        return False
    threshold = (MAP_FRACTION if fraction is None else fraction) * limit
    if used <= threshold:
        if fraction is None:
            _skip[0] = int((threshold - used) // _MAPS_PER_CALL)
        return False
    _skip[0] = 0
    dropped = clear()
    _log.warning("offrl: this process held %d memory mappings (the kernel's limit is %d): released %d cached "
                 "compiled programs and JAX's caches (now %s mappings); what is needed again compiles again",
                 used, limit, dropped, memory_maps())
    return True
