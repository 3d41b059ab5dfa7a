"""Throughput of a population (values x seeds in one process) against separate runs on the same cores.

    python benchmarks/population_speed.py --steps 2000 --out benchmarks/results/population-cpu-DATE.md

Three measurements, one after another, each with one XLA thread per core:

1. a single IQL run (one agent) pinned to one core: its updates/s, the baseline of the same conditions;
2. the population: 4 values of beta x 4 seeds = 16 agents in one process and one compiled program,
   spread over the cores as local devices (``JAX_NUM_CPU_DEVICES=cores``, seed strategy ``map``);
3. the same 16 agents as 16 separate processes (one agent each), ``cores`` at a time, each pinned to its core.

Reported: wall time of each from process start to exit (imports, dataset, compiles included), the
steady updates/s (chunks after the first, which holds the compile), and per core the population's
agent-updates/s against the single run's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

BETAS = (1.0, 3.0, 10.0, 30.0)
SEEDS = 4
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def worker(args) -> None:
    from offrl import logger as run_logger
    from offrl.algos import iql
    from offrl.logger import read_jsonl
    from offrl.train import fit

    log = run_logger.RunLogger.log
    # every train row also records the process's CPU seconds: on a shared machine CPU time, not wall time,
    # measures what a program costs
    run_logger.RunLogger.log = lambda self, kind, row: log(self, kind, {**row, "cpu_s": time.process_time()})

    population = {"beta": list(BETAS)} if args.worker == "population" else None
    config = iql.Config(beta=args.beta)
    result = fit(config, args.dataset, steps=args.steps, chunk=args.chunk, seeds=SEEDS if population else 1,
                 seed=args.seed, eval_episodes=0, progress=False, plot=False, run_dir=args.run_dir, population=population,
                 seed_strategy="map")
    rows = read_jsonl(Path(result.run_dir) / "train.jsonl")
    steady = [r["updates_per_s"] for r in rows[1:]]
    agents = (len(BETAS) * SEEDS) if population else 1
    updates = (rows[-1]["step"] - rows[0]["step"]) * agents  # agent-updates after the first chunk (which compiles)
    Path(args.run_dir, "timing.json").write_text(json.dumps({
        "steady_updates_per_s": sum(steady) / len(steady),  # wall: per agent
        "steady_agent_updates_per_cpu_s": updates / (rows[-1]["cpu_s"] - rows[0]["cpu_s"]),
        "process_cpu_s": time.process_time()}))


def run(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=500)
    p.add_argument("--dataset", default="pendulum-mixed")
    p.add_argument("--out", default=None)
    p.add_argument("--work", default="/tmp/offrl-population-speed")
    p.add_argument("--worker", choices=("single", "population"))
    p.add_argument("--beta", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir")
    args = p.parse_args()
    if args.worker:
        return worker(args)

    cores = sorted(os.sched_getaffinity(0))
    work = Path(args.work)
    env = {**os.environ, "XLA_FLAGS": XLA_ONE_THREAD}
    base = [sys.executable, __file__, "--steps", str(args.steps), "--chunk", str(args.chunk), "--dataset", args.dataset]
    load_start = os.getloadavg()
    out = {"cores": cores, "steps": args.steps, "chunk": args.chunk, "dataset": args.dataset, "betas": BETAS, "seeds": SEEDS}

    def timed(procs):
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(err)

    def cpu() -> float:  # CPU seconds of the finished child processes (a shared machine: wall time flatters no one)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    # 1. the single run, alone, pinned to the last core
    c0, t0 = cpu(), time.perf_counter()
    timed([run(["taskset", "-c", str(cores[-1]), *base, "--worker", "single", "--run-dir", str(work / "single")], env)])
    out["single_wall_s"], out["single_cpu_s"] = time.perf_counter() - t0, cpu() - c0
    single = json.loads((work / "single" / "timing.json").read_text())
    out["single_updates_per_s"] = single["steady_updates_per_s"]
    out["single_updates_per_cpu_s"] = single["steady_agent_updates_per_cpu_s"]

    # 2. the population: 16 agents in one process, the cores as devices
    c0, t0 = cpu(), time.perf_counter()
    penv = {**env, "JAX_NUM_CPU_DEVICES": str(len(cores))}
    timed([run(["taskset", "-c", ",".join(map(str, cores)), *base, "--worker", "population", "--run-dir",
                str(work / "population")], penv)])
    out["population_wall_s"], out["population_cpu_s"] = time.perf_counter() - t0, cpu() - c0
    pop = json.loads((work / "population" / "timing.json").read_text())
    per_agent = pop["steady_updates_per_s"]
    out["population_agent_updates_per_cpu_s"] = pop["steady_agent_updates_per_cpu_s"]
    out["population_updates_per_s_per_agent"] = per_agent
    out["population_agent_updates_per_s"] = per_agent * len(BETAS) * SEEDS

    # 3. 16 separate processes, one per core at a time
    c0, t0 = cpu(), time.perf_counter()
    jobs = [(b, s) for b in BETAS for s in range(SEEDS)]
    running: dict = {}
    free = list(cores)
    separate_ups = []
    while jobs or running:
        while jobs and free:
            (beta, seed), core = jobs.pop(0), free.pop(0)
            folder = work / f"separate-{beta:g}-{seed}"
            cmd = ["taskset", "-c", str(core), *base, "--worker", "single", "--beta", str(beta), "--seed", str(seed),
                   "--run-dir", str(folder)]
            running[run(cmd, env)] = (core, folder)
        time.sleep(0.1)
        for proc in [q for q in running if q.poll() is not None]:
            core, folder = running.pop(proc)
            if proc.returncode:
                raise SystemExit(proc.stderr.read())
            free.append(core)
            separate_ups.append(json.loads((folder / "timing.json").read_text())["steady_agent_updates_per_cpu_s"])
    out["separate_wall_s"], out["separate_cpu_s"] = time.perf_counter() - t0, cpu() - c0
    out["separate_updates_per_cpu_s_mean"] = sum(separate_ups) / len(separate_ups)
    out["load_average_start"], out["load_average_end"] = load_start, os.getloadavg()
    out["population_per_core_vs_single"] = out["population_agent_updates_per_s"] / len(cores) / out["single_updates_per_s"]
    out["population_per_cpu_s_vs_single"] = out["population_agent_updates_per_cpu_s"] / out["single_updates_per_cpu_s"]
    out["cpu_ratio_population_vs_separate"] = out["population_cpu_s"] / out["separate_cpu_s"]
    out["wall_ratio_population_vs_separate"] = out["population_wall_s"] / out["separate_wall_s"]
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
