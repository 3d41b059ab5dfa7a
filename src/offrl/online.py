"""Online training of an off-policy agent (SAC) in a gymnasium environment, in the compiled-loop style.

Used to train the behaviour policies that generate benchmark data (:mod:`offrl.zoo`).

* The replay buffer lives on the device as fixed-size arrays with an insertion pointer; the pure
  functions :func:`buffer_init`, :func:`buffer_add` and :func:`buffer_sample` work inside ``jit``.
* ``num_envs`` gymnasium environments are stepped on the host in a list (as
  :func:`offrl.evaluate.evaluate` does), the policy batched over them with one jitted call per step.
* Training alternates blocks: collect ``update_every`` env steps on the host, then ONE jitted call
  adds them to the buffer and runs ``update_every * updates_per_step`` gradient updates in a
  ``lax.scan``. No Python runs per gradient step. The policy that collects a block is the one of
  the end of the previous block.
* Time limits: only ``terminated`` sets the terminal flag (``truncated`` bootstraps); the real final
  observation is stored as ``next_observation`` in both cases, and the env is reset afterwards.
* Snapshots: every ``snapshot_every`` env steps (and at the end) the agent is evaluated and saved
  as a policy file ``policy-NNNNNNNN.msgpack`` that ``offrl.load_agent`` loads, with a JSON card
  ``policy-NNNNNNNN.json`` beside it. The last one is also written as ``checkpoint.msgpack``, so
  ``offrl.load_agent(run_dir)`` and ``offrl eval RUN_DIR`` work on the run folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from offrl import __version__
from offrl.algos import DataSpec, algo_for_config
from offrl.algos.registry import Algo
from offrl.checkpoint import FILENAME, save_checkpoint
from offrl.compiled import cached, release_if_near_map_limit
from offrl.data import DatasetInfo, Transforms
from offrl.data.sampling import Batch, DeviceData, sample_uniform
from offrl.logger import RunLogger, plot_run
from offrl.progress import Progress

__all__ = ["ReplayBuffer", "buffer_init", "buffer_add", "buffer_sample", "train_online", "OnlineResult"]


# ----------------------------------------------------------------------------- the replay buffer


@struct.dataclass
class ReplayBuffer:
    """Transitions in fixed-size device arrays; row ``pointer`` is written next (oldest first once full).

    Actions are in the unit box [-1, 1]; ``terminals`` is 1 only where the env reported
    ``terminated`` (a time-limit cut bootstraps). ``extras`` holds per-transition arrays an algorithm
    needs beside the transition (``Algo.episode_extras``); a row's extras are ``-inf`` until its
    episode has ended and the loop filled them (``Algo.episode_extras``).
    """

    observations: jax.Array  # [C, obs_dim] float32
    actions: jax.Array  # [C, act_dim] float32
    rewards: jax.Array  # [C] float32
    next_observations: jax.Array  # [C, obs_dim] float32
    terminals: jax.Array  # [C] float32
    pointer: jax.Array  # () int32, the next row to write
    size: jax.Array  # () int32, rows filled so far (at most C)
    extras: dict = struct.field(default_factory=dict)  # name -> [C, ...] float32

    @property
    def capacity(self) -> int:
        return self.rewards.shape[0]


def buffer_init(capacity: int, obs_dim: int, action_dim: int, extras: Mapping[str, tuple] | None = None) -> ReplayBuffer:
    """An empty buffer of ``capacity`` rows; ``extras`` maps names to per-row trailing shapes."""
    if capacity < 1:
        raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
    f32 = jnp.float32
    return ReplayBuffer(
        observations=jnp.zeros((capacity, obs_dim), f32), actions=jnp.zeros((capacity, action_dim), f32),
        rewards=jnp.zeros((capacity,), f32), next_observations=jnp.zeros((capacity, obs_dim), f32),
        terminals=jnp.zeros((capacity,), f32), pointer=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32),
        extras={k: jnp.full((capacity,) + tuple(shape), -jnp.inf, f32) for k, shape in (extras or {}).items()},
    )


def buffer_add(buffer: ReplayBuffer, observations, actions, rewards, next_observations, terminals) -> ReplayBuffer:
    """Write n transitions at rows ``pointer, pointer + 1, ...`` modulo the capacity (overwriting the oldest).

    ``n`` (the leading size of the arrays) must not exceed the capacity. The rows' extras are reset to -inf.
    """
    n, capacity = rewards.shape[0], buffer.capacity
    if n > capacity:
        raise ValueError(f"cannot add {n} transitions at once to a buffer of capacity {capacity}")
    rows = (buffer.pointer + jnp.arange(n, dtype=jnp.int32)) % capacity
    put = lambda dst, src: dst.at[rows].set(jnp.asarray(src, dst.dtype).reshape((n,) + dst.shape[1:]))
    return buffer.replace(
        observations=put(buffer.observations, observations), actions=put(buffer.actions, actions),
        rewards=put(buffer.rewards, rewards), next_observations=put(buffer.next_observations, next_observations),
        terminals=put(buffer.terminals, terminals),
        pointer=(buffer.pointer + n) % capacity, size=jnp.minimum(buffer.size + n, capacity).astype(jnp.int32),
        extras={k: v.at[rows].set(-jnp.inf) for k, v in buffer.extras.items()},
    )


def buffer_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int, discount: float) -> Batch:
    """``batch_size`` transitions drawn uniformly (with replacement) from the filled rows; one-step bootstrap.

    An empty buffer returns row 0 (zeros): callers sample only after adding.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return Batch(
        observations=buffer.observations[idx], actions=buffer.actions[idx], rewards=buffer.rewards[idx],
        next_observations=buffer.next_observations[idx], terminals=buffer.terminals[idx],
        discounts=jnp.full((batch_size,), discount, jnp.float32),
        extras={k: v[idx] for k, v in buffer.extras.items()},
    )


def sample_mixed(buffer: ReplayBuffer, offline: DeviceData, key: jax.Array, batch_size: int, discount: float,
                 offline_ratio: float | None) -> tuple[Batch, jax.Array]:
    """A batch mixing offline rows and online buffer rows; also returns the offline fraction drawn.

    Each row comes from the offline data with probability ``offline_ratio`` (a set ratio;
    ``0.5`` is symmetric sampling), or, with ``offline_ratio=None``, with probability
    ``N_offline / (N_offline + buffer.size)``: uniform over the union of both, as one buffer that
    holds the offline data and the new transitions. Rows come from the offline data while the
    buffer is empty.
    """
    k_on, k_off, k_pick = jax.random.split(key, 3)
    online = buffer_sample(buffer, k_on, batch_size, discount)
    off = sample_uniform(offline, k_off, batch_size, discount)
    off = off.replace(extras={k: off.extras[k] for k in online.extras})
    if offline_ratio is None:
        p_off = offline.size / (offline.size + buffer.size.astype(jnp.float32))
    else:
        p_off = jnp.asarray(offline_ratio, jnp.float32)
    p_off = jnp.where(buffer.size > 0, p_off, 1.0)
    from_offline = jax.random.uniform(k_pick, (batch_size,)) < p_off
    pick = lambda a, b: jnp.where(from_offline.reshape((batch_size,) + (1,) * (a.ndim - 1)), a, b)
    return jax.tree.map(pick, off, online), from_offline.mean()


# ----------------------------------------------------------------------------- compiled pieces


@cached(maxsize=32)
def make_online_block(algo: Algo, config: Any, num_updates: int, seeds: int = 1, strategy: str = "vmap",
                      offline_ratio: float | None = None):
    """A jitted ``(states, buffers, keys, transitions, offline) -> (states, buffers, keys, metrics)`` over ``seeds`` agents.

    States, buffers, keys and transitions have a leading seeds axis. For each agent: adds the
    block's transitions (a tuple ``(obs, unit_actions, rewards, next_obs, terminals)``) to its
    buffer, then runs ``num_updates`` updates with ``lax.scan`` on uniform batches of its buffer,
    or, when ``offline`` (a :class:`DeviceData` shared by the agents) is given, on batches mixing it
    with the buffer (:func:`sample_mixed` with ``offline_ratio``). The agents are batched with
    ``vmap`` (accelerators) or run one after another with ``lax.map`` (``strategy="map"``, CPU); one
    agent runs the plain program. The metrics are averaged over the block on the device (NaN
    entries skipped), shape ``(seeds,)`` each; empty when ``num_updates == 0``. States and buffers
    are donated.
    """
    discount = float(getattr(config, "discount", 1.0))

    def one(state, buffer, key, transitions, offline):
        buffer = buffer_add(buffer, *transitions)
        if num_updates == 0:
            return state, buffer, key, {}
        key, sub = jax.random.split(key)

        def body(state, step_key):
            batch_key, update_key = jax.random.split(step_key)
            if offline is None:
                return algo.update(config, state, buffer_sample(buffer, batch_key, config.batch_size, discount), update_key)
            batch, offline_fraction = sample_mixed(buffer, offline, batch_key, config.batch_size, discount, offline_ratio)
            state, metrics = algo.update(config, state, batch, update_key)
            return state, {**metrics, "offline_fraction": offline_fraction}

        state, metrics = jax.lax.scan(body, state, jax.random.split(sub, num_updates))
        metrics = jax.tree.map(lambda m: jnp.nanmean(m.astype(jnp.float32), axis=0), metrics)
        return state, buffer, key, metrics

    def run(states, buffers, keys, transitions, offline=None):
        if seeds == 1:
            out = one(*jax.tree.map(lambda x: x[0], (states, buffers, keys, transitions)), offline)
            return jax.tree.map(lambda x: x[None], out)
        if strategy == "map":
            return jax.lax.map(lambda args: one(*args, offline), (states, buffers, keys, transitions))
        return jax.vmap(one, in_axes=(0, 0, 0, 0, None))(states, buffers, keys, transitions, offline)

    return jax.jit(run, donate_argnums=(0, 1))


@cached(maxsize=32)
def _make_explore(algo: Algo, config: Any):
    """Jitted stochastic policy for data collection over agents:
    ``(states, obs [seeds, envs, obs_dim], keys [seeds]) -> (unit actions [seeds, envs, act_dim], next keys)``.

    It runs where its inputs live (the accelerator, or the host CPU when collection overlaps training).
    """

    def one(state, obs, key):
        key, sub = jax.random.split(key)
        return algo.act(config, state, obs, sub, False), key

    return jax.jit(jax.vmap(one))


# ----------------------------------------------------------------------------- the loop


@dataclass
class OnlineResult:
    """What :func:`train_online` returns."""

    run_dir: Path
    state: Any  # the agent (no seeds axis)
    buffer: ReplayBuffer
    transforms: Transforms
    env_steps: int
    updates: int
    final_eval: dict = field(default_factory=dict)
    snapshots: list[Path] = field(default_factory=list)


def _action_transforms(env, obs_dim: int) -> Transforms:
    """Identity preprocessing with the env's action bounds (observations are not normalised online)."""
    import gymnasium as gym

    space = env.action_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"online training needs a 1-D Box action space, got {space}")
    if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        raise ValueError(f"online training needs finite action bounds, got {space.low} .. {space.high}")
    return Transforms(obs_mean=np.zeros(obs_dim), obs_std=np.ones(obs_dim), normalize_observations=False,
                      reward_scale=1.0, reward_shift=0.0, action_low=space.low, action_high=space.high)


def _default_run_dir(env_id: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(os.environ.get("OFFRL_RUNS", "runs")) / f"online-{env_id.replace('/', '_').replace(':', '_')}-{stamp}"


def train_online(
    config: Any,
    env_id: str,
    *,
    env_steps: int,
    num_envs: int = 1,
    start_steps: int = 5000,
    updates_per_step: float = 1,
    update_every: int = 50,
    buffer_size: int = 1_000_000,
    seed: int = 0,
    seeds: int = 1,
    seed_strategy: str = "auto",
    overlap: bool | None = None,
    snapshot_every: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 10,
    log_every: int = 1000,
    run_dir: str | os.PathLike | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    progress: bool = True,
    plot: bool = True,
    init_state: Any = None,
    transforms: Transforms | None = None,
    offline: DeviceData | None = None,
    offline_ratio: float | None = None,
    ref_scores: tuple[float, float] | None = None,
    dataset_info: DatasetInfo | None = None,
    meta_extra: Mapping[str, Any] | None = None,
) -> OnlineResult | list[OnlineResult]:
    """Train the agent whose ``Config`` is ``config`` (SAC: ``offrl.algos.sac.Config``) online in ``env_id``.

    ``env_steps`` transitions are collected in total over ``num_envs`` environments (env ``i`` is
    first reset with seed ``seed + i``). The first ``start_steps`` use uniform random actions.
    Updates start with the first block that ends at or after ``start_steps`` (and once the buffer
    holds a batch); each block of ``update_every`` env steps is then followed by
    ``round(update_every * updates_per_step)`` updates of ``config.batch_size`` transitions (the
    update-to-data ratio). The buffer keeps the last ``buffer_size`` transitions.

    ``seeds`` > 1 trains that many independent agents in one process, agent ``k`` exactly as a run
    with ``seed + k`` (its own envs, warm-up actions, buffer and keys), their updates batched
    (``seed_strategy``: ``vmap`` on accelerators, ``map`` on CPU, as :func:`offrl.fit`). Each agent
    logs to ``run_dir/seed-{seed + k}``, and a list of results is returned (one result otherwise).
    Under ``map`` with several local devices (on a CPU: ``JAX_NUM_CPU_DEVICES=N``), agent ``k``
    trains on device ``k mod N``, where its buffer stays: N cores update N agents at once, each
    running the one-agent program (the same bits as a run of that seed alone).

    ``overlap`` (default: on when JAX's default backend is an accelerator): the envs are stepped on
    the host while the accelerator runs the previous block's updates, with a host copy of the
    policy. A block is then collected by the policy of two blocks back (``update_every`` updates
    older than without overlap), which hides the env stepping behind the updates.

    Fine-tuning (:mod:`offrl.finetune`) starts from ``init_state`` (agents with a leading seeds
    axis, e.g. an offline checkpoint's) instead of fresh ones, with the offline run's
    ``transforms`` (observations normalised and rewards scaled as in its data; the default is the
    identity with the env's action bounds), and, with ``offline`` data on the device, every batch
    mixes it with the new transitions (:func:`sample_mixed`, ``offline_ratio``). Evaluations are
    normalised with ``ref_scores`` (random, expert) when given.

    Logged to the run folder like :func:`offrl.fit` (``step`` is the env step): ``train.jsonl/csv``
    every ``log_every`` env steps (algorithm metrics, returns of finished training episodes, env
    steps/s), ``eval.jsonl/csv`` for the deterministic policy over ``eval_episodes`` episodes (reset
    seeds 10000 + j) every ``eval_every`` env steps, at every snapshot and at the end.
    """
    from offrl.envs import make_env
    from offrl.evaluate import evaluate
    from offrl.train import _summarise_eval, config_to_dict, init_agents, make_policy, resolve_seed_strategy, seed_devices

    release_if_near_map_limit()  # before this run compiles anything (offrl.compiled)
    algo = algo_for_config(config)
    if env_steps < 1 or num_envs < 1 or update_every < 1 or updates_per_step < 0 or start_steps < 0 or seeds < 1:
        raise ValueError(
            f"need env_steps, num_envs, update_every, seeds >= 1 and start_steps, updates_per_step >= 0; got "
            f"env_steps={env_steps}, num_envs={num_envs}, update_every={update_every}, seeds={seeds}, "
            f"start_steps={start_steps}, updates_per_step={updates_per_step}"
        )
    strategy = resolve_seed_strategy(seed_strategy)
    # several local devices under map: agent k's updates and buffer on device k mod n (None: one program for all)
    devices = seed_devices(seeds, jax.local_devices()) if strategy == "map" and seeds > 1 and jax.local_device_count() > 1 else None
    if overlap is None:
        overlap = jax.default_backend() != "cpu"
    block = max(num_envs, (update_every // num_envs) * num_envs)  # env steps per block: whole steps of every env
    agent_seeds = [int(seed) + k for k in range(seeds)]

    envs = [[make_env(env_id, env_kwargs, max_episode_steps=max_episode_steps) for _ in range(num_envs)]
            for _ in agent_seeds]
    try:
        obs = np.stack([np.stack([np.asarray(env.reset(seed=s + i)[0], np.float32).reshape(-1) for i, env in enumerate(row)])
                        for s, row in zip(agent_seeds, envs)])  # [seeds, num_envs, obs_dim]
        obs_dim = obs.shape[-1]
        transforms = transforms if transforms is not None else _action_transforms(envs[0][0], obs_dim)
        act_dim = int(transforms.action_low.shape[0])
        spec = DataSpec(obs_dim=obs_dim, action_dim=act_dim)
        total_updates = int(round(max(env_steps - start_steps, 0) * updates_per_step))
        agent_states = [init_agents(algo, config, spec, s, 1, max(total_updates, 1)) for s in agent_seeds]
        state = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[st for st, _ in agent_states])
        if init_state is not None:
            lead = {np.shape(x)[0] for x in jax.tree.leaves(init_state)}
            if lead != {seeds}:
                raise ValueError(f"init_state holds {sorted(lead)} agents on its leading axis; seeds={seeds}")
            state = jax.tree.map(jnp.asarray, init_state)
        train_keys = jnp.concatenate([k for _, k in agent_states])
        act_keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 1) for s in agent_seeds])
        rngs = [np.random.default_rng(s) for s in agent_seeds]
        capacity = min(buffer_size, env_steps)
        extra_shapes = {k: tuple(v.shape[1:]) for k, v in (offline.extras if offline is not None else {}).items()}
        if extra_shapes and algo.episode_extras is None:
            raise ValueError(f"{algo.name} needs per-transition extras ({', '.join(extra_shapes)}) but has no "
                             "episode_extras hook to compute them for online episodes")
        new_buffers = lambda n: jax.vmap(lambda _: buffer_init(capacity, obs_dim, act_dim, extra_shapes))(jnp.arange(n))
        buffers = new_buffers(seeds) if devices is None else [jax.device_put(new_buffers(1), d) for d in devices]
        # ``devices``: a list, agent k's buffer (leading axis 1) on its device for the whole run, and the offline data on each
        offline_on = {d: jax.device_put(offline, d) for d in set(devices)} if devices and offline is not None else {}

        if run_dir is None:
            run_dir = _default_run_dir(env_id)
        run_dirs = [Path(run_dir)] if seeds == 1 else [Path(run_dir) / f"seed-{s}" for s in agent_seeds]
        info = dataset_info or DatasetInfo(
            name=f"online-{env_id}", env_id=env_id, env_kwargs=dict(env_kwargs or {}),
            action_low=transforms.action_low, action_high=transforms.action_high,
            metadata={"source": "offrl.online.train_online", "max_episode_steps": max_episode_steps},
        )
        online_settings = dict(env_steps=env_steps, num_envs=num_envs, start_steps=start_steps,
                               updates_per_step=updates_per_step, update_every=block, buffer_size=buffer_size,
                               snapshot_every=snapshot_every, eval_every=eval_every, eval_episodes=eval_episodes,
                               seeds_in_process=seeds, overlap=bool(overlap), offline_ratio=offline_ratio,
                               offline_transitions=None if offline is None else offline.size)
        metas, loggers = [], []
        for s, rd in zip(agent_seeds, run_dirs):
            rd.mkdir(parents=True, exist_ok=True)
            meta = dict(
                offrl_version=__version__, algo=algo.name, algo_config=config_to_dict(config),
                transforms=transforms.to_dict(), dataset_info=info.to_dict(), dataset_source=f"online:{env_id}",
                spec=dataclasses.asdict(spec), loop=dict(steps=max(total_updates, 1), seed=s, seeds=1, chunk=block),
                online=online_settings, training="online",
            )
            meta.update(meta_extra or {})
            (rd / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            metas.append(meta)
            loggers.append(RunLogger(rd))
        policy = make_policy(algo, config, transforms)
        explore = _make_explore(algo, config)
        cpu = jax.devices("cpu")[0]

        def run_eval(step: int, updates: int) -> list[dict]:
            refs = dict(ref_min_score=ref_scores[0], ref_max_score=ref_scores[1]) if ref_scores else {}
            results = evaluate(lambda o: policy(state, o), env_id, episodes=eval_episodes, num_policies=seeds,
                               seed=10_000, env_kwargs=env_kwargs, max_episode_steps=max_episode_steps, **refs)
            rows = []
            for k, res in enumerate(results):
                row = {**_summarise_eval([res], step), "updates": updates, "episode_return_std": res["return_std"]}
                loggers[k].log("eval", row)  # return_std: over seeds, as fit's eval.csv (0 for one agent)
                rows.append({**row, "return_std": res["return_std"], "returns": res["returns"]})
            return rows

        snapshots: list[list[Path]] = [[] for _ in agent_seeds]

        def snapshot(step: int, updates: int, evs: list[dict], name: str, card: bool) -> None:
            host = jax.device_get((state, train_keys))
            for k, (s, rd) in enumerate(zip(agent_seeds, run_dirs)):
                ev, path = evs[k], rd / name
                one = jax.tree.map(lambda x: np.asarray(x)[k:k + 1], host[0])
                snap_meta = {**metas[k], "step": updates, "env_steps": step, "return_mean": ev["return_mean"],
                             "return_std": ev["return_std"], "eval_episodes": eval_episodes}
                save_checkpoint(path, serialization.to_state_dict(one), np.asarray(host[1])[k:k + 1], snap_meta)
                if not card:
                    continue
                card_data = {
                    "policy_file": path.name, "env": env_id, "env_kwargs": dict(env_kwargs or {}), "env_steps": step,
                    "updates": updates, "seed": s, "algo": algo.name, "return_mean": ev["return_mean"],
                    "return_std": ev["return_std"], "eval_episodes": eval_episodes, "eval_seed": 10_000,
                    "eval_policy": "deterministic", "returns": ev["returns"], "offrl_version": __version__,
                }
                path.with_suffix(".json").write_text(json.dumps(card_data, indent=2) + "\n")
                snapshots[k].append(path)

        ep_return, ep_length = np.zeros((seeds, num_envs)), np.zeros((seeds, num_envs), np.int64)
        # per (agent, env): buffer rows, scaled rewards and terminal flags of the running episode (extras)
        ep_rows = [[[] for _ in range(num_envs)] for _ in agent_seeds]
        ep_rew = [[[] for _ in range(num_envs)] for _ in agent_seeds]
        ep_term = [[[] for _ in range(num_envs)] for _ in agent_seeds]
        pending_extras: list[tuple[int, list[int], dict]] = []
        host_pointer = 0
        finished: list[list[float]] = [[] for _ in agent_seeds]
        pending_metrics: list[dict] = []
        step = updates = filled = 0
        next_log = log_every
        next_eval = eval_every
        next_snap = snapshot_every
        final_evals: list[dict] = [{} for _ in agent_seeds]
        t_start = t_log = time.perf_counter()
        steps_at_log = updates_at_log = 0
        title = f"{algo.name} online on {env_id}" + (f" ({seeds} seeds)" if seeds > 1 else "")
        bar = Progress(progress, env_steps, title, unit="env steps")
        no_eval = {"return_mean": None, "return_std": None, "returns": []}
        # the policy that collects the next block: the agents themselves, or a host copy (overlap)
        acting, acting_keys = (jax.device_put((state, act_keys), cpu) if overlap else (state, act_keys))
        try:
            if init_state is not None and eval_episodes > 0:  # the starting point of a fine-tuning curve
                run_eval(0, 0)
            while step < env_steps:
                n_block = min(block, ((env_steps - step + num_envs - 1) // num_envs) * num_envs)
                rec = {k: [] for k in ("obs", "act", "rew", "next", "term")}
                for _ in range(n_block // num_envs):
                    if step < start_steps:
                        unit = np.stack([r.uniform(-1.0, 1.0, size=(num_envs, act_dim)) for r in rngs]).astype(np.float32)
                    else:
                        norm_obs = np.asarray(transforms.normalize_obs(obs), np.float32)
                        unit, acting_keys = explore(acting, jax.device_put(norm_obs, cpu) if overlap else jnp.asarray(norm_obs),
                                                    acting_keys)
                        unit = np.asarray(unit)
                    env_actions = transforms.action_from_unit(unit)
                    prev, nxt = obs.copy(), np.empty_like(obs)
                    rew, term = np.zeros((seeds, num_envs), np.float32), np.zeros((seeds, num_envs), np.float32)
                    for k, row in enumerate(envs):
                        for i, env in enumerate(row):
                            o2, r, terminated, truncated, _ = env.step(env_actions[k, i])
                            nxt[k, i] = np.asarray(o2, np.float32).reshape(-1)
                            rew[k, i], term[k, i] = float(r), float(terminated)
                            ep_return[k, i] += float(r)
                            ep_length[k, i] += 1
                            obs[k, i] = nxt[k, i]
                            if extra_shapes:
                                ep_rows[k][i].append((host_pointer + len(rec["rew"]) * num_envs + i) % capacity)
                                ep_rew[k][i].append(float(transforms.scale_rewards(float(r))))
                                ep_term[k][i].append(float(terminated))
                                if terminated or truncated:
                                    values = algo.episode_extras(config, np.asarray(ep_rew[k][i]), np.asarray(ep_term[k][i]))
                                    pending_extras.append((k, ep_rows[k][i], values))
                                    ep_rows[k][i], ep_rew[k][i], ep_term[k][i] = [], [], []
                            if terminated or truncated:
                                finished[k].append(float(ep_return[k, i]))
                                ep_return[k, i], ep_length[k, i] = 0.0, 0
                                obs[k, i] = np.asarray(env.reset()[0], np.float32).reshape(-1)
                    norm = lambda x: np.asarray(transforms.normalize_obs(x), np.float32)
                    for key, value in zip(("obs", "act", "rew", "next", "term"),
                                          (norm(prev), unit, np.asarray(transforms.scale_rewards(rew), np.float32), norm(nxt), term)):
                        rec[key].append(value)
                    step += num_envs
                filled = min(filled + n_block, capacity)
                host_pointer = (host_pointer + n_block) % capacity
                learn = step >= start_steps and (filled >= config.batch_size or offline is not None)
                n_updates = int(round(n_block * updates_per_step)) if learn else 0
                # [steps, seeds, envs, ...] -> [seeds, steps * envs, ...]: per agent, env steps in time order
                transitions = tuple(np.swapaxes(np.stack(rec[key]), 0, 1).reshape((seeds, n_block) + rec[key][0].shape[2:])
                                    for key in ("obs", "act", "rew", "next", "term"))
                if overlap:  # host copy of the agents before this block's updates, for the next block
                    next_acting = jax.device_put(jax.device_get(state), cpu)
                if devices:
                    state, buffers, train_keys, metrics = _spread_block(
                        make_online_block(algo, config, n_updates, 1, strategy, offline_ratio), devices,
                        state, buffers, train_keys, transitions, offline_on)
                else:
                    state, buffers, train_keys, metrics = make_online_block(
                        algo, config, n_updates, seeds, strategy, offline_ratio)(state, buffers, train_keys, transitions, offline)
                for k, rows, values in pending_extras:  # episodes that ended in this block: their rows' extras
                    if devices:
                        buffers[k] = _set_agent_extras(buffers[k], 0, rows, values, capacity)
                    else:
                        buffers = _set_agent_extras(buffers, k, rows, values, capacity)
                pending_extras = []
                acting = next_acting if overlap else state
                updates += n_updates
                if metrics:
                    pending_metrics.append(metrics)

                last = step >= env_steps
                if step >= next_log or last:
                    jax.block_until_ready(state)
                    now = time.perf_counter()
                    stacked = {key: np.asarray(v, np.float64) for key, v in jax.device_get(_stack(pending_metrics)).items()}
                    for k in range(seeds):
                        row = {"step": step, "updates": updates, "env_steps_per_s": (step - steps_at_log) / (now - t_log),
                               "updates_per_s": (updates - updates_at_log) / (now - t_log), "elapsed_s": now - t_start,
                               "episodes": len(finished[k]),
                               "episode_return_mean": float(np.mean(finished[k])) if finished[k] else None}
                        for key, values in stacked.items():
                            values = values[:, k]
                            row[key] = float(np.nanmean(values)) if np.isfinite(values).any() else None
                        loggers[k].log("train", row)
                    bar.update(step, (step - steps_at_log) / (now - t_log), None)
                    finished, pending_metrics = [[] for _ in agent_seeds], []
                    t_log, steps_at_log, updates_at_log = now, step, updates
                    next_log = (step // log_every + 1) * log_every
                snap_due = last or (next_snap is not None and step >= next_snap)
                if eval_episodes > 0 and (snap_due or (next_eval is not None and step >= next_eval)):
                    evs = run_eval(step, updates)
                    score = "  ".join(f"{ev['return_mean']:.1f}" for ev in evs)
                    bar.update(step, None, f"return {score}" if seeds > 1 else
                               f"return {evs[0]['return_mean']:.1f} ± {evs[0]['return_std']:.1f}")
                else:
                    evs = [no_eval] * seeds
                if snap_due:
                    snapshot(step, updates, evs, f"policy-{step:08d}.msgpack", card=True)
                if last:
                    snapshot(step, updates, evs, FILENAME, card=False)
                    final_evals = evs
                if next_eval is not None and step >= next_eval:
                    next_eval = (step // eval_every + 1) * eval_every
                if next_snap is not None and step >= next_snap:
                    next_snap = (step // snapshot_every + 1) * snapshot_every
        finally:
            bar.close()
            for logger in loggers:
                logger.close()
    finally:
        for row in envs:
            for env in row:
                env.close()
    if plot:
        for rd in run_dirs:
            plot_run(rd)
    results = [
        OnlineResult(run_dir=rd, state=jax.tree.map(lambda x: x[k], state),
                     buffer=jax.tree.map(lambda x: x[0], buffers[k]) if devices else jax.tree.map(lambda x: x[k], buffers),
                     transforms=transforms, env_steps=step, updates=updates,
                     final_eval=final_evals[k], snapshots=snapshots[k])
        for k, rd in enumerate(run_dirs)
    ]
    return results[0] if seeds == 1 else results


def _spread_block(block, devices: list, states, buffers: list, keys, transitions, offline_on: dict):
    """One block of every agent, agent k with the one-agent ``block`` on ``devices[k]`` (its buffer is
    ``buffers[k]``, already there); states, keys and metrics come back stacked on the first device.
    Every agent's inputs are sliced before any block is queued (each device runs its queue in order),
    so the devices run their agents' blocks at the same time."""
    parts = [jax.device_put((jax.tree.map(lambda x: x[k:k + 1], states), keys[k:k + 1], tuple(t[k:k + 1] for t in transitions)),
                            d) for k, d in enumerate(devices)]
    outs = [block(state, buffer, key, trans, offline_on.get(d)) for (state, key, trans), buffer, d in zip(parts, buffers, devices)]
    home = jax.device_put([(state, key, metrics) for state, _, key, metrics in outs], devices[0])
    states, keys, metrics = jax.tree.map(lambda *xs: jnp.concatenate(xs), *home)
    return states, [buffer for _, buffer, _, _ in outs], keys, metrics


def _set_agent_extras(buffers: ReplayBuffer, k: int, rows: list[int], values: dict, capacity: int) -> ReplayBuffer:
    """Fill agent ``k``'s extras at ``rows`` (padded to a power of two, so few programs compile)."""
    n = len(rows)
    size = 1 << max(n - 1, 0).bit_length()
    padded_rows = np.full(size, capacity, np.int64)  # out of range: dropped
    padded_rows[:n] = rows
    padded = {}
    for name, v in values.items():
        v = np.asarray(v, np.float32)
        padded[name] = np.concatenate([v, np.zeros((size - n,) + v.shape[1:], np.float32)])
    return _set_extras_of_agent(buffers, jnp.int32(k), jnp.asarray(padded_rows), padded)


@functools.partial(jax.jit, donate_argnums=(0,))
def _set_extras_of_agent(buffers: ReplayBuffer, k: jax.Array, rows: jax.Array, values: dict) -> ReplayBuffer:
    capacity = buffers.rewards.shape[1]
    flat = k * capacity + jnp.where(rows < capacity, rows, buffers.rewards.size)  # padding lands out of range
    return buffers.replace(extras={
        name: v.reshape((-1,) + v.shape[2:]).at[flat].set(values[name].astype(v.dtype), mode="drop").reshape(v.shape)
        if name in values else v for name, v in buffers.extras.items()})


def _stack(metrics: list[dict]) -> dict:
    if not metrics:
        return {}
    return {k: jnp.stack([m[k] for m in metrics]) for k in metrics[0]}
