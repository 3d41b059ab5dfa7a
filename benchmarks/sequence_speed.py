"""Updates per second of the return-conditioned algorithms (dt, rvs) on one CPU core, in offrl's compiled loop.

    python benchmarks/sequence_speed.py --out benchmarks/results/speed-sequence-cpu-DATE.md
    python benchmarks/sequence_speed.py --runs "dt:{}" "dt:{'embed_dim': 64}" --updates 20

Each run builds the chunk ``offrl.fit`` runs (``offrl.train.make_train_chunk``: windows sampled on the
device, ``lax.scan`` over ``--chunk`` updates) for one seed on a synthetic Hopper-sized dataset (11-dim
observations, 3-dim actions, 1000-step episodes whose transitions chain), compiles it (timed), runs one
warm-up chunk, then times ``ceil(updates / chunk)`` chunks. On a shared machine the process CPU time is
the number to read (single-threaded XLA: CPU seconds = the seconds one free core would take); the wall
time is recorded beside it. Also printed: the multiply-adds of one dt update's forward pass, counted from
the configuration (no profiler), so the measured time can be compared with the core's matmul speed.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import math
import os
import sys
import time
from pathlib import Path


def _dt_forward_macs(c: dict, obs_dim: int, act_dim: int) -> float:
    """Multiply-adds of one forward pass over a batch: embeddings, blocks (qkv, scores, mix, out, 4x MLP), head."""
    e, k, b, layers = c["embed_dim"], c["context_len"], c["batch_size"], c["num_layers"]
    n = 3 * k
    per_layer = n * (3 * e * e + e * e + 8 * e * e) + 2 * n * n * e
    return b * (k * (obs_dim + act_dim + 1) * e + layers * per_layer + k * e * act_dim)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="*", default=["dt:{}", "rvs:{}", "rvs:{'hidden_dims': (256, 256)}", "bc:{}"],
                   help="ALGO:{config overrides} per run")
    p.add_argument("--updates", type=int, default=40, help="timed updates per run")
    p.add_argument("--chunk", type=int, default=20, help="updates per compiled call")
    p.add_argument("--size", type=int, default=100_000, help="transitions in the dataset")
    p.add_argument("--out", default=None, help="Markdown report (and .json of the same stem)")
    args = p.parse_args()
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

    import jax
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_dataset

    from offrl.algos import DataSpec, get_algo
    from offrl.data import fit_transforms
    from offrl.train import device_data, init_agents, make_train_chunk

    dataset = make_dataset(n=args.size, obs_dim=11, act_dim=3, episode_len=1000, chained=True, name="hopper-like")
    rows = []
    for run in args.runs:
        name, _, overrides = run.partition(":")
        algo = get_algo(name)
        config = algo.config_cls(**ast.literal_eval(overrides or "{}"))
        transforms = fit_transforms(dataset, algo.normalize_observations, algo.reward_scaling)
        data = device_data(algo, config, dataset, transforms)
        states, keys = init_agents(algo, config, DataSpec.from_dataset(dataset), 0, 1, 10 ** 6)
        chunk = make_train_chunk(algo, config, args.chunk, 1)
        t0, c0 = time.perf_counter(), time.process_time()
        states, keys, _ = jax.block_until_ready(chunk(states, keys, data))  # compile + first chunk
        compile_wall, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
        calls = math.ceil(args.updates / args.chunk)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            states, keys, _ = chunk(states, keys, data)
        jax.block_until_ready(states)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = calls * args.chunk
        row = {"run": run, "updates": n, "cpu_s": cpu, "wall_s": wall, "updates_per_cpu_s": n / cpu,
               "updates_per_wall_s": n / wall, "compile_and_first_chunk_cpu_s": compile_cpu,
               "compile_and_first_chunk_wall_s": compile_wall}
        if name == "dt":
            import dataclasses

            row["forward_gmacs"] = _dt_forward_macs(dataclasses.asdict(config), 11, 3) / 1e9
        rows.append(row)
        print(json.dumps(row), flush=True)

    if args.out:
        out = Path(args.out)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [f"# dt and rvs updates per second on one CPU core ({stamp})", "",
                 f"`python benchmarks/sequence_speed.py --updates {args.updates} --chunk {args.chunk} --size {args.size}` "
                 f"(jax {jax.__version__}, XLA single-threaded). Synthetic Hopper-sized data (11-dim observations, 3-dim "
                 "actions, 1000-step episodes). The machine was shared with other jobs: read the CPU columns "
                 "(one free core), not the wall ones.", "",
                 "| run | updates | updates / CPU s | CPU ms / update | updates / wall s | compile + first chunk (CPU s) |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| `{r['run']}` | {r['updates']} | {r['updates_per_cpu_s']:.2f} | {1000 * r['cpu_s'] / r['updates']:.1f} | "
                         f"{r['updates_per_wall_s']:.2f} | {r['compile_and_first_chunk_cpu_s']:.1f} |")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
