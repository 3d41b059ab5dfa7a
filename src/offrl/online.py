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
from offrl.data import DatasetInfo, Transforms
from offrl.data.sampling import Batch
from offrl.logger import RunLogger, plot_run

__all__ = ["ReplayBuffer", "buffer_init", "buffer_add", "buffer_sample", "train_online", "OnlineResult"]


# ----------------------------------------------------------------------------- the replay buffer


@struct.dataclass
class ReplayBuffer:
    """Transitions in fixed-size device arrays; row ``pointer`` is written next (oldest first once full).

    Actions are in the unit box [-1, 1]; ``terminals`` is 1 only where the env reported
    ``terminated`` (a time-limit cut bootstraps).
    """

    observations: jax.Array  # [C, obs_dim] float32
    actions: jax.Array  # [C, act_dim] float32
    rewards: jax.Array  # [C] float32
    next_observations: jax.Array  # [C, obs_dim] float32
    terminals: jax.Array  # [C] float32
    pointer: jax.Array  # () int32, the next row to write
    size: jax.Array  # () int32, rows filled so far (at most C)

    @property
    def capacity(self) -> int:
        return self.rewards.shape[0]


def buffer_init(capacity: int, obs_dim: int, action_dim: int) -> ReplayBuffer:
    """An empty buffer of ``capacity`` rows."""
    if capacity < 1:
        raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
    f32 = jnp.float32
    return ReplayBuffer(
        observations=jnp.zeros((capacity, obs_dim), f32), actions=jnp.zeros((capacity, action_dim), f32),
        rewards=jnp.zeros((capacity,), f32), next_observations=jnp.zeros((capacity, obs_dim), f32),
        terminals=jnp.zeros((capacity,), f32), pointer=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32),
    )


def buffer_add(buffer: ReplayBuffer, observations, actions, rewards, next_observations, terminals) -> ReplayBuffer:
    """Write n transitions at rows ``pointer, pointer + 1, ...`` modulo the capacity (overwriting the oldest).

    ``n`` (the leading size of the arrays) must not exceed the capacity.
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
    )


# ----------------------------------------------------------------------------- compiled pieces


@functools.lru_cache(maxsize=32)
def make_online_block(algo: Algo, config: Any, num_updates: int):
    """A jitted ``(state, buffer, key, transitions) -> (state, buffer, key, metrics)``.

    Adds the block's transitions (a tuple ``(obs, unit_actions, rewards, next_obs, terminals)``) to
    the buffer, then runs ``num_updates`` updates with ``lax.scan`` on uniform buffer batches. The
    metrics are averaged over the block on the device (NaN entries skipped); empty when
    ``num_updates == 0``. The state and the buffer are donated (updated in place).
    """
    discount = float(getattr(config, "discount", 1.0))

    def run(state, buffer, key, transitions):
        buffer = buffer_add(buffer, *transitions)
        if num_updates == 0:
            return state, buffer, key, {}
        key, sub = jax.random.split(key)

        def body(state, step_key):
            batch_key, update_key = jax.random.split(step_key)
            return algo.update(config, state, buffer_sample(buffer, batch_key, config.batch_size, discount), update_key)

        state, metrics = jax.lax.scan(body, state, jax.random.split(sub, num_updates))
        metrics = jax.tree.map(lambda m: jnp.nanmean(m.astype(jnp.float32), axis=0), metrics)
        return state, buffer, key, metrics

    return jax.jit(run, donate_argnums=(0, 1))


@functools.lru_cache(maxsize=32)
def _make_explore(algo: Algo, config: Any):
    """Jitted stochastic policy for data collection: ``(state, obs, key) -> (unit actions, next key)``."""

    @jax.jit
    def explore(state, obs, key):
        key, sub = jax.random.split(key)
        return algo.act(config, state, obs, sub, False), key

    return explore


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
    snapshot_every: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 10,
    log_every: int = 1000,
    run_dir: str | os.PathLike | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    progress: bool = True,
    plot: bool = True,
) -> OnlineResult:
    """Train the agent whose ``Config`` is ``config`` (SAC: ``offrl.algos.sac.Config``) online in ``env_id``.

    ``env_steps`` transitions are collected in total over ``num_envs`` environments (env ``i`` is
    first reset with seed ``seed + i``). The first ``start_steps`` use uniform random actions.
    Updates start with the first block that ends at or after ``start_steps`` (and once the buffer
    holds a batch); each block of ``update_every`` env steps is then followed by
    ``round(update_every * updates_per_step)`` updates of ``config.batch_size`` transitions (the
    update-to-data ratio). The buffer keeps the last ``buffer_size`` transitions.

    Logged to the run folder like :func:`offrl.fit` (``step`` is the env step): ``train.jsonl/csv``
    every ``log_every`` env steps (algorithm metrics, returns of finished training episodes, env
    steps/s), ``eval.jsonl/csv`` for the deterministic policy over ``eval_episodes`` episodes (reset
    seeds 10000 + j) every ``eval_every`` env steps, at every snapshot and at the end.
    """
    from offrl.envs import make_env
    from offrl.evaluate import evaluate
    from offrl.train import _summarise_eval, config_to_dict, init_agents, make_policy

    algo = algo_for_config(config)
    if env_steps < 1 or num_envs < 1 or update_every < 1 or updates_per_step < 0 or start_steps < 0:
        raise ValueError(
            f"need env_steps, num_envs, update_every >= 1 and start_steps, updates_per_step >= 0; got "
            f"env_steps={env_steps}, num_envs={num_envs}, update_every={update_every}, "
            f"start_steps={start_steps}, updates_per_step={updates_per_step}"
        )
    block = max(num_envs, (update_every // num_envs) * num_envs)  # env steps per block: whole steps of every env

    envs = [make_env(env_id, env_kwargs, max_episode_steps=max_episode_steps) for _ in range(num_envs)]
    try:
        obs = np.stack([np.asarray(env.reset(seed=int(seed) + i)[0], np.float32).reshape(-1) for i, env in enumerate(envs)])
        obs_dim = obs.shape[1]
        transforms = _action_transforms(envs[0], obs_dim)
        act_dim = int(transforms.action_low.shape[0])
        spec = DataSpec(obs_dim=obs_dim, action_dim=act_dim)
        total_updates = int(round(max(env_steps - start_steps, 0) * updates_per_step))
        states, train_keys = init_agents(algo, config, spec, seed, 1, max(total_updates, 1))
        state = jax.tree.map(lambda x: x[0], states)
        train_key = train_keys[0]
        act_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
        rng = np.random.default_rng(seed)
        buffer = buffer_init(min(buffer_size, env_steps), obs_dim, act_dim)

        run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(env_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        info = DatasetInfo(
            name=f"online-{env_id}", env_id=env_id, env_kwargs=dict(env_kwargs or {}),
            action_low=transforms.action_low, action_high=transforms.action_high,
            metadata={"source": "offrl.online.train_online", "max_episode_steps": max_episode_steps},
        )
        online_settings = dict(env_steps=env_steps, num_envs=num_envs, start_steps=start_steps,
                               updates_per_step=updates_per_step, update_every=block, buffer_size=buffer_size,
                               snapshot_every=snapshot_every, eval_every=eval_every, eval_episodes=eval_episodes)
        meta = dict(
            offrl_version=__version__, algo=algo.name, algo_config=config_to_dict(config),
            transforms=transforms.to_dict(), dataset_info=info.to_dict(), dataset_source=f"online:{env_id}",
            spec=dataclasses.asdict(spec), loop=dict(steps=max(total_updates, 1), seed=seed, seeds=1, chunk=block),
            online=online_settings, training="online",
        )
        (run_dir / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        logger = RunLogger(run_dir)
        policy = make_policy(algo, config, transforms)
        explore = _make_explore(algo, config)

        def run_eval(step: int, updates: int) -> dict:
            batched = jax.tree.map(lambda x: x[None], state)
            results = evaluate(lambda o: policy(batched, o), env_id, episodes=eval_episodes, seed=10_000,
                               env_kwargs=env_kwargs, max_episode_steps=max_episode_steps)
            row = {**_summarise_eval(results, step), "updates": updates, "episode_return_std": results[0]["return_std"]}
            logger.log("eval", row)  # return_std: over seeds, as fit's eval.csv (0 for one agent)
            return {**row, "return_std": results[0]["return_std"], "returns": results[0]["returns"]}

        snapshots: list[Path] = []

        def snapshot(step: int, updates: int, ev: dict, path: Path, card: bool) -> None:
            batched = jax.tree.map(lambda x: x[None], jax.device_get(state))
            snap_meta = {**meta, "step": updates, "env_steps": step, "return_mean": ev["return_mean"],
                         "return_std": ev["return_std"], "eval_episodes": eval_episodes}
            save_checkpoint(path, serialization.to_state_dict(batched), np.asarray(jax.device_get(train_key))[None], snap_meta)
            if not card:
                return
            card_data = {
                "policy_file": path.name, "env": env_id, "env_kwargs": dict(env_kwargs or {}), "env_steps": step,
                "updates": updates, "seed": seed, "algo": algo.name, "return_mean": ev["return_mean"],
                "return_std": ev["return_std"], "eval_episodes": eval_episodes, "eval_seed": 10_000,
                "eval_policy": "deterministic", "returns": ev["returns"], "offrl_version": __version__,
            }
            path.with_suffix(".json").write_text(json.dumps(card_data, indent=2) + "\n")

        ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, np.int64)
        finished: list[float] = []
        pending_metrics: list[dict] = []
        step = updates = filled = 0
        next_log = log_every
        next_eval = eval_every
        next_snap = snapshot_every
        final_eval: dict = {}
        t_start = t_log = time.perf_counter()
        steps_at_log = updates_at_log = 0
        bar = _Progress(progress, env_steps, f"{algo.name} online on {env_id}")
        try:
            while step < env_steps:
                n_block = min(block, ((env_steps - step + num_envs - 1) // num_envs) * num_envs)
                rec = {k: [] for k in ("obs", "act", "rew", "next", "term")}
                for _ in range(n_block // num_envs):
                    if step < start_steps:
                        unit = rng.uniform(-1.0, 1.0, size=(num_envs, act_dim)).astype(np.float32)
                    else:
                        unit, act_key = explore(state, jnp.asarray(obs), act_key)
                        unit = np.asarray(unit)
                    env_actions = transforms.action_from_unit(unit)
                    for i, env in enumerate(envs):
                        o2, r, terminated, truncated, _ = env.step(env_actions[i])
                        o2 = np.asarray(o2, np.float32).reshape(-1)
                        rec["obs"].append(obs[i].copy())
                        rec["act"].append(unit[i])
                        rec["rew"].append(float(r))
                        rec["next"].append(o2)
                        rec["term"].append(float(terminated))
                        ep_return[i] += float(r)
                        ep_length[i] += 1
                        if terminated or truncated:
                            finished.append(float(ep_return[i]))
                            ep_return[i], ep_length[i] = 0.0, 0
                            o2 = np.asarray(env.reset()[0], np.float32).reshape(-1)
                        obs[i] = o2
                    step += num_envs
                filled = min(filled + n_block, buffer.capacity)
                learn = step >= start_steps and filled >= config.batch_size
                n_updates = int(round(n_block * updates_per_step)) if learn else 0
                transitions = (np.stack(rec["obs"]), np.stack(rec["act"]), np.asarray(rec["rew"], np.float32),
                               np.stack(rec["next"]), np.asarray(rec["term"], np.float32))
                state, buffer, train_key, metrics = make_online_block(algo, config, n_updates)(
                    state, buffer, train_key, transitions)
                updates += n_updates
                if metrics:
                    pending_metrics.append(metrics)

                last = step >= env_steps
                if step >= next_log or last:
                    jax.block_until_ready(state)
                    now = time.perf_counter()
                    row = {"step": step, "updates": updates, "env_steps_per_s": (step - steps_at_log) / (now - t_log),
                           "updates_per_s": (updates - updates_at_log) / (now - t_log), "elapsed_s": now - t_start,
                           "episodes": len(finished),
                           "episode_return_mean": float(np.mean(finished)) if finished else None}
                    for key, values in jax.device_get(_stack(pending_metrics)).items():
                        values = np.asarray(values, np.float64)
                        row[key] = float(np.nanmean(values)) if np.isfinite(values).any() else None
                    logger.log("train", row)
                    bar.update(step, row["env_steps_per_s"], None)
                    finished, pending_metrics = [], []
                    t_log, steps_at_log, updates_at_log = now, step, updates
                    next_log = (step // log_every + 1) * log_every
                snap_due = last or (next_snap is not None and step >= next_snap)
                if eval_episodes > 0 and (snap_due or (next_eval is not None and step >= next_eval)):
                    ev = run_eval(step, updates)
                    bar.update(step, None, f"return {ev['return_mean']:.1f} ± {ev['return_std']:.1f}")
                else:
                    ev = {"return_mean": None, "return_std": None, "returns": []}
                if snap_due:
                    path = run_dir / f"policy-{step:08d}.msgpack"
                    snapshot(step, updates, ev, path, card=True)
                    snapshots.append(path)
                if last:
                    snapshot(step, updates, ev, run_dir / FILENAME, card=False)
                    final_eval = ev
                if next_eval is not None and step >= next_eval:
                    next_eval = (step // eval_every + 1) * eval_every
                if next_snap is not None and step >= next_snap:
                    next_snap = (step // snapshot_every + 1) * snapshot_every
        finally:
            bar.close()
            logger.close()
    finally:
        for env in envs:
            env.close()
    if plot:
        plot_run(run_dir)
    return OnlineResult(run_dir=run_dir, state=state, buffer=buffer, transforms=transforms, env_steps=step,
                        updates=updates, final_eval=final_eval, snapshots=snapshots)


def _stack(metrics: list[dict]) -> dict:
    if not metrics:
        return {}
    return {k: jnp.stack([m[k] for m in metrics]) for k in metrics[0]}


class _Progress:
    """A rich progress bar: env steps done, env steps/s, ETA and the latest evaluation."""

    def __init__(self, enabled: bool, total: int, title: str):
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[sps]}"), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[score]}"),
        )
        self._progress.start()
        self._task = self._progress.add_task(title, total=total, completed=0, sps="", score="")

    def update(self, step: int, sps: float | None, score: str | None) -> None:
        if not self.enabled:
            return
        fields = {}
        if sps is not None:
            fields["sps"] = f"{sps:,.0f} env steps/s"
        if score is not None:
            fields["score"] = score
        self._progress.update(self._task, completed=step, **fields)

    def close(self) -> None:
        if self.enabled:
            self._progress.stop()
