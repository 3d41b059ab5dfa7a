"""The one training loop.

``fit`` runs ``chunk`` updates per jit call with ``lax.scan``: batches are drawn on the device from
a dataset held on the device, metrics are averaged on the device and fetched once per chunk, and
``seeds=N`` trains N independent agents in one vmapped call. Between chunks the host only logs,
evaluates and checkpoints, at the intervals asked for.

Seeds: agent ``i`` of a run with ``seed=s`` uses ``PRNGKey(s + i)``, so ``seeds=4, seed=0`` trains
the same four agents as four runs with ``seed=0..3``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from offrl import __version__
from offrl.algos import DataSpec, algo_for_config, get_algo
from offrl.algos.registry import Algo, check_action_kind
from offrl.checkpoint import FILENAME, CheckpointError, load_checkpoint_or_previous, save_checkpoint
from offrl.compiled import cached, release_if_near_map_limit
from offrl.config import Checked, ConfigError, choice, flag, integer
from offrl.data import Dataset, Transforms, fit_transforms, to_device
from offrl.data.transforms import REWARD_SCALINGS
from offrl.logger import RunLogger, plot_run, read_jsonl
from offrl.progress import Progress
from offrl.population import (Population, canonical_structure, check_members, check_traceable, member_rows, recording,
                              refuse_host_reads, traced_config, with_member_statics, write_member_rows)


# ----------------------------------------------------------------------------- configs as JSON


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(config_cls: type, values: dict) -> Any:
    """Rebuild a config dataclass from JSON, turning lists back into tuples where the field is a tuple."""
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for f in dataclasses.fields(config_cls):
        if f.name not in values:
            continue
        value = values[f.name]
        hint = hints.get(f.name)  # tuple[...] or Optional[tuple[...]]
        if isinstance(value, list) and any(typing.get_origin(h) is tuple for h in (hint, *typing.get_args(hint))):
            value = tuple(value)
        kwargs[f.name] = value
    return config_cls(**kwargs)


# ----------------------------------------------------------------------------- compiled pieces


#: Init runs once per agent: on a CPU, XLA's backend optimisations only cost compile time there
#: (an IQL init compiles in 2.4 s instead of 6.0 s on one core).
_CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@cached(maxsize=64)
def _compiled_init(algo: Algo, config: Any, spec: DataSpec, total_steps: int):
    """One agent's ``init``, jitted once per (algo, config, spec, total_steps)."""
    options = _CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(lambda k: algo.init(config, spec, k, total_steps), compiler_options=options)


def init_agents(algo: Algo, config: Any, spec: DataSpec, seed: int, seeds: int, total_steps: int, population=None):
    """Initialise ``seeds`` agents (leading axis) and their training keys; with a ``population``
    (:class:`offrl.population.Population`), ``population.size * seeds`` agents, member-major.

    Each agent comes from the same compiled one-agent program, so any number of seeds compiles it
    once, agent i is the agent a one-seed run with seed ``seed + i`` starts from, and every call
    returns states of one pytree structure: the optimisers inside a ``TrainState`` are static
    pytree metadata, and a new trace would make new ones, which the compiled train chunks would
    take for a new input type and compile again.
    """
    check_action_kind(algo, spec)
    keys = jax.vmap(lambda i: jax.random.split(jax.random.PRNGKey(seed + i)))(jnp.arange(seeds))
    init_keys, train_keys = keys[:, 0], keys[:, 1]
    if population is not None:
        return _init_population(algo, config, spec, init_keys, train_keys, total_steps, population)
    init = _compiled_init(algo, config, spec, total_steps)
    agents = [init(k) for k in init_keys]
    states = jax.tree.map(lambda *xs: jnp.stack(xs), *agents)
    return states, train_keys


@cached(maxsize=16)
def _compiled_member_init(algo: Algo, config: Any, spec: DataSpec, total_steps: int, names: tuple):
    """One agent's ``init`` with the population's fields traced: (key, values) -> the state's arrays (one compile)."""
    options = _CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(lambda k, values: jax.tree.leaves(algo.init(traced_config(config, values), spec, k, total_steps)),
                   compiler_options=options)


@cached(maxsize=16)
def _canonical_structure(algo: Algo, config: Any, spec: DataSpec, total_steps: int):
    """One structure per (algo, config, spec, total_steps): a resumed or repeated population fit hands the
    compiled chunks states of the type they were compiled for (a new structure would compile them again)."""
    return canonical_structure(algo, config, spec, total_steps)


def _init_population(algo: Algo, config: Any, spec: DataSpec, init_keys, train_keys, total_steps: int, population):
    """Every member's agents from one compiled init; the states take the canonical static parts (see offrl.population)."""
    seeds = init_keys.shape[0]
    init = _compiled_member_init(algo, config, spec, total_steps, population.names)
    values = population.agent_values(type(config), seeds)
    agents = [init(init_keys[a % seeds], {n: v[a] for n, v in values.items()}) for a in range(population.size * seeds)]
    structure = _canonical_structure(algo, config, spec, total_steps)
    states = structure.unflatten([jnp.stack(xs) for xs in zip(*agents)])
    return states, jnp.tile(train_keys, (population.size, 1))


@dataclass(frozen=True)
class Members:
    """What a population's compiled programs need besides the config: the varied fields, and the arguments
    of the ``init`` that rebuilds each member's optimisers and modules inside the trace."""

    names: tuple
    spec: DataSpec
    total_steps: int


SEED_STRATEGIES = ("auto", "vmap", "map")


def resolve_seed_strategy(strategy: str) -> str:
    """``auto``: ``vmap`` on accelerators; ``map`` (one seed after another inside the same compiled
    call) on CPU, where vmapped seeds measured 0.74-0.82x the throughput of one seed (their parameters
    no longer fit in cache) and mapped seeds 1.0x (benchmarks/results/speed-cpu-2026-11-26.md).
    With several local devices (on a CPU: ``JAX_NUM_CPU_DEVICES=N``), ``map`` spreads the seeds over
    them (see :func:`seed_devices`), so N cores train N seeds at once."""
    if strategy not in SEED_STRATEGIES:
        raise ValueError(f"seed_strategy must be one of {', '.join(SEED_STRATEGIES)}; got {strategy!r}")
    if strategy == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    return strategy


def seed_devices(seeds: int, devices) -> list:
    """The device of each seed under ``map``: seed i on device i mod len(devices)."""
    return [devices[i % len(devices)] for i in range(seeds)]


@dataclass(frozen=True)
class DeviceReplicas:
    """The device dataset once per local device (``replicate_data``): ``map`` trains seed i on
    ``devices[i mod n]`` from ``copies[i mod n]``; states, keys and metrics return to ``devices[0]``."""

    copies: tuple
    devices: tuple


def replicate_data(data) -> Any:
    """``data`` unchanged on one device; a :class:`DeviceReplicas` holding a copy per local device otherwise."""
    devices = tuple(jax.local_devices())
    if len(devices) == 1:
        return data
    return DeviceReplicas(tuple(jax.device_put(data, d) for d in devices), devices)


def make_train_chunk(algo: Algo, config: Any, num_updates: int, seeds: int, strategy: str = "vmap",
                     members: Optional[Members] = None):
    """See :func:`_make_train_chunk`; one seed runs the same program whatever the strategy (one cache entry).
    Cached programs are released first when the process nears its memory-map limit (:mod:`offrl.compiled`)."""
    release_if_near_map_limit()
    return _make_train_chunk(algo, config, num_updates, seeds, strategy if seeds > 1 else "single", members)


@cached(maxsize=128)  # configs are frozen dataclasses: repeated fits reuse the compiled code
def _make_train_chunk(algo: Algo, config: Any, num_updates: int, seeds: int, strategy: str, members: Optional[Members] = None):
    """A ``(states, keys, data[, values]) -> (states, keys, metrics)`` doing ``num_updates`` updates per seed
    (jitted; under ``map``, a loop over the seeds calling the jitted one-seed program).

    Seeds run batched with ``vmap`` or one after another (``map``: the one-seed program called per
    seed, so it compiles once whatever the number of seeds); both give each seed the same
    computation as a run of that seed alone. With ``members`` (a population), ``seeds`` counts every
    agent and ``values`` holds each agent's value of every varied field: agent i trains with
    ``dataclasses.replace(config, **values[i])`` (traced) and its own optimisers (:mod:`offrl.population`).
    """

    def one_seed(state, key, data, values=None):
        cfg, canonical = config, None
        if members is not None:
            cfg = traced_config(config, values)
            state, canonical = with_member_statics(algo, cfg, members.spec, members.total_steps, state)
        key, sub = jax.random.split(key)

        def body(state, step_key):
            batch_key, update_key = jax.random.split(step_key)
            batch = algo.make_batch(cfg, data, batch_key)
            return algo.update(cfg, state, batch, update_key)

        step_keys = jax.random.split(sub, num_updates)
        if algo.rollout is None:
            state, metrics = jax.lax.scan(body, state, step_keys)
        else:
            state, metrics = _blocks_with_rollouts(algo, cfg, state, data, sub, step_keys, body)
        # NaN marks "not computed this step" (e.g. delayed actor updates): skip it in the average.
        metrics = jax.tree.map(lambda m: jnp.nanmean(m.astype(jnp.float32), axis=0), metrics)
        if canonical is not None:
            state = canonical.unflatten(jax.tree.leaves(state))
        return state, key, metrics

    if seeds == 1:  # no vmap: one seed runs exactly the unbatched program

        def run(states, keys, data, values=None):
            squeeze = lambda t: jax.tree.map(lambda x: x[0], t)
            state, key, metrics = one_seed(squeeze(states), keys[0], data, squeeze(values))
            expand = lambda t: jax.tree.map(lambda x: x[None], t)
            return expand(state), key[None], expand(metrics)

    elif strategy == "map":  # the one-seed program, called once per seed: no second compile, same bits
        single = _make_train_chunk(algo, config, num_updates, 1, "single", members)
        part = lambda t, i: jax.tree.map(lambda x: x[i : i + 1], t)

        def mapped(states, keys, data, values=None):
            if not isinstance(data, DeviceReplicas):
                outs = [single(part(states, i), keys[i : i + 1], data, part(values, i)) for i in range(seeds)]
                return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)
            # dispatch is asynchronous and each device runs its queue in order: every seed's inputs are
            # sliced before any chunk is queued, so seeds on different devices train at the same time
            parts = [(part(states, i), keys[i : i + 1], part(values, i)) for i in range(seeds)]
            devices = seed_devices(seeds, data.devices)
            outs = [single(*jax.device_put(p[:2], device), data.copies[data.devices.index(device)], jax.device_put(p[2], device))
                    for p, device in zip(parts, devices)]
            outs = jax.device_put(outs, data.devices[0])
            return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)

        return mapped
    else:
        batched = jax.vmap(one_seed, in_axes=(0, 0, None, 0))

        def run(states, keys, data, values=None):
            return batched(states, keys, data, values)
    return jax.jit(run, donate_argnums=(0,))


def _blocks_with_rollouts(algo: Algo, config: Any, state, data, key, step_keys, body):
    """The updates of a model-based algorithm: an outer scan over blocks of b = gcd(K, n) updates, each
    block starting with ``algo.rollout`` when ``state.step`` is a multiple of K = ``rollout_every(config)``
    (a ``lax.cond`` once per block, not per update), then an inner scan of the block's updates on the
    same step keys as a model-free chunk. Rollout metrics are NaN in blocks without a rollout."""
    import math

    every, n = int(algo.rollout_every(config)), step_keys.shape[0]
    if every < 1:
        raise ValueError(f"{algo.name}: rollouts every {every} updates; it must be >= 1")
    block = math.gcd(every, n)
    rollout_keys = jax.random.split(jax.random.fold_in(key, 1), n // block)
    out_shape = jax.eval_shape(lambda s, k: algo.rollout(config, s, data, k)[1], state, rollout_keys[0])
    skipped = lambda s, k: (s, jax.tree.map(lambda m: jnp.full(m.shape, jnp.nan, m.dtype), out_shape))

    def one_block(state, xs):
        keys, rollout_key = xs
        state, r_metrics = jax.lax.cond(state.step % every == 0, lambda s, k: algo.rollout(config, s, data, k), skipped,
                                        state, rollout_key)
        state, metrics = jax.lax.scan(body, state, keys)
        return state, (metrics, r_metrics)

    shaped = step_keys.reshape((n // block, block) + step_keys.shape[1:])
    state, (metrics, r_metrics) = jax.lax.scan(one_block, state, (shaped, rollout_keys))
    metrics = jax.tree.map(lambda m: m.reshape((n,) + m.shape[2:]), metrics)
    return state, {**metrics, **r_metrics}


def device_data(algo: Algo, config: Any, dataset: Dataset, transforms: Transforms):
    """The dataset on the device as the algorithm trains on it: ``transforms`` applied, plus the
    algorithm's own per-transition arrays (``device_extras``, e.g. AWR's Monte-Carlo returns).
    ``dataset`` is the one the algorithm sees (after its ``prepare_dataset``, if it has one)."""
    arrays = transforms.apply(dataset)
    extras = algo.device_extras(config, arrays, dataset) if algo.device_extras is not None else None
    data = to_device(arrays, dataset, extras)
    if algo.device_model is not None:  # e.g. a dynamics ensemble: data on the device, never trained
        check_action_kind(algo, DataSpec.from_dataset(dataset))  # before a model is trained for the wrong data
        data = data.replace(model=algo.device_model(config, dataset, transforms))
    return data


def _member_call(algo: Algo, config: Any, members: Optional[Members], fn):
    """``fn(config, state, *args)`` for one agent; with ``members``, the agent's traced config and static parts."""

    def one(state, values, *args):
        if members is None:
            return fn(config, state, *args)
        cfg = traced_config(config, values)
        state, _ = with_member_statics(algo, cfg, members.spec, members.total_steps, state)
        return fn(cfg, state, *args)

    return one


@cached(maxsize=64)  # one compile per (algorithm, config), however many fits or evaluations use it
def _batched_act(algo: Algo, config: Any, members: Optional[Members] = None):
    """Jitted deterministic actions of every seed: (states, normalised obs [seeds, envs, obs_dim]) -> unit actions."""
    one = _member_call(algo, config, members, lambda c, s, o: algo.act(c, s, o, jax.random.PRNGKey(0), True))
    return jax.jit(lambda states, obs, values=None: jax.vmap(one)(states, values, obs))


@cached(maxsize=64)
def _batched_start_values(algo: Algo, config: Any, members: Optional[Members] = None):
    """Jitted Q(s, pi(s)) of every seed's critic at normalised observations [seeds, envs, obs_dim]."""

    def q_of_policy(c, state, o):
        return algo.q_value(c, state, o, algo.act(c, state, o, jax.random.PRNGKey(0), True))

    one = _member_call(algo, config, members, q_of_policy)
    return jax.jit(lambda states, obs, values=None: jax.vmap(one)(states, values, obs))


def _normalised(transforms: Transforms, observations) -> jax.Array:
    return jnp.asarray(transforms.normalize_obs(np.asarray(observations, np.float32)), jnp.float32)


@cached(maxsize=64)
def _batched_act_carry(algo: Algo, config: Any):
    """Jitted deterministic carried actions of every seed: (states, carries, obs, rewards, starts) [seeds, envs, ...]."""

    def one(state, carry, obs, rewards, starts):
        return algo.act_carry(config, state, carry, obs, rewards, starts, jax.random.PRNGKey(0), True)

    return jax.jit(jax.vmap(one))


@cached(maxsize=64)
def _batched_init_carry(algo: Algo, config: Any, spec: DataSpec):
    """Jitted empty histories of every seed's envs: targets [seeds, envs] -> carries."""
    return jax.jit(jax.vmap(lambda targets: algo.init_carry(config, spec, targets)))


def unit_target(transforms: Transforms, target_return: float) -> float:
    """A requested return in env reward units -> the training reward units (``reward * scale``; a shifted
    reward has no return-to-go equivalent without the episode's length, so it is refused)."""
    if transforms.reward_shift != 0.0:
        raise ConfigError(f"a return-conditioned policy needs rewards scaled without a shift (this run's rewards are "
                          f"r * {transforms.reward_scale:g} + {transforms.reward_shift:g}); Fix: train it with "
                          "--reward-scaling none or iql_locomotion")
    return float(target_return) * transforms.reward_scale


class CarriedPolicy:
    """The batched deterministic policy of a stateful algorithm for `offrl.evaluate.evaluate(..., stateful=True)`:
    ``(states, obs [seeds, envs, obs_dim], rewards [seeds, envs], starts [seeds, envs]) -> actions`` in env units,
    each (seed, env) carrying its own history on the device; ``target_return`` (env units) starts every episode."""

    stateful = True

    def __init__(self, algo: Algo, config: Any, transforms: Transforms, spec: DataSpec, target_return: float):
        self.algo, self.config, self.transforms, self.spec = algo, config, transforms, spec
        self.target = unit_target(transforms, target_return)
        self._step = _batched_act_carry(algo, config)
        self._carry, self._shape = None, None

    def __call__(self, states, observations, rewards, starts):
        obs = _normalised(self.transforms, observations)
        starts = np.asarray(starts, bool)
        if self._shape != obs.shape[:2]:
            if not starts.all():
                raise ValueError("a carried policy's first call must start every episode (starts all True)")
            self._carry = _batched_init_carry(self.algo, self.config, self.spec)(jnp.full(obs.shape[:2], self.target, jnp.float32))
            self._shape = obs.shape[:2]
        scaled = jnp.asarray(self.transforms.scale_rewards(np.asarray(rewards, np.float32)), jnp.float32)
        actions, self._carry = self._step(states, self._carry, obs, scaled, jnp.asarray(starts))
        return self.transforms.action_from_unit(np.asarray(actions))


def make_policy(algo: Algo, config: Any, transforms: Transforms, spec: DataSpec | None = None,
                target_return: float | None = None, members: Optional[Members] = None, values=None):
    """Batched deterministic policy for evaluation: obs (seeds, envs, obs_dim) in env units -> actions in env units.
    A stateful algorithm gets a `CarriedPolicy` (``spec`` and ``target_return`` needed); a population passes its
    ``members`` and each agent's ``values`` (see :func:`_make_train_chunk`)."""
    if algo.stateful:
        return CarriedPolicy(algo, config, transforms, spec, 0.0 if target_return is None else target_return)
    act = _batched_act(algo, config, members)
    return lambda states, observations: transforms.action_from_unit(
        np.asarray(act(states, _normalised(transforms, observations), values)))


def make_start_values(algo: Algo, config: Any, transforms: Transforms, members: Optional[Members] = None, values=None):
    """Q(s0, pi(s0)) of every seed's critic at observations (seeds, envs, obs_dim) in env units, or None.

    The over-estimation diagnostic: compared with the discounted return the policy then obtains
    (in the same reward units: after the algorithm's reward scaling).
    """
    if algo.q_value is None:
        return None
    q = _batched_start_values(algo, config, members)
    return lambda states, observations: np.asarray(q(states, _normalised(transforms, observations), values), np.float64)


def default_target_return(config: Any, meta: dict) -> float | None:
    """The return a return-conditioned policy is asked for unless told otherwise: the config's ``target_return``,
    else the highest episode return of the training data (``meta["episode_returns"]``, env units); None otherwise."""
    if "episode_returns" not in meta:
        return None
    target = getattr(config, "target_return", None)
    return float(target) if target is not None else float(meta["episode_returns"]["max"])


# ----------------------------------------------------------------------------- the loop


@dataclass
class FitResult:
    """What ``fit`` returns: the run folder, the trained agents (leading axis = seeds) and the last evaluation."""

    run_dir: Path
    states: Any
    transforms: Transforms
    step: int
    final_eval: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    population: Optional[Population] = None
    """The members when the run trained a population (``states``' leading axis is then members x seeds)."""
    members: list[dict] = field(default_factory=list)
    """One row per population member (also in ``population.jsonl``/``.csv``)."""


class TrainingDivergedError(FloatingPointError):
    """An agent's parameters or optimiser state became NaN or Inf during training."""


@jax.jit
def _finite_per_seed(states) -> jax.Array:
    """(seeds,) bool: every float leaf of seed i's state is finite."""
    leaves = [x for x in jax.tree.leaves(states) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.stack([jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in leaves]).all(axis=0)


@dataclass(frozen=True)
class LoopSettings(Checked):
    """The options of :func:`fit` besides the algorithm's config and the data, checked before anything loads or compiles."""

    _label = "fit"  # messages read "fit.steps = 0 is out of range: must be an int >= 1"

    steps: int = integer(100_000, ge=1)
    """Gradient updates per seed."""
    seed: int = integer(0, ge=0)
    """Seed of the first agent; agent i uses seed + i."""
    seeds: int = integer(1, ge=1)
    """Independent agents trained together."""
    chunk: int = integer(1000, ge=1)
    """Updates per compiled call."""
    eval_interval: Optional[int] = integer(None, ge=1, optional=True)
    """Evaluate every this many updates (None: only at the end)."""
    eval_episodes: int = integer(10, ge=0)
    """Evaluation episodes per seed (0: no evaluation)."""
    checkpoint_interval: Optional[int] = integer(None, ge=1, optional=True)
    """Checkpoint every this many updates (None: a tenth of the run)."""
    normalize_observations: Optional[bool] = flag(None, optional=True)
    """Normalise observations (None: the algorithm's setting)."""
    reward_scaling: Optional[str] = choice(None, REWARD_SCALINGS, optional=True)
    """Reward transform (None: the algorithm's setting)."""
    seed_strategy: str = choice("auto", SEED_STRATEGIES)
    """How seeds share a compiled call."""


def _check_finite(states, step: int, run_dir: Path, algo_name: str, population=None, seeds: int = 1) -> None:
    finite = np.asarray(_finite_per_seed(states))
    bad = np.flatnonzero(~finite)
    if bad.size:
        where = f"seed index {bad.tolist()} (of {finite.size})"
        if population is not None:
            where = "population member(s) " + "; ".join(sorted({population.label(int(a) // seeds) for a in bad}))
        raise TrainingDivergedError(
            f"training diverged: the {algo_name} state of {where} holds NaN or Inf after "
            f"update {step}; no checkpoint was written from it (the last one in {run_dir}, if any, is finite). "
            "Fix: lower the learning rates (--algo.*-lr), check the reward scale (--reward-scaling) and the "
            "algorithm's regularisation weights, then train again.")


def _default_run_dir(algo_name: str, dataset: Dataset) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = (dataset.info.name or "dataset").replace("/", "_")
    return Path(os.environ.get("OFFRL_RUNS", "runs")) / f"{algo_name}-{name}-{stamp}"


def _summarise_eval(results: list[dict], step: int) -> dict:
    returns = np.array([r["return_mean"] for r in results])
    row = {"step": step, "return_mean": float(returns.mean()), "return_std": float(returns.std())}
    if results and results[0].get("normalized_score") is not None:
        scores = np.array([r["normalized_score"] for r in results])
        row.update(normalized_score=float(scores.mean()), normalized_score_std=float(scores.std()))
        row["per_seed_scores"] = [float(s) for s in scores]
    if results and results[0].get("success_rate") is not None:
        row["success_rate"] = float(np.mean([r["success_rate"] for r in results]))
        steps = [t for r in results for t in r.get("success_steps", []) if t is not None]
        row["success_step_mean"] = float(np.mean(steps)) if steps else None  # time to the goal, over the successes
    row["per_seed_returns"] = [float(r) for r in returns]
    return row


def fit(
    algo_config: Any,
    dataset: Dataset | str | os.PathLike,
    *,
    steps: int = 100_000,
    seed: int = 0,
    seeds: int = 1,
    chunk: int = 1000,
    eval_interval: int | None = None,
    eval_episodes: int = 10,
    checkpoint_interval: int | None = None,
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    normalize_observations: bool | None = None,
    reward_scaling: str | None = None,
    tensorboard: bool = False,
    progress: bool = True,
    evaluate_at_end: bool = True,
    plot: bool = True,
    seed_strategy: str = "auto",
    population: Population | dict | None = None,
    on_eval: Any = None,
) -> FitResult:
    """Train ``seeds`` agents of the algorithm whose ``Config`` is ``algo_config`` on ``dataset``.

    ``dataset`` is a :class:`Dataset`, a built-in name or a file path. ``chunk`` updates run per
    compiled call; evaluation (``eval_episodes`` episodes per seed, when the dataset names an env)
    and checkpoints happen at the first chunk boundary at or after each multiple of their interval
    (``None``: evaluate only at the end, checkpoint every ``max(steps // 10, chunk)`` updates).
    ``seed_strategy`` chooses how seeds share a compiled call (see :func:`resolve_seed_strategy`).
    ``resume=RUN_DIR`` continues a killed run from its last checkpoint with its stored settings; it
    ends with the same parameters as an uninterrupted run. Each checkpoint keeps the one it replaces
    as ``checkpoint.prev.msgpack``; a resume whose latest checkpoint is damaged continues from that one.

    ``population`` (a :class:`offrl.population.Population`, or ``{"beta": [1, 3]}``: aligned member values)
    trains ``seeds`` agents of each member config in the same compiled calls; the run folder then also
    holds ``population.jsonl``/``.csv`` with one row per member. ``on_eval(row)`` is called after each
    evaluation (a row of ``eval.jsonl``; with a population its ``per_member_*`` lists).
    """
    from offrl.data import load_dataset

    release_if_near_map_limit()  # before this fit compiles anything (offrl.compiled)

    meta_prev = None
    if resume is not None:
        # a damaged latest checkpoint falls back to the previous one kept beside it (with a warning)
        state_dict, keys_np, meta_prev, read = load_checkpoint_or_previous(resume)
        algo = get_algo(meta_prev["algo"])
        algo_config = config_from_dict(algo.config_cls, meta_prev["algo_config"])
        run_dir = read.parent
        loop = meta_prev["loop"]
        steps, seed, seeds, chunk = loop["steps"], loop["seed"], loop["seeds"], loop["chunk"]
        eval_interval, eval_episodes, checkpoint_interval = loop["eval_interval"], loop["eval_episodes"], loop["checkpoint_interval"]
        seed_strategy = loop.get("seed_strategy", seed_strategy)  # same program as before the kill
        population = Population.from_dict(meta_prev["population"]) if meta_prev.get("population") else None
        if not isinstance(dataset, Dataset):
            dataset = meta_prev["dataset_source"]
    else:
        algo = algo_for_config(algo_config)
    LoopSettings(steps=steps, seed=seed, seeds=seeds, chunk=chunk, eval_interval=eval_interval, eval_episodes=eval_episodes,
                 checkpoint_interval=checkpoint_interval, normalize_observations=normalize_observations,
                 reward_scaling=reward_scaling, seed_strategy=seed_strategy)  # ConfigError on a value out of range
    strategy = resolve_seed_strategy(seed_strategy)
    if isinstance(population, dict):
        population = Population.of(algo.config_cls, population)
    host_reads = None
    if population is not None:
        if algo.stateful:
            raise ConfigError(f"{algo.name} is a sequence policy: populations (--grid) train stateless algorithms only. "
                              "Fix: run one value per process, e.g. with `offrl sweep`")
        check_members(algo_config, population)  # every member's config builds, before any data loads
        algo_config = population.member_config(algo_config, 0)  # the run's config: member 0's values
        host_config, host_reads = recording(algo_config)
    agents = seeds * (population.size if population is not None else 1)

    dataset_source = str(dataset) if not isinstance(dataset, Dataset) else (dataset.info.name or "<in-memory>")
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    check_action_kind(algo, DataSpec.from_dataset(dataset))  # before anything is put on the device or compiled

    if algo.prepare_dataset is not None:
        dataset = algo.prepare_dataset(algo_config if population is None else host_config, dataset)
    if meta_prev is not None:
        transforms = Transforms.from_dict(meta_prev["transforms"])
    else:
        transforms = fit_transforms(
            dataset,
            normalize_observations=algo.normalize_observations if normalize_observations is None else normalize_observations,
            reward_scaling=algo.reward_scaling if reward_scaling is None else reward_scaling,
        )
    data = device_data(algo, algo_config if population is None else host_config, dataset, transforms)
    spec = DataSpec.from_dataset(dataset)
    members = values = None
    if population is not None:  # refuse a field read on the host or one that cannot be traced, before compiling
        refuse_host_reads(algo, algo_config, population, host_reads)
        check_traceable(algo, algo_config, spec, steps, population, lambda v: _one_update(algo, algo_config, spec, steps, data, v))
        members = Members(population.names, spec, steps)
        values = {k: jnp.asarray(v) for k, v in population.agent_values(algo.config_cls, seeds).items()}
    if strategy == "map" and agents > 1:
        data = replicate_data(data)  # several local devices: the seeds train on them at once

    states, train_keys = init_agents(algo, algo_config, spec, seed, seeds, steps, population)
    start_step = 0
    if meta_prev is not None:
        if DataSpec(**meta_prev["spec"]) != spec:
            raise CheckpointError(f"dataset shapes {dataclasses.asdict(spec)} differ from the checkpoint's {meta_prev['spec']}")
        states = serialization.from_state_dict(states, state_dict)
        train_keys = jnp.asarray(keys_np)
        start_step = int(meta_prev["step"])

    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(algo.name, dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_interval = checkpoint_interval or max(steps // 10, chunk)
    loop_settings = dict(steps=steps, seed=seed, seeds=seeds, chunk=chunk, eval_interval=eval_interval,
                         eval_episodes=eval_episodes, checkpoint_interval=checkpoint_interval, seed_strategy=strategy)
    meta = dict(
        offrl_version=__version__, algo=algo.name, algo_config=config_to_dict(algo_config),
        transforms=transforms.to_dict(), dataset_info=dataset.info.to_dict(), dataset_source=dataset_source,
        spec=dataclasses.asdict(spec), loop=loop_settings,
    )
    if algo.conditioned_on_return(algo_config):  # the range a requested return is checked against (offrl eval --target-returns)
        returns = dataset.episode_returns()
        meta["episode_returns"] = {"min": float(returns.min()), "max": float(returns.max())}
    if population is not None:
        meta["population"] = population.to_dict()
    (run_dir / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    logger = RunLogger(run_dir, tensorboard=tensorboard, resume_step=start_step if meta_prev is not None else None)

    can_eval = dataset.info.env_id is not None and eval_episodes > 0
    target = default_target_return(algo_config, meta)
    policy = make_policy(algo, algo_config, transforms, spec, target, members=members, values=values) if can_eval else None
    varies_discount = population is not None and "discount" in population.names
    start_values = make_start_values(algo, algo_config, transforms, members, values) if can_eval and not varies_discount else None

    def run_eval(step: int, policy=policy) -> list[dict]:
        from offrl.evaluate import evaluate

        discount = getattr(algo_config, "discount", None) if start_values is not None else None
        results = evaluate(
            (lambda *obs: policy(states, *obs)), dataset.info.env_id, episodes=eval_episodes, num_policies=agents,
            seed=10_000, env_kwargs=dataset.info.env_kwargs or None,
            ref_min_score=dataset.info.ref_min_score, ref_max_score=dataset.info.ref_max_score,
            discount=discount, reward_transform=transforms.scale_rewards, obs_layout=dataset.info.obs_layout,
            stateful=algo.stateful,
        )
        if step < 0:  # a target-return sweep: not an evaluation row of the run
            return results
        row = _summarise_eval(results, step)
        if discount is not None:  # the over-estimation diagnostic (offrl report RUN_DIR draws it)
            q = start_values(states, np.stack([r["initial_observations"] for r in results]))  # (seeds, episodes)
            realised = np.array([r["discounted_returns"] for r in results])
            row.update(q_estimate=float(q.mean()), discounted_return=float(realised.mean()),
                       q_ratio=float(q.mean() / realised.mean()) if realised.mean() != 0 else None,
                       per_seed_q_estimate=[float(v) for v in q.mean(axis=1)],
                       per_seed_discounted_return=[float(v) for v in realised.mean(axis=1)])
        if population is not None:
            by_member = member_rows(population, seeds, results, None, step)
            row["per_member_return_mean"] = [r["return_mean"] for r in by_member]
            if by_member[0].get("normalized_score") is not None:
                row["per_member_score"] = [r["normalized_score"] for r in by_member]
        logger.log("eval", row)
        if on_eval is not None:
            on_eval(row)
        return results

    def checkpoint(step: int) -> None:
        save_checkpoint(run_dir / FILENAME, serialization.to_state_dict(jax.device_get(states)),
                        np.asarray(jax.device_get(train_keys)), {**meta, "step": step}, keep_previous=True)

    chunk_fns: dict[int, Any] = {}
    next_eval = (start_step // eval_interval + 1) * eval_interval if eval_interval else None
    next_ckpt = (start_step // checkpoint_interval + 1) * checkpoint_interval
    step, last_score, final_eval, metrics = start_step, None, [], None
    t_start, steps_done = time.perf_counter(), 0
    bar = Progress(enabled=progress, total=steps, start=start_step, title=f"{algo.name} on {dataset.info.name or 'dataset'}")
    try:
        while step < steps:
            n = min(chunk, steps - step)
            if n not in chunk_fns:
                chunk_fns[n] = make_train_chunk(algo, algo_config, n, agents, strategy, members)
            t0 = time.perf_counter()
            states, train_keys, metrics = chunk_fns[n](states, train_keys, data, values)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0
            step += n
            steps_done += n
            _check_finite(states, step, run_dir, algo.name, population, seeds)  # before any checkpoint or eval of a NaN state
            row = {"step": step, "updates_per_s": n / dt, "elapsed_s": time.perf_counter() - t_start}
            for key, value in metrics.items():
                value = np.asarray(value, np.float64)
                row[key] = float(np.nanmean(value)) if np.isfinite(value).any() else None
            if population is not None:  # each member's curve: its seeds' mean (agents are member-major)
                for key, value in metrics.items():
                    by_member = np.asarray(value, np.float64).reshape(population.size, -1)
                    row[f"per_member_{key}"] = [float(np.nanmean(v)) if np.isfinite(v).any() else None for v in by_member]
            logger.log("train", row)
            if next_eval is not None and step >= next_eval and policy is not None and step < steps:
                last_score = _headline(_summarise_eval(run_eval(step), step))
                next_eval = (step // eval_interval + 1) * eval_interval
            if step >= next_ckpt or step == steps:
                checkpoint(step)
                next_ckpt = (step // checkpoint_interval + 1) * checkpoint_interval
            bar.update(step, n / dt, last_score)
        done_before = meta_prev is not None and any(r.get("step") == steps for r in read_jsonl(run_dir / "eval.jsonl"))
        if evaluate_at_end and policy is not None and not done_before:  # a finished run resumed: no second final row
            final_eval = run_eval(step)
            last_score = _headline(_summarise_eval(final_eval, step))
            bar.update(step, None, last_score)
            if algo.conditioned_on_return(algo_config):  # achieved against requested return over the data's range
                from offrl import targets as target_returns

                low, high = meta["episode_returns"]["min"], meta["episode_returns"]["max"]
                rows = target_returns.sweep(
                    lambda t: run_eval(-1, make_policy(algo, algo_config, transforms, spec, t)),
                    target_returns.default_targets(low, high))
                target_returns.write_target_returns(run_dir, rows, (low, high), f"{algo.name} at {step:,} updates")
    finally:
        bar.close()
        logger.close()
    rows = []
    if population is not None:
        rows = member_rows(population, seeds, final_eval, metrics, step)
        if final_eval or not (run_dir / "population.jsonl").exists():  # a finished run resumed keeps its rows
            write_member_rows(run_dir, rows)
        else:
            rows = read_jsonl(run_dir / "population.jsonl")
    if plot:
        plot_run(run_dir)
    return FitResult(run_dir=run_dir, states=states, transforms=transforms, step=step, final_eval=final_eval,
                     population=population, members=rows)


def _one_update(algo: Algo, config: Any, spec: DataSpec, total_steps: int, data, values: dict):
    """init, one batch, one update and one action of an agent with traced member ``values`` (traced abstractly by
    :func:`offrl.population.check_traceable`: nothing runs)."""
    cfg = traced_config(config, values)
    key = jax.random.PRNGKey(0)
    state = algo.init(cfg, spec, key, total_steps)
    if algo.rollout is not None:
        int(algo.rollout_every(cfg))
        state, _ = algo.rollout(cfg, state, data, key)
    state, metrics = algo.update(cfg, state, algo.make_batch(cfg, data, key), key)
    return state, metrics, algo.act(cfg, state, jnp.zeros((1, spec.obs_dim), jnp.float32), key, True)


def _headline(row: dict) -> str:
    if row.get("normalized_score") is not None:
        return f"score {row['normalized_score']:.1f} ± {row['normalized_score_std']:.1f}"
    return f"return {row['return_mean']:.1f} ± {row['return_std']:.1f}"
