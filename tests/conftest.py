"""Shared test fixtures: small datasets and small algorithm configs."""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile

import numpy as np
import pytest

# One persistent XLA compilation cache per test run, shared by the pytest-xdist workers and the CLI
# subprocesses (they inherit the environment): many tests compile the same programs (the same
# algorithm and shapes in another test file, a `train` and its `--resume`), and the suite's time is
# mostly compile time. A fresh folder per run, removed at exit, so no test depends on an earlier run.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="offrl-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
    atexit.register(shutil.rmtree, _cache, True)
# Tests compile hundreds of small programs and run most of them for a few steps, so XLA's
# optimisation passes cost more than they save: without them the suite took 901 s instead of 1375 s
# on one core (529 tests, 2026-11-27), while the few long training tests ran up to 1.4x slower.
# The library itself, the demo and the benchmarks run fully optimised; OFFRL_TEST_OPTIMIZED=1 runs
# the tests that way too. Set before JAX is imported (workers and CLI subprocesses inherit it).
if os.environ.get("OFFRL_TEST_OPTIMIZED", "0") != "1":
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")



def make_dataset(n: int = 600, obs_dim: int = 3, act_dim: int = 2, episode_len: int = 50, seed: int = 0,
                 chained: bool = False, **info_kwargs):
    """A random dataset with fixed-length episodes ending in timeouts (one terminal in the middle).

    ``chained=True``: inside an episode ``next_observations[t] = observations[t+1]``, as recorded episodes
    are (sequence algorithms refuse data whose episodes do not chain)."""
    from offrl.data import Dataset, DatasetInfo

    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    next_obs = obs + 0.1 * rng.normal(size=(n, obs_dim)).astype(np.float32)
    low = np.asarray(info_kwargs.get("action_low") or [-1.0] * act_dim, np.float32)
    high = np.asarray(info_kwargs.get("action_high") or [1.0] * act_dim, np.float32)
    actions = rng.uniform(low, high, size=(n, act_dim)).astype(np.float32)
    rewards = (obs[:, 0] - actions[:, 0] ** 2).astype(np.float32)
    terminals = np.zeros(n, np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[episode_len - 1 :: episode_len] = 1
    timeouts[-1] = 1
    terminals[n // 2] = 1
    timeouts[n // 2] = 0
    if chained:
        inner = np.flatnonzero((terminals + timeouts)[:-1] == 0)
        next_obs[inner] = obs[inner + 1]
    info = DatasetInfo(name=info_kwargs.pop("name", "synthetic"), **info_kwargs)
    return Dataset.from_arrays(observations=obs, actions=actions, rewards=rewards, next_observations=next_obs,
                               terminals=terminals, timeouts=timeouts, info=info)


def make_discrete_dataset(n: int = 600, obs_dim: int = 3, num_actions: int = 3, episode_len: int = 50, seed: int = 0,
                          **info_kwargs):
    """Like `make_dataset`, with int actions in [0, num_actions) (``info.num_actions`` set)."""
    from offrl.data import Dataset, DatasetInfo

    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    next_obs = obs + 0.1 * rng.normal(size=(n, obs_dim)).astype(np.float32)
    actions = rng.integers(0, num_actions, size=n)
    rewards = (obs[:, 0] * (actions == 0) - 0.5 * (actions == num_actions - 1)).astype(np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[episode_len - 1 :: episode_len] = 1
    timeouts[-1] = 1
    terminals = np.zeros(n, np.float32)
    terminals[n // 2], timeouts[n // 2] = 1, 0
    info = DatasetInfo(name=info_kwargs.pop("name", "synthetic-discrete"), num_actions=num_actions, **info_kwargs)
    return Dataset.from_arrays(observations=obs, actions=actions, rewards=rewards, next_observations=next_obs,
                               terminals=terminals, timeouts=timeouts, info=info)


def make_trajectory_dataset(episodes: int = 20, length: int = 5, num_states: int = 3, num_actions: int = 2, seed: int = 0,
                            log_probs: bool = True, **info_kwargs):
    """Episodes of a small random MDP with one-hot observations, logged by the uniform policy: real trajectories
    (``next_observations[t] == observations[t + 1]`` inside an episode), cut by timeouts, with the exact
    ``behaviour_log_probs`` (log 1/K) unless ``log_probs=False``."""
    from offrl.data import Dataset, DatasetInfo

    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
    r = rng.normal(size=(num_states, num_actions))
    eye = np.eye(num_states, dtype=np.float32)
    states, actions, next_states, rewards = [], [], [], []
    for _ in range(episodes):
        s = rng.integers(num_states)
        for _ in range(length):
            a = rng.integers(num_actions)
            s2 = rng.choice(num_states, p=p[s, a])
            states.append(s), actions.append(a), next_states.append(s2), rewards.append(r[s, a] + 0.1 * rng.normal())
            s = s2
    n = len(states)
    timeouts = np.zeros(n, np.float32)
    timeouts[length - 1 :: length] = 1
    info = DatasetInfo(name=info_kwargs.pop("name", "trajectories"), num_actions=num_actions, **info_kwargs)
    return Dataset.from_arrays(observations=eye[states], actions=np.array(actions), rewards=np.array(rewards),
                               next_observations=eye[next_states], terminals=np.zeros(n), timeouts=timeouts, info=info,
                               behaviour_log_probs=np.full(n, -np.log(num_actions)) if log_probs else None)


def load_benchmark_script(name: str):
    """``benchmarks/NAME.py`` imported as a module (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"offrl_benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_config(algo, **overrides):
    """The algorithm's default config with tiny networks and batches, for fast tests."""
    fields = {f.name for f in dataclasses.fields(algo.config_cls)}
    small = {"hidden_dims": (32, 32), "batch_size": 32}
    # every width field (hidden_dims and component widths such as vae_hidden_dims) gets tiny networks
    small.update({f: (32, 32) for f in fields if f.endswith("_hidden_dims")})
    # model-based algorithms: small rollouts into a small buffer, a small ensemble
    small.update({"rollout_batch_size": 32, "buffer_size": 256, "rollout_every": 20, "dynamics_members": 3, "dynamics_elites": 2,
                  "dynamics_max_epochs": 10})
    # sequence models: a one-block transformer over short windows, warmed up within a test's few updates, without
    # dropout (its random bits cost a third of the compile time; tests/test_sequences.py trains dt with dropout)
    small.update({"embed_dim": 16, "num_layers": 1, "context_len": 4, "warmup_steps": 10, "max_timestep": 64,
                  "dropout": 0.0})
    # diffusion and flow policies: a few denoising/flow steps and candidate samples (their scans are unrolled in
    # export; tests/test_generative_algos.py trains them with their defaults)
    small.update({"diffusion_steps": 3, "sampling_steps": 2, "flow_steps": 3, "planning_horizon": 4})
    if "diffusion_steps" in fields:
        small["num_samples"] = 4
    values = {k: v for k, v in small.items() if k in fields}
    values.update(overrides)
    return algo.config_cls(**values)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs_near_the_map_limit():
    """After each test module: a worker runs hundreds of tests, each compiling programs that hold memory
    mappings; past ``vm.max_map_count`` the kernel ends the worker (offrl.compiled). ``fit`` checks before
    compiling; this also covers modules that compile only their own programs."""
    yield
    from offrl import compiled

    compiled.release_if_near_map_limit(compiled.MAP_FRACTION)  # read the count now, whatever fit skipped


@pytest.fixture
def dataset():
    return make_dataset()


@pytest.fixture
def offrl_home(tmp_path, monkeypatch):
    home = tmp_path / "offrl_home"
    monkeypatch.setenv("OFFRL_HOME", str(home))
    return home
