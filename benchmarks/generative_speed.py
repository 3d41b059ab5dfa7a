"""Speed of the diffusion and flow algorithms on one CPU core: training updates/s and evaluation actions/s.

    python benchmarks/generative_speed.py --out benchmarks/results/generative-speed-cpu-DATE.md
    python benchmarks/generative_speed.py --algos fql --updates 100 --envs 10   # a quick look

Training is timed as ``benchmarks/speed.py`` times it (the algorithm's preprocessing and extras, the jitted
``make_train_chunk``: compiled first, one warm-up chunk, then whole timed chunks). Acting is the jitted
``act(config, state, observations, key, deterministic=False)`` of one seed on a batch of E observations, as
``offrl.evaluate`` steps E environments at once: compiled and called once first, then timed over repeated calls;
actions/s = E * calls / seconds. Rates are per second of this process's CPU time (single-threaded XLA, one
core), so that a machine shared with other jobs slows the wall clock but not the rate; wall-clock rates and
CPU/wall are in the .json. The data is ``speed.py``'s synthetic Hopper-sized set (obs 11, act 3).
XLA runs one thread and the process is pinned to one core (set before jax is imported).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (make_arrays, load_average, git_commit, cpu_model; imports no jax)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", default="iql,fql,idql,diffusion_ql,decision_diffuser")
    p.add_argument("--updates", type=int, default=300, help="timed updates per algorithm (whole chunks)")
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--size", type=int, default=100_000, help="transitions in the synthetic dataset")
    p.add_argument("--envs", default="1,10,100", help="comma list of observation batch sizes for act")
    p.add_argument("--act-seconds", type=float, default=3.0, help="time spent calling act per batch size (at least 3 calls)")
    p.add_argument("--core", type=int, default=None, help="the one core to pin to (default: the last allowed)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="config fields changed from the defaults, for every algorithm of the run (Python literals)")
    p.add_argument("--out", default=None, help="Markdown report (and .json of the same stem)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    core = args.core if args.core is not None else sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {core})
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    import offrl
    from offrl.algos import DataSpec, get_algo
    from offrl.data import Dataset, DatasetInfo, fit_transforms
    from offrl.train import device_data, init_agents, make_train_chunk

    arrays = speed.make_arrays(args.size, 0)
    dataset = Dataset.from_arrays(**arrays, info=DatasetInfo(name="synthetic-hopper-sized"))
    envs = [int(e) for e in args.envs.split(",")]
    rows = []
    load_start = speed.load_average()
    for name in args.algos.split(","):
        algo = get_algo(name)
        overrides = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
        config = algo.config_cls(**overrides)
        transforms = fit_transforms(dataset, algo.normalize_observations, algo.reward_scaling)
        data = device_data(algo, config, dataset, transforms)
        n_chunks = max(1, -(-args.updates // args.chunk))
        states, keys = init_agents(algo, config, DataSpec.from_dataset(dataset), 0, 1, (n_chunks + 1) * args.chunk)
        chunk = make_train_chunk(algo, config, args.chunk, 1)
        t0 = time.perf_counter()
        states, keys, _ = jax.block_until_ready(chunk(states, keys, data))  # compile + warm-up chunk
        compile_s = time.perf_counter() - t0
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n_chunks):
            states, keys, metrics = jax.block_until_ready(chunk(states, keys, data))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        row = {"algo": name, "set": args.set, "updates_per_s": n_chunks * args.chunk / cpu, "updates_per_wall_s": n_chunks * args.chunk / seconds,
               "train_cpu_per_wall": cpu / seconds, "train_compile_and_warmup_s": compile_s, "act": {}}
        state = jax.tree.map(lambda x: x[0], states)
        act = jax.jit(lambda s, o, k: algo.act(config, s, o, k, False))
        for e in envs:
            obs = transforms.normalize_obs(dataset.observations[:e])
            t0 = time.perf_counter()
            jax.block_until_ready(act(state, obs, jax.random.PRNGKey(0)))
            act_compile = time.perf_counter() - t0
            calls, c0, t0 = 0, time.process_time(), time.perf_counter()
            while calls < 3 or time.process_time() - c0 < args.act_seconds:
                jax.block_until_ready(act(state, obs, jax.random.PRNGKey(calls)))
                calls += 1
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            row["act"][e] = {"actions_per_s": e * calls / cpu, "ms_per_call": 1000 * cpu / calls, "actions_per_wall_s": e * calls / seconds,
                             "cpu_per_wall": cpu / seconds, "compile_s": act_compile}
            speed.say(f"{name}: {row['updates_per_s']:.1f} updates/CPU-s; act E={e}: {e * calls / cpu:,.0f} actions/CPU-s")
        rows.append(row)
    report = {"argv": sys.argv[1:], "commit": speed.git_commit(), "cpu": speed.cpu_model(), "core": core,
              "XLA_FLAGS": os.environ["XLA_FLAGS"], "jax": jax.__version__, "offrl": offrl.__version__,
              "load_average_start": load_start, "load_average_end": speed.load_average(), "size": args.size,
              "updates": args.updates, "chunk": args.chunk, "rows": rows}
    lines = ["| algorithm | updates/CPU-s | compile + warm-up s (wall) | " + " | ".join(f"actions/CPU-s (E={e}) | CPU ms/call (E={e})" for e in envs) + " |",
             "|---|---:|---:|" + "---:|---:|" * len(envs)]
    for r in rows:
        acts = " | ".join(f"{r['act'][e]['actions_per_s']:,.0f} | {r['act'][e]['ms_per_call']:.1f}" for e in envs)
        lines.append(f"| {r['algo']}{' ' + ' '.join(r['set']) if r['set'] else ''} | {r['updates_per_s']:.1f} | {r['train_compile_and_warmup_s']:.1f} | {acts} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
        out.write_text(f"<!-- raw numbers: {out.with_suffix('.json').name} -->\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
