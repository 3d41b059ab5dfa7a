"""``offrl bench --peer d3rlpy``: train and evaluate d3rlpy 2.8.1's implementation of an algorithm.

Called by ``offrl bench`` (``src/offrl/bench.py``, ``run_peer``) with the peer venv's python::

    .venv-d3rlpy/bin/python benchmarks/peers/d3rlpy.py --job JOB.json --out RESULT.json [--threads 1]

The job names the algorithm (offrl's registered name), the dataset file (offrl's HDF5, D4RL
layout), the Gymnasium env id and kwargs, ``steps`` (gradient updates), ``seeds``, ``episodes``
and the reference scores. Per seed: ``d3rlpy.seed(seed)``, a fresh algorithm from the config
below, ``fit(dataset, n_steps=steps, n_steps_per_epoch=min(steps, 10000))`` with no evaluators,
no progress bar and ``NoopAdapterFactory`` (nothing written to disk), then ``episodes`` episodes
of the deterministic ``predict`` on ``gymnasium.make(env_id, **env_kwargs)`` reset with seeds
``0 .. episodes-1`` (actions clipped to the action-space bounds, as offrl's evaluation does).
The result holds ``per_seed`` normalised scores ``100 (mean return - ref_min) / (ref_max -
ref_min)``, ``returns``, ``library_version`` and ``config`` (the full d3rlpy config as fitted,
plus the reproduction script it follows). Torch uses ``--threads`` threads (default: the job's ``threads``, else 1).

Dataset: ``benchmarks/d3rlpy_mdp.py`` (episodes cut at terminals|timeouts, successor =
next row, the last step of a timed-out episode is not sampled).

Configs: each algorithm's settings from d3rlpy's own reproduction script
(``reproductions/offline/ALGO.py`` in takuseno/d3rlpy), everything else at the ``*Config``
defaults of 2.8.1 (default encoders: 256x256 ReLU MLPs). See ``CONFIGS`` for each one's source.
The job's optional ``overrides`` (``offrl bench --peer-set FIELD=VALUE``) replace fields of that
config by name (an unknown field is an error); the result's config records them. ``fit`` prints a
line per epoch (updates done, updates/s, ETA).
Where the env's action bounds are not [-1, 1] (e.g. Pendulum, [-2, 2]) a ``MinMaxActionScaler``
with the env bounds is added, matching offrl's rescaling of actions to [-1, 1]; D4RL locomotion
actions are already in [-1, 1], so the reproduction settings apply unchanged there.

Unsupported (clear error, exit status 2): algorithms outside ``CONFIGS``, discrete action spaces,
and ``offrl/...`` env ids (the maze envs need offrl's registration, absent from the peer venv).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the library it drives: drop its folder from sys.path so `import
# d3rlpy` finds the package, and make benchmarks/ importable for the shared dataset helper.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE.parent))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

STEPS_PER_EPOCH = 10_000
REPRO = "takuseno/d3rlpy reproductions/offline/"


def fail(message: str) -> None:
    print(f"d3rlpy peer runner: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------------
# Configs: offrl name -> d3rlpy config (reproduction-script settings)
# ---------------------------------------------------------------------------------------------


def _iql(d3rlpy, ctx):
    return d3rlpy.algos.IQLConfig(
        actor_learning_rate=3e-4, critic_learning_rate=3e-4,
        # The script anneals the actor lr over its whole run (T_max = its n_steps); here T_max = steps.
        actor_optim_factory=d3rlpy.optimizers.AdamFactory(
            lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=ctx["steps"])),
        batch_size=256, weight_temp=3.0, max_weight=100.0, expectile=0.7,
        reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
        **ctx["action_scaler"])


def _td3bc(d3rlpy, ctx):
    return d3rlpy.algos.TD3PlusBCConfig(
        actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256,
        target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=2.5, update_actor_interval=2,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(), **ctx["action_scaler"])


def _bc(d3rlpy, ctx):
    return d3rlpy.algos.BCConfig(**ctx["action_scaler"])


def _cql(d3rlpy, ctx):
    encoder = d3rlpy.models.encoders.VectorEncoderFactory([256, 256])
    # The script uses 10.0 for D4RL "medium-v0" datasets only, else 5.0.
    weight = 10.0 if "medium-v0" in ctx["dataset"] else 5.0
    return d3rlpy.algos.CQLConfig(
        actor_learning_rate=1e-4, critic_learning_rate=3e-4, temp_learning_rate=1e-4,
        alpha_learning_rate=3e-4, initial_alpha=math.e, actor_encoder_factory=encoder,
        critic_encoder_factory=encoder, batch_size=256, n_action_samples=10, alpha_threshold=10,
        conservative_weight=weight, **ctx["action_scaler"])


def _bcq(d3rlpy, ctx):
    vae = d3rlpy.models.encoders.VectorEncoderFactory([750, 750])
    rl = d3rlpy.models.encoders.VectorEncoderFactory([400, 300])
    return d3rlpy.algos.BCQConfig(
        actor_encoder_factory=rl, actor_learning_rate=1e-3, critic_encoder_factory=rl,
        critic_learning_rate=1e-3, imitator_encoder_factory=vae, imitator_learning_rate=1e-3,
        batch_size=100, lam=0.75, action_flexibility=0.05, n_action_samples=100,
        **ctx["action_scaler"])


def _bear(d3rlpy, ctx):
    vae = d3rlpy.models.encoders.VectorEncoderFactory([750, 750])
    kernel = "gaussian" if "halfcheetah" in ctx["env_id"].lower() else "laplacian"
    return d3rlpy.algos.BEARConfig(
        actor_learning_rate=1e-4, critic_learning_rate=3e-4, imitator_learning_rate=3e-4,
        alpha_learning_rate=1e-3, imitator_encoder_factory=vae, temp_learning_rate=0.0,
        initial_temperature=1e-20, batch_size=256, mmd_sigma=20.0, mmd_kernel=kernel,
        n_mmd_action_samples=4, alpha_threshold=0.05, n_target_samples=10, n_action_samples=100,
        warmup_steps=40000, **ctx["action_scaler"])


def _awac(d3rlpy, ctx):
    encoder = d3rlpy.models.encoders.VectorEncoderFactory([256, 256, 256, 256])
    return d3rlpy.algos.AWACConfig(
        actor_learning_rate=3e-4, actor_encoder_factory=encoder,
        actor_optim_factory=d3rlpy.optimizers.AdamFactory(weight_decay=1e-4),
        critic_learning_rate=3e-4, critic_encoder_factory=encoder, batch_size=1024, lam=1.0,
        **ctx["action_scaler"])


def _crr(d3rlpy, ctx):
    return d3rlpy.algos.CRRConfig(
        actor_learning_rate=1e-4, critic_learning_rate=1e-4, batch_size=128, weight_type="exp",
        **ctx["action_scaler"])


def _sac(d3rlpy, ctx):
    return d3rlpy.algos.SACConfig(
        actor_learning_rate=3e-4, critic_learning_rate=3e-4, temp_learning_rate=3e-4,
        batch_size=256, **ctx["action_scaler"])


def _dt(d3rlpy, ctx):
    # The 2.x script passes warmup_steps=10000 to the config; 2.8.1 takes it as the optimiser's scheduler, so
    # ``--peer-set warmup_steps=N`` (a cut budget) is read here, not as a config field.
    return d3rlpy.algos.DecisionTransformerConfig(
        batch_size=64, learning_rate=1e-4,
        optim_factory=d3rlpy.optimizers.GPTAdamWFactory(
            weight_decay=1e-4, clip_grad_norm=0.25,
            lr_scheduler_factory=d3rlpy.optimizers.WarmupSchedulerFactory(warmup_steps=ctx.get("warmup_steps", 10000))),
        encoder_factory=d3rlpy.models.VectorEncoderFactory([128], exclude_last_activation=True),
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(0.001),
        context_size=20, num_heads=1, num_layers=3, max_timestep=1000, **ctx["action_scaler"])


#: offrl name -> (builder, source of the settings)
CONFIGS = {
    "iql": (_iql, REPRO + "iql.py (commit d324094f): ReturnBasedRewardScaler(multiplier=1000), "
                  "cosine-annealed actor lr; no observation scaler"),
    "td3bc": (_td3bc, REPRO + "td3_plus_bc.py (2.x version): StandardObservationScaler"),
    "bc": (_bc, "no reproduction script for BC: BCConfig defaults (deterministic policy, "
                "batch 100, lr 1e-3)"),
    "cql": (_cql, REPRO + "cql.py (commit 52097073): Lagrangian alpha (initial e, threshold 10), "
                  "conservative_weight 10 for '*medium-v0' datasets else 5"),
    "bcq": (_bcq, REPRO + "bcq.py (2.x version): VAE 750x750, actor/critic 400x300"),
    "bear": (_bear, REPRO + "bear.py (2.x version): VAE 750x750, gaussian MMD kernel for "
                    "halfcheetah else laplacian, warmup 40000"),
    "awac": (_awac, REPRO + "awac.py (2.x version): 4x256 MLPs, actor weight decay 1e-4, batch 1024"),
    "crr": (_crr, REPRO + "crr.py (commit 31f44c0f, 1.x API; no 2.x version found): "
                  "lr 1e-4, batch 128, exp weights; rest CRRConfig defaults"),
    "sac_offline": (_sac, REPRO + "sac.py (commit 80780a0c)"),
    "dt": (_dt, REPRO + "decision_transformer.py (2.x version): context 20, 3 layers, 1 head, embedding 128, "
                "AdamW wd 1e-4, warm-up 10000, grad clip 0.25 (the paper's), rewards x 0.001; evaluated with "
                "as_stateful_wrapper at offrl dt's default target, the data's highest episode return"),
}


# ---------------------------------------------------------------------------------------------
# Job
# ---------------------------------------------------------------------------------------------


def read_job(path: str) -> dict:
    try:
        job = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read the job file {path}: {exc}")
    need = ("algo", "dataset_file", "env_id", "steps", "seeds", "episodes", "ref_min_score",
            "ref_max_score")
    missing = [k for k in need if k not in job]
    if missing:
        fail(f"job {path} lacks {missing}")
    job["algo"] = str(job["algo"]).replace("-", "_")
    if job["algo"] not in CONFIGS:
        fail(f"algorithm {job['algo']!r} is not supported by the d3rlpy runner; supported: "
             f"{', '.join(CONFIGS)}")
    if str(job["env_id"]).startswith("offrl/"):
        fail(f"env {job['env_id']!r} needs offrl's env registration, which the d3rlpy venv lacks; "
             "maze datasets are not supported by this peer")
    if job["ref_min_score"] is None or job["ref_max_score"] is None:
        fail(f"dataset {job.get('dataset')!r} has no reference scores; normalised scores need both")
    if int(job["steps"]) < 1 or int(job["episodes"]) < 1 or not job["seeds"]:
        fail(f"need steps >= 1, episodes >= 1 and at least one seed, got {job['steps']}, "
             f"{job['episodes']}, {job['seeds']}")
    return job


def steps_per_epoch(steps: int) -> int:
    """min(steps, 10000), lowered to a divisor of steps (fit runs floor(steps / per_epoch) epochs)."""
    n = min(steps, STEPS_PER_EPOCH)
    while steps % n:
        n -= 1
    return n


def make_env(job: dict):
    import gymnasium

    try:
        env = gymnasium.make(job["env_id"], **(job.get("env_kwargs") or {}))
    except Exception as exc:  # unknown id, missing MuJoCo, bad kwargs
        fail(f"cannot make env {job['env_id']!r} with kwargs {job.get('env_kwargs')}: "
             f"{type(exc).__name__}: {exc}")
    if not isinstance(env.action_space, gymnasium.spaces.Box):
        fail(f"env {job['env_id']!r} has action space {env.action_space}; the d3rlpy runner "
             "supports continuous (Box) actions only")
    return env


# ---------------------------------------------------------------------------------------------
# Train and evaluate
# ---------------------------------------------------------------------------------------------


def evaluate(algo, env, episodes: int, target_return: float | None = None) -> tuple[list[float], list[int], float | None]:
    """Deterministic episodes; a transformer algorithm (``target_return`` given) acts through its stateful
    wrapper, which keeps the context and the return still to go."""
    low, high = env.action_space.low, env.action_space.high
    returns, lengths, successes, reports = [], [], [], False
    wrapper = None if target_return is None else algo.as_stateful_wrapper(target_return=target_return)
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        total, length, success, done, reward = 0.0, 0, False, False, 0.0
        if wrapper is not None:
            wrapper.reset()
        while not done:
            x = np.asarray(obs, dtype=np.float32)
            action = algo.predict(x.reshape(1, -1))[0] if wrapper is None else wrapper.predict(x, float(reward))
            obs, reward, terminated, truncated, info = env.step(np.clip(action, low, high))
            total += float(reward)
            length += 1
            for key in ("success", "is_success"):
                if key in info:
                    reports = True
                    success |= bool(info[key])
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
        successes.append(success)
    return returns, lengths, (float(np.mean(successes)) if reports else None)


def with_overrides(config, overrides: dict):
    """The config with the job's ``overrides`` (``offrl bench --peer-set``) applied; unknown fields fail."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        fail(f"--peer-set: {type(config).__name__} has no field {', '.join(unknown)}; its fields: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides)


def progress(seed: int, steps: int, start: float):
    """An epoch callback for ``fit``: one line per epoch with the updates done, their rate and the ETA."""
    def callback(algo, epoch: int, total_step: int) -> None:
        rate = total_step / max(time.perf_counter() - start, 1e-9)
        print(f"seed {seed}: {total_step}/{steps} updates, {rate:.1f} updates/s, "
              f"ETA {(steps - total_step) / rate:.0f}s", flush=True)
    return callback


def config_record(algo) -> dict:
    """The algorithm's full d3rlpy config (after fit: fitted scalers included)."""
    try:
        return json.loads(algo.config.serialize())
    except Exception as exc:  # serialisation of an unfitted numpy field, etc.
        return {"unserialisable": f"{type(exc).__name__}: {exc}"}


def run(job: dict, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    # cpu:0 unless OFFRL_PEER_DEVICE names another torch device (cuda:0 on a GPU machine: benchmarks/gpu/rows.sh)
    device = os.environ.get("OFFRL_PEER_DEVICE", "cpu:0")
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)
    import d3rlpy
    from d3rlpy.logging import NoopAdapterFactory
    from d3rlpy_mdp import read_hdf5, to_mdp_dataset

    env = make_env(job)
    low, high = env.action_space.low, env.action_space.high
    t0 = time.perf_counter()
    try:
        arrays = read_hdf5(job["dataset_file"])
    except OSError as exc:
        fail(f"cannot read {job['dataset_file']}: {exc}")
    dataset, info = to_mdp_dataset(arrays, source=job["dataset_file"])
    if (info["obs_dim"],) != env.observation_space.shape or (info["act_dim"],) != low.shape:
        fail(f"dataset obs/act dims ({info['obs_dim']}, {info['act_dim']}) do not match env "
             f"{job['env_id']} {env.observation_space.shape} / {low.shape}")
    print(f"d3rlpy {d3rlpy.__version__} torch {torch.__version__} threads "
          f"{torch.get_num_threads()}; dataset {info} built in {time.perf_counter() - t0:.1f}s")

    steps, per_epoch = int(job["steps"]), steps_per_epoch(int(job["steps"]))
    unit = bool(np.all(low == -1.0) and np.all(high == 1.0))
    ctx = {"steps": steps, "dataset": str(job.get("dataset", "")), "env_id": job["env_id"],
           "action_scaler": {} if unit else {"action_scaler": d3rlpy.preprocessing.MinMaxActionScaler(
               minimum=low.astype(np.float64), maximum=high.astype(np.float64))}}
    builder, source = CONFIGS[job["algo"]]
    transformer = job["algo"] == "dt"
    target_return = None
    if transformer:  # offrl dt's default: the highest episode return in the data
        target_return = float(job.get("target_return") or max(ep.compute_return() for ep in dataset.episodes))
        print(f"target return {target_return:.1f}")

    per_seed, returns, lengths, success, timing, full_config = [], [], [], [], [], None
    ref_min, ref_max = float(job["ref_min_score"]), float(job["ref_max_score"])
    for seed in job["seeds"]:
        d3rlpy.seed(int(seed))
        overrides = dict(job.get("overrides") or {})
        if transformer and "warmup_steps" in overrides:
            ctx["warmup_steps"] = int(overrides.pop("warmup_steps"))
        algo = with_overrides(builder(d3rlpy, ctx), overrides).create(device=device)
        scaler = algo.config.reward_scaler
        if isinstance(scaler, d3rlpy.preprocessing.ReturnBasedRewardScaler):
            scaler.fit_with_transition_picker(dataset.episodes, dataset.transition_picker)
            if not scaler.return_max > scaler.return_min:
                fail("the return-based reward scaler needs episodes with different returns; "
                     f"all {info['episodes']} episodes return {scaler.return_max}")
        t1 = time.perf_counter()
        report = progress(seed, steps, t1)
        if transformer:  # its fit takes a per-update callback instead of a per-epoch one
            hooks = {"callback": lambda a, e, n: report(a, e, n) if n % per_epoch == 0 else None}
        else:
            hooks = {"epoch_callback": report}
        algo.fit(dataset, n_steps=steps, n_steps_per_epoch=per_epoch,
                 experiment_name=f"{job['algo']}_seed{seed}", with_timestamp=False,
                 logger_adapter=NoopAdapterFactory(), show_progress=False, save_interval=10**9, **hooks)
        t2 = time.perf_counter()
        if algo.grad_step != steps:
            fail(f"d3rlpy ran {algo.grad_step} updates, expected {steps}")
        r, lens, succ = evaluate(algo, env, int(job["episodes"]), target_return if transformer else None)
        t3 = time.perf_counter()
        score = 100.0 * (float(np.mean(r)) - ref_min) / (ref_max - ref_min)
        per_seed.append(score)
        returns.append(r)
        lengths.append(lens)
        success.append(succ)
        timing.append({"seed": int(seed), "train_s": round(t2 - t1, 2), "eval_s": round(t3 - t2, 2)})
        full_config = full_config or config_record(algo)
        print(f"seed {seed}: score {score:.1f}, returns {[round(x, 1) for x in r]}, "
              f"train {t2 - t1:.1f}s ({steps / (t2 - t1):.0f} updates/s), eval {t3 - t2:.1f}s")
    env.close()

    return {
        "per_seed": per_seed,
        "returns": returns,
        "lengths": lengths,
        "success_rate": None if success[0] is None else float(np.mean(success)),
        "library_version": d3rlpy.__version__,
        "config": {
            "algo": job["algo"],
            "d3rlpy_class": type(algo.config).__name__,
            "source": source,
            "overrides": job.get("overrides") or {},
            "action_scaler": "none (env actions in [-1, 1])" if unit else
                             f"MinMaxActionScaler from env bounds {low.tolist()}..{high.tolist()}",
            "n_steps": steps,
            "n_steps_per_epoch": per_epoch,
            "device": device,
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "eval": "deterministic predict, reset seeds 0..episodes-1, actions clipped to bounds"
                    + (f"; stateful wrapper, target return {target_return:.1f}" if transformer else ""),
            "d3rlpy_config": full_config,
        },
        "dataset": info,
        "timing": timing,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--job", required=True, metavar="JOB.json", help="job written by offrl bench")
    p.add_argument("--out", required=True, metavar="RESULT.json", help="where to write the result")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the job's \"threads\", which offrl bench --peer-threads sets; else 1)")
    args = p.parse_args(argv)
    job = read_job(args.job)
    threads = args.threads if args.threads is not None else int(job.get("threads", 1))
    if threads < 1:
        p.error("--threads must be >= 1")
    with contextlib.redirect_stdout(sys.stderr):  # d3rlpy logs to stdout; keep it for the summary
        result = run(job, threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}: per_seed {result['per_seed']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
