"""Speed benchmark: offrl's compiled training loop against d3rlpy, on the same synthetic data.

    python benchmarks/speed.py                                   # the reference run (long)
    python benchmarks/speed.py --algos iql --seeds 1 --updates 200 --size 20000 --peer none

What is timed on the offrl side is exactly what ``offrl.fit`` runs between its chunk
boundaries: the algorithm's registered preprocessing (``fit_transforms``), the transformed
dataset on the device with the algorithm's extras (``offrl.train.device_data``), agents from ``offrl.train.init_agents`` and the jitted
``offrl.train.make_train_chunk(algo, config, chunk, seeds)`` (``lax.scan`` over ``chunk``
updates, ``vmap`` over seeds, batches sampled on the device). The chunk is compiled first
(timed as the compile time), one warm-up chunk runs, then ``ceil(updates / chunk)`` chunks are
timed with ``jax.block_until_ready``.

The data is a synthetic Hopper-sized dataset (11-dim observations, 3-dim actions in [-1, 1],
1000-step episodes ending in timeouts) built with numpy from a fixed seed, validated by
``Dataset.from_arrays`` and written with ``Dataset.save_npz`` to a temporary folder, from which
the peer script (``benchmarks/peer_d3rlpy_speed.py``, run with ``.venv-d3rlpy``'s python after
the offrl timings, never concurrently) reads the same arrays.

Threads: XLA's CPU flags must be set before jax is imported, so arguments are parsed first and
jax is imported afterwards. ``--threads 1`` (the default) matches the peer's
``torch.set_num_threads(1)``. The measured process CPU time / wall time of each timed section
is recorded as evidence of how many cores were really used.

Writes a Markdown report to ``--out`` and the raw numbers to the ``.json`` of the same stem.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PEER_SCRIPT = REPO / "benchmarks" / "peer_d3rlpy_speed.py"
PEER_PYTHON = REPO / ".venv-d3rlpy" / "bin" / "python"
PEER_ALGOS = ("iql", "td3bc", "cql")  # what peer_d3rlpy_speed.py implements
DISPLAY = {"bc": "BC", "td3bc": "TD3+BC", "iql": "IQL", "cql": "CQL", "percent_bc": "%BC", "awr": "AWR",
           "awac": "AWAC", "crr": "CRR", "sac_offline": "SAC (offline)", "brac_p": "BRAC-p", "brac_v": "BRAC-v",
           "bcq": "BCQ", "bear": "BEAR", "calql": "Cal-QL"}
OBS_DIM, ACT_DIM, EPISODE_LEN = 11, 3, 1000  # Hopper
TARGET_IQL_VS_PEER = 2.5
TARGET_SEED_SCALING = 0.85
REFERENCE = dict(updates=3000, size=1_000_000, peer_updates=1000)
_GFLOP = {}  # (algo, --set, obs_dim, act_dim) -> update_gflop's answer: one compile per algorithm, not per row

PEER_VENV_HOWTO = """\
  python3 -m venv .venv-d3rlpy
  .venv-d3rlpy/bin/pip install "torch==2.13.0+cpu"
  .venv-d3rlpy/bin/pip install "d3rlpy==2.8.1"
(see benchmarks/README.md, "The d3rlpy environment")"""


# ---------------------------------------------------------------------------------------------
# Arguments and XLA threading (before jax is imported)
# ---------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Updates/s of offrl's compiled training loop (and d3rlpy's) on a synthetic "
                    "Hopper-sized dataset.")
    p.add_argument("--algos", default="bc,td3bc,iql", help="comma list of offrl algorithms")
    p.add_argument("--seeds", type=_int_list, default=[1, 8],
                   help="comma list: agents trained at once per measurement")
    p.add_argument("--seed-strategies", default="vmap,map",
                   help="comma list: how several seeds share one compiled call (vmap: batched; map: one "
                        "after another through the one-seed program); each is timed for every seeds value > 1")
    p.add_argument("--updates", type=int, default=REFERENCE["updates"],
                   help="timed updates per seed (rounded up to whole chunks)")
    p.add_argument("--chunk", type=int, default=1000, help="updates per compiled call (lax.scan)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="config fields of offrl's algorithms to change (as `offrl bench --set`), e.g. "
                        "bc_steps=0 target_action_gap=10 for CQL as the peer runs it")
    p.add_argument("--size", type=int, default=REFERENCE["size"], help="transitions in the dataset")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--peer", choices=["d3rlpy", "none"], default="d3rlpy",
                   help="peer library to time after offrl (none: skip)")
    p.add_argument("--peer-updates", type=int, default=REFERENCE["peer_updates"],
                   help="timed peer updates per algorithm")
    p.add_argument("--peer-python", default=str(PEER_PYTHON),
                   help="python of the peer venv (default: .venv-d3rlpy/bin/python)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for XLA and for the peer's torch (default 1: same budget)")
    p.add_argument("--cpu-devices", type=int, default=1,
                   help="JAX CPU devices (JAX_NUM_CPU_DEVICES); with more than one, the map strategy "
                        "trains seed i on device i mod N (Eigen's own threading off; default 1)")
    p.add_argument("--platform", default="cpu",
                   help="JAX_PLATFORMS for offrl (default cpu, like the peer); 'default' keeps jax's choice")
    p.add_argument("--out", default=None,
                   help="Markdown report (default benchmarks/results/speed-YYYYMMDD.md); "
                        "raw JSON beside it")
    args = p.parse_args(argv)
    if args.updates < 1 or args.chunk < 1 or args.peer_updates < 1:
        p.error("--updates, --chunk and --peer-updates must be >= 1")
    if args.threads < 1 or args.cpu_devices < 1:
        p.error("--threads and --cpu-devices must be >= 1")
    if args.size < 2 * EPISODE_LEN:
        p.error(f"--size must be >= {2 * EPISODE_LEN} (two {EPISODE_LEN}-step episodes; IQL's "
                "reward scaling needs episodes with different returns)")
    # Registered names keep their underscores (sac_offline, brac_p); "TD3+BC" / "td3-bc" spell td3bc.
    args.algos = [a.strip().lower().replace("+", "").replace("-", "_").replace("td3_bc", "td3bc")
                  for a in args.algos.split(",") if a.strip()]
    if not args.algos:
        p.error("--algos is empty")
    args.seeds = sorted(set(args.seeds))
    args.seed_strategies = [st.strip() for st in args.seed_strategies.split(",") if st.strip()]
    if not set(args.seed_strategies) <= {"vmap", "map"} or not args.seed_strategies:
        p.error("--seed-strategies takes vmap and/or map")
    if args.out is None:
        args.out = str(REPO / "benchmarks" / "results" / f"speed-{_dt.date.today():%Y%m%d}.md")
    return args


def xla_flags_for(threads: int, cpu_devices: int = 1) -> str:
    if threads == 1 or cpu_devices >= threads:  # one thread per device
        return "--xla_cpu_multi_thread_eigen=false"
    return "--xla_cpu_multi_thread_eigen=true"


def set_threading_env(args: argparse.Namespace) -> dict:
    """Limit this process (and the peer subprocess, which inherits it) to ``threads`` cores.

    XLA's CPU flags alone did not keep it on one core here (CPU/wall time 1.86 with them), so the
    process is pinned with ``sched_setaffinity``: both libraries then get the same cores.
    """
    if "jax" in sys.modules:
        raise RuntimeError("jax was imported before XLA_FLAGS was set")
    allowed = sorted(os.sched_getaffinity(0))
    if args.threads > len(allowed):
        raise SystemExit(f"--threads {args.threads} but only {len(allowed)} cores are available")
    os.sched_setaffinity(0, set(allowed[: args.threads]))
    previous = os.environ.get("XLA_FLAGS", "")
    ours = xla_flags_for(args.threads, args.cpu_devices)
    os.environ["XLA_FLAGS"] = f"{previous} {ours}".strip()
    os.environ["JAX_NUM_CPU_DEVICES"] = str(args.cpu_devices)
    if args.platform != "default":
        os.environ["JAX_PLATFORMS"] = args.platform
    return {"threads": args.threads, "cpu_affinity": sorted(os.sched_getaffinity(0)), "XLA_FLAGS": os.environ["XLA_FLAGS"],
            "XLA_FLAGS_inherited": previous or None,
            "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"),
            "peer_torch_threads": args.threads, "cpu_devices": args.cpu_devices}


# ---------------------------------------------------------------------------------------------
# Progress (stderr)
# ---------------------------------------------------------------------------------------------

try:
    from rich.console import Console

    _console = Console(stderr=True, highlight=False, soft_wrap=True)

    def say(msg: str) -> None:
        _console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")
except ImportError:  # pragma: no cover - rich is an offrl dependency
    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def make_arrays(n: int, seed: int, episode_len: int = EPISODE_LEN) -> dict[str, np.ndarray]:
    """Synthetic Hopper-sized transitions: random-walk states inside episodes, timeouts at ends.

    ``next_observations[t] == observations[t + 1]`` inside an episode (what d3rlpy assumes);
    terminals are all 0; the last transition of every episode is a timeout.
    """
    rng = np.random.default_rng(seed)
    n_ep = -(-n // episode_len)
    states = rng.normal(0.0, 0.1, size=(n_ep, episode_len + 1, OBS_DIM)).astype(np.float32)
    states[:, 0] = rng.normal(0.0, 1.0, size=(n_ep, OBS_DIM))
    np.cumsum(states, axis=1, out=states)
    observations = states[:, :-1].reshape(-1, OBS_DIM)[:n]
    next_observations = states[:, 1:].reshape(-1, OBS_DIM)[:n]
    actions = np.tanh(rng.normal(0.0, 1.0, size=(n, ACT_DIM))).astype(np.float32)
    rewards = rng.normal(1.0, 0.5, size=n).astype(np.float32)
    terminals = np.zeros(n, np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[episode_len - 1::episode_len] = 1.0
    timeouts[-1] = 1.0
    return dict(observations=np.ascontiguousarray(observations), actions=actions,
                rewards=rewards, next_observations=np.ascontiguousarray(next_observations),
                terminals=terminals, timeouts=timeouts)


# ---------------------------------------------------------------------------------------------
# Machine, versions, git
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> str | None:
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        # Dirty = tracked changes or untracked files, except earlier benchmark results.
        dirty = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def peer_versions(peer_python: Path) -> dict:
    """torch/d3rlpy versions of the peer venv, from package metadata (no torch import)."""
    code = ("import json; from importlib.metadata import version as v\n"
            "out = {}\n"
            "for p in ('torch', 'd3rlpy'):\n"
            "    try: out[p] = v(p)\n"
            "    except Exception: out[p] = None\n"
            "print(json.dumps(out))")
    try:
        done = subprocess.run([str(peer_python), "-c", code], capture_output=True, text=True,
                              timeout=60, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {"torch": None, "d3rlpy": None}


# ---------------------------------------------------------------------------------------------
# offrl side
# ---------------------------------------------------------------------------------------------


def update_gflop(algo, config, data, spec) -> tuple[float | None, bool]:
    """Floating-point operations of one update of one agent, in GFLOP, as XLA counts them, and
    whether that count is an upper bound.

    The one-update, one-seed training chunk is compiled and XLA's cost analysis read: it counts the
    loop body once, the batch sampling included (a few gathers), and a conditional at the cost of
    its largest branch (TD3+BC's delayed actor step then counts on every update): when the compiled
    program holds a conditional the count is flagged as an upper bound. None when the backend
    reports no count.
    """
    from offrl.train import init_agents, make_train_chunk

    states, keys = init_agents(algo, config, spec, seed=0, seeds=1, total_steps=1)
    compiled = make_train_chunk(algo, config, 1, 1).lower(states, keys, data).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    upper_bound = " conditional(" in compiled.as_text()
    return (float(flops) / 1e9 if flops and flops > 0 else None), upper_bound


def matmul_gflops(seconds: float = 1.0) -> dict:
    """The arithmetic limit to compare against: float32 dense matmul GFLOP/s on this process's threads.

    A jitted chain x <- tanh(x @ W) (``fori_loop``, the repetitions a traced argument: one compile)
    at the networks' layer shape (256 x 256 x 256) and at a large one (2048^3), each timed after a
    warm-up call, repetitions sized to about ``seconds``; ``peak`` is the faster of the two.
    """
    import jax
    import jax.numpy as jnp

    out = {}
    for m in (256, 2048):
        x, w = jnp.full((m, m), 1e-3, jnp.float32), jnp.full((m, m), 1e-3, jnp.float32)
        run = jax.jit(lambda x, w, reps: jax.lax.fori_loop(0, reps, lambda i, y: jnp.tanh(y @ w), x))
        jax.block_until_ready(run(x, w, 2))  # compile
        t0 = time.perf_counter()
        jax.block_until_ready(run(x, w, 2))
        per_rep = max((time.perf_counter() - t0) / 2, 1e-7)
        reps = max(2, int(seconds / per_rep))
        t0 = time.perf_counter()
        jax.block_until_ready(run(x, w, reps))
        out[f"{m}x{m}x{m}"] = 2 * m**3 * reps / (time.perf_counter() - t0) / 1e9
    out["peak"] = max(out.values())
    return out


def bench_offrl(algo_name: str, dataset, seeds: int, updates: int, chunk: int, strategy: str = "vmap",
                overrides: tuple[str, ...] = ()) -> dict:
    import jax

    from offrl.algos import DataSpec, get_algo
    from offrl.data import fit_transforms
    from offrl.train import device_data, init_agents, make_train_chunk, replicate_data

    from offrl.bench import algo_config

    algo = get_algo(algo_name)
    config = algo_config(algo_name, overrides)  # the defaults, with --set FIELD=VALUE applied
    chunk = min(chunk, updates)
    n_chunks = math.ceil(updates / chunk)
    timed_updates = n_chunks * chunk
    total_steps = timed_updates + chunk  # warm-up chunk + timed chunks (LR schedules)

    if algo.prepare_dataset is not None:  # e.g. %BC keeps its top episodes, as offrl.fit does
        dataset = algo.prepare_dataset(config, dataset)
    transforms = fit_transforms(dataset, normalize_observations=algo.normalize_observations,
                                reward_scaling=algo.reward_scaling)
    data = device_data(algo, config, dataset, transforms)  # with the algorithm's extras (AWR's returns)
    spec = DataSpec(obs_dim=dataset.obs_dim, action_dim=dataset.act_dim)
    states, keys = init_agents(algo, config, spec, seed=0, seeds=seeds, total_steps=total_steps)
    # map over several CPU devices: a copy of the data per device, as offrl.fit makes
    run_data = replicate_data(data) if strategy == "map" and seeds > 1 else data
    jax.block_until_ready((states, keys, data))

    train_chunk = make_train_chunk(algo, config, chunk, seeds, strategy)
    t0 = time.perf_counter()
    if hasattr(train_chunk, "lower"):
        compiled = train_chunk.lower(states, keys, run_data).compile()
    else:  # map: a Python loop over the jitted one-seed program, which compiles on its first call
        compiled = train_chunk
        jax.block_until_ready(compiled(states, keys, run_data))
    compile_s = time.perf_counter() - t0  # under map, with one chunk's run

    t0 = time.perf_counter()
    states, keys, metrics = jax.block_until_ready(compiled(states, keys, run_data))
    warmup_s = time.perf_counter() - t0

    chunk_s = []
    load_before = load_average()
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n_chunks):
        a = time.perf_counter()
        states, keys, metrics = jax.block_until_ready(compiled(states, keys, run_data))
        chunk_s.append(time.perf_counter() - a)
        say(f"  offrl {algo_name} seeds={seeds}: chunk {i + 1}/{n_chunks} "
            f"{chunk * seeds / chunk_s[-1]:,.0f} updates/s total")
    elapsed = time.perf_counter() - t0
    cpu_s = time.process_time() - c0

    metrics = jax.device_get(metrics)
    finite = {k: bool(np.isfinite(np.asarray(v, np.float64)).any()
                      and not np.isinf(np.asarray(v, np.float64)).any()) for k, v in metrics.items()}
    per_seed = timed_updates / elapsed
    gflop_key = (algo_name, tuple(overrides), spec.obs_dim, spec.action_dim)
    if gflop_key not in _GFLOP:  # the same for every seed count and strategy
        _GFLOP[gflop_key] = update_gflop(algo, config, data, spec)
    gflop, gflop_upper_bound = _GFLOP[gflop_key]
    return {
        "library": "offrl", "algo": algo_name, "seeds": seeds, "strategy": strategy if seeds > 1 else "-",
        "updates_per_s_per_seed": per_seed, "updates_per_s_total": per_seed * seeds,
        "timed_updates_per_seed": timed_updates, "chunk": chunk, "chunks": n_chunks,
        "gflop_per_update": gflop, "gflops": None if gflop is None else gflop * per_seed * seeds,
        "gflop_upper_bound": gflop_upper_bound,
        "seconds": elapsed, "chunk_seconds": chunk_s, "compile_s": compile_s,
        "warmup_chunk_s": warmup_s, "cpu_s": cpu_s, "cpu_per_wall": cpu_s / elapsed,
        "load_average_before": load_before, "load_average_after": load_average(),
        "batch_size": config.batch_size, "hidden_dims": list(config.hidden_dims), "set": list(overrides),
        "normalize_observations": algo.normalize_observations,
        "reward_scaling": algo.reward_scaling, "metrics_finite": finite,
        "last_metrics": {k: float(np.nanmean(np.asarray(v, np.float64))) for k, v in metrics.items()},
    }


# ---------------------------------------------------------------------------------------------
# Peer side
# ---------------------------------------------------------------------------------------------


def run_peer(args: argparse.Namespace, npz: Path, workdir: Path) -> tuple[list[dict], str | None]:
    """Run the d3rlpy script in its own venv; returns (rows, note)."""
    algos = [a for a in PEER_ALGOS if a in args.algos]
    if not algos:
        return [], f"no peer run: d3rlpy is timed for {', '.join(PEER_ALGOS)} only, none in --algos"
    python = Path(args.peer_python)
    if not python.exists():
        msg = (f"peer venv missing ({python}); d3rlpy rows skipped. Create it from the repo "
               f"root with:\n{PEER_VENV_HOWTO}")
        say(f"[yellow]{msg}")
        return [], f"d3rlpy rows skipped: {python} not found (create .venv-d3rlpy as in benchmarks/README.md)"
    out = workdir / "peer.json"
    cmd = [str(python), str(PEER_SCRIPT), "--data", str(npz), "--algos", ",".join(algos),
           "--updates", str(args.peer_updates), "--threads", str(args.threads), "--out", str(out)]
    say(f"peer: {shlex.join(cmd)}")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    t0 = time.perf_counter()
    load_before = load_average()
    before = os.times()
    # stdout is the peer's JSON (also in --out); its logs go to our stderr as they come.
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=None)
    after = os.times()
    wall = time.perf_counter() - t0
    if done.returncode != 0 or not out.exists():
        return [], f"d3rlpy run failed (exit {done.returncode}); see its stderr above"
    raw = json.loads(out.read_text())
    child_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    rows = []
    for name in algos:
        r = raw.get(name)
        if r is None:
            continue
        rows.append({
            "library": "d3rlpy", "algo": name, "seeds": 1,
            "updates_per_s_per_seed": r["updates_per_s"], "updates_per_s_total": r["updates_per_s"],
            "timed_updates_per_seed": r["updates"], "seconds": r["seconds"],
            "compile_s": None, "warmup_updates": r.get("warmup"),
            "batch_size": r.get("batch_size"), "torch_num_threads": r.get("torch_num_threads"),
            "sample_s": r.get("sample_s"), "update_s": r.get("update_s"),
            "linear_layers": r.get("linear_layers"), "last_loss": r.get("last_loss"),
            "d3rlpy": r.get("d3rlpy"), "torch": r.get("torch"),
            "load_average_before": load_before, "load_average_after": load_average(),
        })
    for row in rows:  # whole peer process (dataset build included), informative only
        row["peer_process_cpu_per_wall"] = child_cpu / wall if wall > 0 else None
    return rows, None


# ---------------------------------------------------------------------------------------------
# Ratios, report
# ---------------------------------------------------------------------------------------------


def _find(rows: list[dict], library: str, algo: str, seeds: int, strategy: str | None = None) -> dict | None:
    for r in rows:
        if (r["library"] == library and r["algo"] == algo and r["seeds"] == seeds
                and (strategy is None or r.get("strategy") == strategy)):
            return r
    return None


def compute_ratios(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    ratios = []
    for algo in PEER_ALGOS:
        if algo not in args.algos:
            continue
        ours, peer = _find(rows, "offrl", algo, 1), _find(rows, "d3rlpy", algo, 1)
        value = (ours["updates_per_s_per_seed"] / peer["updates_per_s_per_seed"]
                 if ours and peer else None)
        target = TARGET_IQL_VS_PEER if algo == "iql" else None
        ratios.append({
            "name": f"offrl {DISPLAY[algo]} / d3rlpy {DISPLAY[algo]} (1 seed, updates/s)",
            "key": f"{algo}_vs_d3rlpy", "value": value, "target": target,
            "met": None if value is None or target is None else value >= target,
            "note": None if value is not None else (
                "no d3rlpy row" if ours else "no offrl 1-seed row: add 1 to --seeds"),
        })
    many = max(args.seeds)
    for algo, strategy in [(a, st) for a in args.algos for st in args.seed_strategies] if many > 1 else []:
        one, multi = _find(rows, "offrl", algo, 1), _find(rows, "offrl", algo, many, strategy)
        value = (multi["updates_per_s_total"] / one["updates_per_s_per_seed"]
                 if one and multi and many > 1 else None)
        # The 0.85 target is defined for 8 seeds; other seed counts are reported without one.
        target = TARGET_SEED_SCALING if many == 8 else None
        ratios.append({
            "name": f"offrl {DISPLAY.get(algo, algo)}: {many} seeds ({strategy}) total updates/s / 1 seed updates/s",
            "key": f"{algo}_seed_scaling_{many}_{strategy}", "value": value, "target": target,
            "met": None if value is None or target is None else value >= target,
            "note": None if value is not None else "needs 1 and a larger value in --seeds",
        })
    return ratios


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def render_markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [f"# offrl speed benchmark, {report['date']}", ""]
    if report["reduced_settings"]:
        lines += ["> **Reduced settings** (fewer updates or a smaller dataset than the reference "
                  f"`--updates {REFERENCE['updates']} --size {REFERENCE['size']} --peer-updates "
                  f"{REFERENCE['peer_updates']}`): these numbers are a smoke test, not a "
                  "measurement.", ""]
    lines += [
        "## Setup", "",
        f"- command: `{report['command']}`",
        f"- commit: `{report['git_commit']}`",
        f"- machine: {m['cpu_model']}, {m['cpu_count']} cores ({m['cpus_usable']} usable), "
        f"load average at start {m['load_average_start']}, at end {m['load_average_end']}",
        f"- python {m['python']}; jax {m['jax']}, jaxlib {m['jaxlib']}, flax {m['flax']}, "
        f"backend `{m['jax_backend']}`; peer venv: torch {m['torch'] or '–'}, "
        f"d3rlpy {m['d3rlpy'] or '–'}",
        f"- threads: {s['threading']['threads']} (XLA_FLAGS=`{s['threading']['XLA_FLAGS']}`; "
        f"peer `torch.set_num_threads({s['threading']['peer_torch_threads']})`)"
        + (f"; JAX CPU devices: {s['threading']['cpu_devices']} (`map` trains seed i on device i mod "
           f"{s['threading']['cpu_devices']})" if s['threading'].get('cpu_devices', 1) > 1 else ""),
        f"- data: {s['data']}",
        f"- offrl: default configs ("
        + "; ".join(dict.fromkeys(f"{r['algo']}: batch {r['batch_size']}, MLPs {'x'.join(map(str, r['hidden_dims']))}"
                                  for r in report["results"] if r["library"] == "offrl"))
        + (f"; `--set {' '.join(s['set'])}`" if s.get("set") else "") + "), the algorithm's registered "
        f"preprocessing, `make_train_chunk` with chunk {s['chunk']}; {s['updates']} timed updates "
        "per seed (whole chunks) after compiling and one warm-up chunk",
        (f"- d3rlpy: `benchmarks/peer_d3rlpy_speed.py` in `.venv-d3rlpy`, {s['peer_updates']} "
         "timed updates after 50 warm-up updates, run after the offrl timings"
         if s["peer"] == "d3rlpy" else "- d3rlpy: not run (`--peer none`)"),
        "",
        "## Results", "",
        "| library | algorithm | seeds | seed strategy | updates/s per seed | total updates/s | compile s | CPU/wall "
        "| GFLOP/update | GFLOP/s | of matmul peak |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peak = (report.get("matmul_gflops") or {}).get("peak")
    for r in report["results"]:
        cpu, gflops = r.get("cpu_per_wall"), r.get("gflops")
        bound = "≤ " if r.get("gflop_upper_bound") else ""  # a conditional counted at its largest branch
        share = f"{bound}{gflops / peak:.0%}" if gflops and peak else "–"
        lines.append(
            f"| {r['library']} | {DISPLAY.get(r['algo'], r['algo'])} | {r['seeds']} | {r.get('strategy', '-')} | "
            f"{_fmt(r['updates_per_s_per_seed'])} | {_fmt(r['updates_per_s_total'])} | "
            f"{_fmt(r.get('compile_s'), 1)} | {_fmt(cpu, 2)} | {bound if gflops else ''}{_fmt(r.get('gflop_per_update'), 3)} | "
            f"{bound if gflops else ''}{_fmt(gflops, 1)} | {share} |")
    lines += ["", "CPU/wall: process CPU time over wall time of the timed section (≈ cores "
              "really used; blank for the peer, whose timed section is inside its own process).",
              "GFLOP/update: XLA's cost analysis of one compiled update of one agent (batch sampling "
              "included; a conditional counts at its largest branch, so TD3+BC's delayed actor step "
              "counts every update: marked ≤, an upper bound). GFLOP/s: that times the total updates/s. "
              "Of matmul peak: GFLOP/s over the float32 dense-matmul rate measured in the same process "
              "on the same threads"
              + (f" ({', '.join(f'{k}: {v:,.1f}' for k, v in report['matmul_gflops'].items())} GFLOP/s)"
                 if report.get("matmul_gflops") else " (not measured)") + ", the arithmetic limit of "
              "this machine for these networks.", ""]
    lines += ["## Ratios and targets", "", "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for q in report["ratios"]:
        met = "n/a" if q["met"] is None else ("yes" if q["met"] else "**no**")
        val = _fmt(q["value"], 2) if q["value"] is not None else f"– ({q['note']})"
        tgt = f"≥ {q['target']}" if q["target"] is not None else "–"
        lines.append(f"| {q['name']} | {val} | {tgt} | {met} |")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threading = set_threading_env(args)

    import flax
    import jax
    import jaxlib

    import offrl
    from offrl.algos.registry import UnknownAlgorithmError, get_algo
    from offrl.data import Dataset, DatasetInfo

    for name in args.algos:
        try:
            get_algo(name)
        except UnknownAlgorithmError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(
        ["python", "benchmarks/speed.py", *argv])
    commit = git_commit()
    machine = {
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_start": load_average(), "python": platform.python_version(),
        "platform": platform.platform(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "flax": flax.__version__, "offrl": offrl.__version__,
        "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
        "torch": None, "d3rlpy": None,
    }
    say(f"offrl speed benchmark: {machine['cpu_model']}, {machine['cpu_count']} cores, "
        f"jax {jax.__version__} on {machine['jax_backend']}, threads={args.threads} "
        f"(XLA_FLAGS={threading['XLA_FLAGS']!r}), commit {commit}")
    if args.updates < REFERENCE["updates"] or args.size < REFERENCE["size"] or (
            args.peer != "none" and args.peer_updates < REFERENCE["peer_updates"]):
        say("[yellow]reduced settings: the numbers are a smoke test, not a measurement")

    rows: list[dict] = []
    notes: list[str] = []
    matmul = matmul_gflops()
    say(f"float32 matmul on {args.threads} thread(s): "
        + ", ".join(f"{k} {v:,.1f} GFLOP/s" for k, v in matmul.items()))
    with tempfile.TemporaryDirectory(prefix="offrl-speed-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        arrays = make_arrays(args.size, args.data_seed)
        info = DatasetInfo(name="hopper-like-synthetic", action_low=(-1.0,) * ACT_DIM,
                           action_high=(1.0,) * ACT_DIM,
                           metadata={"generator": "benchmarks/speed.py", "seed": args.data_seed})
        dataset = Dataset.from_arrays(**arrays, info=info)
        del arrays
        npz = dataset.save_npz(tmp / "hopper_like.npz")
        say(f"dataset: {dataset.num_transitions:,} transitions, {dataset.num_episodes} episodes, "
            f"obs {dataset.obs_dim}, act {dataset.act_dim}; saved {npz.name} "
            f"({npz.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f}s")

        for algo_name in args.algos:
            for seeds, strategy in [(n, st) for n in args.seeds for st in (args.seed_strategies if n > 1 else ["vmap"])]:
                say(f"offrl {algo_name} seeds={seeds} ({strategy}): compiling chunk of {min(args.chunk, args.updates)}")
                row = bench_offrl(algo_name, dataset, seeds, args.updates, args.chunk, strategy, tuple(args.set))
                rows.append(row)
                bad = [k for k, ok in row["metrics_finite"].items() if not ok]
                if bad:
                    notes.append(f"offrl {algo_name} seeds={seeds}: non-finite metrics {bad}")
                bound = "≤ " if row["gflop_upper_bound"] else ""
                rate = (f", {bound}{row['gflops']:,.1f} GFLOP/s ({bound}{row['gflops'] / matmul['peak']:.0%} of matmul peak)"
                        if row["gflops"] else "")
                say(f"[bold]offrl {algo_name} seeds={seeds}: {row['updates_per_s_per_seed']:,.0f} "
                    f"updates/s per seed, {row['updates_per_s_total']:,.0f} total; compile "
                    f"{row['compile_s']:.1f}s, CPU/wall {row['cpu_per_wall']:.2f}{rate}")

        if args.peer == "d3rlpy":
            python = Path(args.peer_python)
            if python.exists():
                machine.update(peer_versions(python))
            peer_rows, note = run_peer(args, npz, tmp)
            rows.extend(peer_rows)
            for r in peer_rows:
                say(f"[bold]d3rlpy {r['algo']}: {r['updates_per_s_per_seed']:,.0f} updates/s")
            if note:
                notes.append(note)
        else:
            notes.append("peer skipped (--peer none)")

    machine["load_average_end"] = load_average()
    notes.append("The last step of each timed-out episode is sampled by offrl (its next "
                 "observation is stored) but not by d3rlpy (0.1% of rows at 1000-step episodes).")
    ratios = compute_ratios(rows, args)
    reduced = (args.updates < REFERENCE["updates"] or args.size < REFERENCE["size"]
               or (args.peer != "none" and args.peer_updates < REFERENCE["peer_updates"]))
    report = {
        "date": _dt.date.today().isoformat(),
        "timestamp": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": command, "git_commit": commit, "machine": machine,
        "reduced_settings": reduced,
        "settings": {
            "algos": args.algos, "seeds": args.seeds, "updates": args.updates,
            "chunk": args.chunk, "size": args.size, "data_seed": args.data_seed,
            "peer": args.peer, "peer_updates": args.peer_updates, "threading": threading, "set": list(args.set),
            "data": (f"synthetic Hopper-sized, {args.size:,} transitions, obs {OBS_DIM}, "
                     f"act {ACT_DIM} in [-1, 1], {EPISODE_LEN}-step episodes ending in timeouts, "
                     f"seed {args.data_seed}; the same .npz for both libraries"),
        },
        "matmul_gflops": matmul, "results": rows, "ratios": ratios, "notes": notes,
    }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(report))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")

    for q in ratios:
        if q["value"] is None:
            status = f"n/a ({q['note']})"
        elif q["target"] is None:
            status = "(no target)"
        else:
            status = f"target ≥ {q['target']}: " + ("MET" if q["met"] else "NOT MET")
        val = "–" if q["value"] is None else f"{q['value']:.2f}"
        print(f"{q['name']}: {val}  {status}", file=sys.stderr)
    if reduced:
        print("reduced settings: these numbers are a smoke test, not a measurement", file=sys.stderr)
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
