"""``offrl bench SUITE``: train algorithms on every dataset of a suite and tabulate normalised scores.

    offrl bench locomotion-cpu --algos bc,td3bc,iql --seeds 3
    offrl bench locomotion-cpu --algos bcq --datasets hopper-medium-replay --steps 50000 --seeds 2
    offrl bench locomotion-cpu --algos iql --peer NAME      # also a peer library's row (see below)
    offrl bench locomotion-cpu --merge OTHER/locomotion-cpu/rows.jsonl   # rows made elsewhere (a GPU machine)
    offrl bench discrete-cpu                                 # bc_discrete, dqn_offline, cql_discrete, iql_discrete

Every algorithm trains ``seeds`` agents in one compiled call (``offrl.fit``) with its paper defaults
on every dataset of the suite, is evaluated at the end over ``episodes`` episodes per seed, and
appends one **row** per (dataset, algorithm) to ``RESULTS/SUITE/rows.jsonl``: scores per seed,
mean ± std, success rate where the env reports one, wall time, the budget it ran with (datasets,
seeds, updates, episodes), the algorithm's config (ours), the command and the commit. The **table**
(Markdown, CSV and a bar chart PNG beside the rows) shows the latest row of each (dataset, algorithm, library, budget),
so runs made at different times and with different budgets sit side by side, each labelled with its
budget. ``--html`` also writes ``table.html``, one self-contained page with one cell per (algorithm,
dataset) and every row in a details section; ``--redraw`` trains nothing and redraws the tables. A row that already exists for the same budget and algorithm config is kept and not run
again unless ``--rerun``; a row of another config (the defaults changed since, or ``--set``) is not
reused: the run happens and its row sits beside the old one, which the table labels with the fields
it ran with that differ from today's defaults (rows from before configs were recorded are never reused).
``--set FIELD=VALUE`` changes a field of the algorithm's config for a row (ours only), e.g.
``--set log_std_bound=clip``; the table's mean row and bar chart prefer rows run with the defaults.
More seeds later: ``--first-seed 3 --seeds 2`` trains seeds 3 and 4 (agent ``i`` of a run from seed
``s`` is the agent a run of seed ``s + i`` trains), and the table pools that row with the stored
row of seeds 0-2 of the same budget and config into one 5-seed cell marked "pooled".

Tiers: ``locomotion`` and ``maze`` are the full-size rows (1M updates: for GPU machines);
``locomotion-cpu`` and ``maze-cpu`` are sized so one IQL-cost algorithm's 3-seed row takes about an
hour on a 2-core CPU (3 datasets x 100k updates x 3 seeds; seeds share one compiled call).
Heavier algorithms cut the budget with ``--datasets``, ``--seeds`` and ``--steps``.
``discrete-cpu`` (CartPole, Acrobot, LunarLander data of epsilon-greedy scripted controllers, 10k
updates) runs the discrete-action algorithms unless ``--algos`` names others.

Peers: ``--peer NAME`` runs another library's implementation of the same algorithm on the same
dataset files, seeds, update budget and evaluation protocol. It calls ``PYTHON
benchmarks/peers/NAME.py --job JOB.json --out RESULT.json`` (PYTHON: ``--peer-python``, default
``.venv-NAME/bin/python``), a script kept outside the package with its own environment. The job
holds the dataset file, env id, algorithm name, steps, seeds, episodes and reference scores; the
result holds ``per_seed`` normalised scores (and optionally ``success_rate``, ``library_version``).
The peer's row is stored once like any other, so later comparisons reuse it. ``--peer-set
FIELD=VALUE`` changes fields of the peer's own config (the job's ``overrides``, values as JSON, else
strings); the row stores them as ``peer_overrides``, part of its identity and its table label.
"""

from __future__ import annotations

import csv
import hashlib
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import tyro

from offrl.config import Checked, integer
from offrl.usage import UsageError, parse_args


@dataclass(frozen=True)
class Suite:
    datasets: tuple[str, ...]
    steps: int
    seeds: int
    episodes: int
    note: str
    algos: tuple[str, ...] = ("bc", "td3bc", "iql")
    """Algorithms run when ``--algos`` is not given."""


_LOCO = tuple(f"{env}-{kind}" for env in ("hopper", "halfcheetah", "walker2d") for kind in ("medium", "medium-replay", "medium-expert"))
SUITES: dict[str, Suite] = {
    "locomotion": Suite(_LOCO, 1_000_000, 3, 10, "the 9 D4RL-style locomotion datasets, 1M updates (GPU tier)"),
    "locomotion-cpu": Suite(("hopper-medium-replay", "halfcheetah-medium", "walker2d-medium-expert"), 100_000, 3, 10,
                            "3 locomotion datasets, 100k updates (CPU tier: about an hour per IQL-cost row on 2 cores)"),
    "maze": Suite(tuple(f"maze-{m}-{r}" for r in ("sparse", "dense") for m in ("umaze", "medium", "large")), 1_000_000, 3, 10,
                  "the 6 maze2d-style datasets, 1M updates (GPU tier)"),
    "maze-cpu": Suite(("maze-umaze-sparse", "maze-medium-sparse", "maze-large-sparse"), 100_000, 3, 10,
                      "3 sparse-reward mazes, 100k updates (CPU tier)"),
    "discrete-cpu": Suite(("cartpole-medium", "acrobot-medium", "lunarlander-medium"), 10_000, 3, 10,
                          "3 discrete-action datasets (epsilon-greedy scripted controllers), 10k updates (CPU tier)",
                          ("bc_discrete", "dqn_offline", "cql_discrete", "iql_discrete")),
}


@dataclass
class BenchArgs(Checked):
    """Train algorithms on every dataset of a suite; write a table of normalised scores."""

    _label = ""  # messages name the option: "seeds = 0 is out of range: ..."

    suite: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="SUITE")]]
    """Suite name: locomotion, locomotion-cpu, maze, maze-cpu, discrete-cpu."""
    algos: Optional[str] = None
    """Comma-separated registered algorithm names (see `offrl algos`; default: the suite's, e.g. bc,td3bc,iql)."""
    datasets: Optional[str] = None
    """Comma-separated subset of datasets (default: the suite's), part of the stored budget."""
    seeds: Optional[int] = integer(None, ge=1, optional=True)
    """Seeds per row, trained in one compiled call (default: the suite's)."""
    steps: Optional[int] = integer(None, ge=1, optional=True)
    """Gradient updates per seed (default: the suite's)."""
    episodes: Optional[int] = integer(None, ge=1, optional=True)
    """Evaluation episodes per seed at the end (default: the suite's)."""
    peer: Optional[str] = None
    """Also run peer NAME's implementation (benchmarks/peers/NAME.py) on the same files and budget."""
    peer_python: Optional[str] = None
    """Python of the peer's environment (default: .venv-NAME/bin/python)."""
    peer_seeds: int = integer(1, ge=1)
    """Seeds of the peer's rows (peers train one seed per process; usually slower)."""
    peer_threads: int = integer(1, ge=1)
    """CPU threads of the peer (torch): give it the cores ours uses, e.g. 2 beside ``JAX_NUM_CPU_DEVICES=2``."""
    peer_only: bool = False
    """Run only the peer's rows (``--peer`` needed), e.g. a peer row in a second process while ours trains in
    another, or beside a row of ours that is already stored; our rows are neither trained nor reused."""
    peer_set: tuple[str, ...] = ()
    """Fields of the peer's config to change, in the peer's own names (values as JSON, else strings), e.g.
    ``--peer-set n_action_samples=10``; part of the peer row's identity (its stored ``peer_overrides``)."""
    first_seed: int = integer(0, ge=0)
    """Seed of the first agent (ours and the peer's): rows of seeds ``first_seed ..`` extend a stored row of
    seeds ``0 .. first_seed-1`` with the same budget and config; the table pools them into one cell."""
    results: str = "benchmarks/results/bench"
    """Folder of the row store and tables (SUITE/ below it)."""
    set: Annotated[tuple[str, ...], tyro.conf.arg(metavar="FIELD=VALUE [FIELD=VALUE ...]")] = ()
    """Fields of the algorithms' configs to change (ours), e.g. ``--set log_std_bound=clip beta=10``;
    part of a row's identity (its stored config). Every named algorithm must have each field."""
    rerun: bool = False
    """Run rows again even if a row with the same budget and config is stored."""
    merge: Optional[str] = None
    """Train nothing: add the rows of another store of this suite (a ``rows.jsonl``, e.g. written on a GPU
    machine with ``--results``) that this one lacks, then redraw the table."""
    progress: bool = True
    """Show training progress."""
    html: bool = False
    """Also write ``table.html``: one self-contained page (no server, no network) with the chart and one cell per
    (algorithm, dataset), every row and budget in a details section."""
    redraw: bool = False
    """Train nothing: redraw the tables (and with ``--html`` the page) from the stored rows."""


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def config_json(config) -> dict:
    """A config dataclass as it reads back from a stored row (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_id(config: dict | None) -> str | None:
    """Canonical text of an algorithm config (None: a peer's row, or one from before configs were stored)."""
    return None if config is None else json.dumps(config, sort_keys=True)


def budget_key(row: dict) -> tuple:
    return (row["dataset"], row["algo"], row["library"], row["seeds"], row["steps"], row["episodes"],
            row.get("first_seed", 0), config_id(row.get("config")), config_id(row.get("peer_overrides")))


def peer_overrides(items: tuple[str, ...]) -> dict | None:
    """``--peer-set FIELD=VALUE`` items as ``{field: value}`` (a value that parses as JSON is that value,
    otherwise the string); None when there are none. The peer runner checks the field names."""
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--peer-set {item!r}: expected FIELD=VALUE, e.g. --peer-set n_action_samples=10")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _is_bool_field(cls, name: str) -> bool:
    hint = typing.get_type_hints(cls).get(name)
    return hint is bool or (typing.get_origin(hint) in (typing.Union, types.UnionType) and bool in typing.get_args(hint))


def algo_config(algo_name: str, overrides: tuple[str, ...] = ()):
    """The algorithm's default config with ``FIELD=VALUE`` overrides, parsed and type-checked by its dataclass."""
    from offrl.algos import get_algo

    cls = get_algo(algo_name).config_cls
    fields = {f.name for f in dataclasses.fields(cls)}
    argv = []
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set beta=10")
        if name not in fields:
            raise ValueError(f"--set {item!r}: {algo_name} has no field {name!r}; its fields: {', '.join(sorted(fields))}")
        flag = name.replace("_", "-")
        if _is_bool_field(cls, name):  # tyro's flags take no value: --x / --no-x
            if value.lower() not in BOOL_WORDS:
                raise ValueError(f"--set {item!r}: {name} is true or false, e.g. --set {name}=true")
            argv.append(f"--{flag}" if BOOL_WORDS[value.lower()] else f"--no-{flag}")
            continue
        argv += [f"--{flag}", *(value.split(",") if value else [])]
    if not argv:
        return cls()
    try:
        return parse_args(cls, argv, f"offrl train {algo_name}")
    except UsageError as exc:  # names the field, the value and its valid range
        raise ValueError(f"--set {' '.join(overrides)}: {exc}") from None


def _config_diff(row: dict, defaults: dict | None) -> str:
    """``field=value`` for each field where an (ours) row's config differs from today's defaults."""
    config = row.get("config")
    if config is None or defaults is None:
        return ""
    names = sorted(set(config) | set(defaults))
    return ", ".join(f"{k}={config.get(k, '?')}" for k in names if config.get(k, "?") != defaults.get(k, "?"))


def pool_seed_extensions(rows: list[dict]) -> list[dict]:
    """Merge each row of seeds ``first_seed ..`` into the row of seeds ``0 .. first_seed-1`` it extends.

    A row extends another when dataset, algorithm, library, updates, evaluation episodes and (ours)
    algorithm config agree, neither names dataset arrays (``dataset_sha256``) other than the other's,
    and its first seed is where the other's seeds end; chains pool in order.
    The pooled row lists every seed's score and the commits and seconds of its parts.
    """

    def same_run(a: dict, b: dict) -> bool:
        sha_a, sha_b = a.get("dataset_sha256"), b.get("dataset_sha256")
        same_data = sha_a is None or sha_b is None or sha_a == sha_b  # rows from before checksums were stored: unknown
        return (all(a[k] == b[k] for k in ("dataset", "algo", "library", "steps", "episodes"))
                and a.get("config") == b.get("config") and a.get("peer_overrides") == b.get("peer_overrides") and same_data)

    pooled: list[dict] = []
    for row in sorted(rows, key=lambda r: r.get("first_seed", 0)):
        start = row.get("first_seed", 0)
        base = next((p for p in pooled if start > 0 and p.get("first_seed", 0) == 0 and p["seeds"] == start
                     and same_run(p, row)), None)
        if base is None:
            pooled.append(dict(row))
            continue
        per_seed = list(base["per_seed"]) + list(row["per_seed"])
        mean, std = summarise(per_seed)
        if base.get("success_rate") is not None and row.get("success_rate") is not None:  # a mean over seeds
            base["success_rate"] = (base["success_rate"] * base["seeds"] + row["success_rate"] * row["seeds"]) / len(per_seed)
        base.update(per_seed=per_seed, seeds=len(per_seed), score_mean=mean, score_std=std,
                    commit=" + ".join(dict.fromkeys(str(base["commit"]).split(" + ") + [str(row["commit"])])),
                    seconds=round(float(base.get("seconds") or 0) + float(row.get("seconds") or 0), 1),
                    pooled=base.get("pooled", 1) + 1)
    return pooled


def dataset_checksum(dataset: str) -> str | None:
    """The sha256 stored in the cached file of a built-in dataset (None if it holds none): built-in
    datasets are remade on each machine, and a row names the exact arrays it trained on."""
    from offrl.data import dataset_path
    from offrl.data.integrity import read_checksum

    path = dataset_path(dataset)
    return read_checksum(path) if path.is_file() else None


def _device_name() -> str:
    """What a row's seconds were measured on: platform and kind, the device count when the seeds were
    spread over several (``JAX_NUM_CPU_DEVICES``), and on a CPU the cores this process may use."""
    import jax

    devices = jax.local_devices()
    name = f"{devices[0].platform}: {devices[0].device_kind}" + (f" x{len(devices)}" if len(devices) > 1 else "")
    if devices[0].platform == "cpu" and hasattr(os, "sched_getaffinity"):
        name += f", {len(os.sched_getaffinity(0))} cores"
    return name


def _row_identity(row: dict) -> tuple:
    """What makes two stored rows the same run: its cell, budget, when, from which commit, and its scores."""
    return tuple(json.dumps(row.get(k), sort_keys=True) for k in
                 ("dataset", "algo", "library", "seeds", "steps", "episodes", "first_seed", "date", "commit", "per_seed"))


def merge_rows(folder: Path, suite_name: str, source: Path) -> int:
    """Append the rows of ``source`` (a rows.jsonl of suite ``suite_name``) that ``folder``'s store lacks.

    Returns how many were added. A row of another suite, a line that is not a JSON object or a row
    without its scores is an error naming the line, and nothing is added.
    """
    if not source.is_file():
        raise ValueError(f"--merge {source}: no such file (give the rows.jsonl of another results folder's SUITE/)")
    incoming = []
    for number, line in enumerate(source.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--merge {source}, line {number}: not JSON ({exc.msg}); is the file truncated?") from None
        if not isinstance(row, dict) or not isinstance(row.get("per_seed"), list):
            raise ValueError(f"--merge {source}, line {number}: not a bench row (no per_seed scores)")
        if row.get("suite") != suite_name:
            raise ValueError(f"--merge {source}, line {number}: a row of suite {row.get('suite')!r}, not {suite_name!r}; "
                             f"merge it with `offrl bench {row.get('suite')} --merge ...`")
        incoming.append(row)
    seen = {_row_identity(r) for r in read_rows(folder)}
    added = 0
    for row in incoming:
        if _row_identity(row) not in seen:
            append_row(folder, row)
            seen.add(_row_identity(row))
            added += 1
    return added


def read_rows(folder: Path) -> list[dict]:
    path = folder / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append_row(folder: Path, row: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "rows.jsonl").open("a") as f:  # one line per row: a killed bench keeps the rows it finished
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def summarise(per_seed: list[float]) -> tuple[float, float]:
    scores = np.asarray(per_seed, np.float64)
    return float(scores.mean()), float(scores.std())


def run_ours(algo_name: str, dataset: str, seeds: int, steps: int, episodes: int, run_dir: Path, progress: bool,
             first_seed: int = 0, config=None) -> dict:
    import offrl

    config = algo_config(algo_name) if config is None else config
    t0 = time.perf_counter()
    result = offrl.fit(config, dataset, steps=steps, seed=first_seed, seeds=seeds, eval_episodes=episodes,
                       run_dir=run_dir, progress=progress, plot=True)
    per_seed = [float(r["normalized_score"]) for r in result.final_eval]
    success = [r["success_rate"] for r in result.final_eval if r.get("success_rate") is not None]
    return {"per_seed": per_seed, "success_rate": float(np.mean(success)) if success else None,
            "seconds": round(time.perf_counter() - t0, 1), "run_dir": str(run_dir), "library_version": offrl.__version__,
            "config": config_json(config),  # the row says which config it ran with
            "device": _device_name()}  # what the seconds were measured on


def run_peer(peer: str, python: str, algo_name: str, dataset: str, seeds: int, steps: int, episodes: int, work: Path,
             first_seed: int = 0, threads: int = 1, overrides: dict | None = None) -> dict:
    from offrl.data import dataset_path, load_dataset

    ds = load_dataset(dataset)  # makes and caches the file on first use: the peer reads the same bytes
    script = Path("benchmarks") / "peers" / f"{peer}.py"
    if not script.is_file():
        raise ValueError(f"no peer runner {script} (run offrl bench from the repository root)")
    if not Path(python).exists():
        raise ValueError(f"peer python {python} not found; create the peer's environment (benchmarks/README.md) "
                         "or pass --peer-python")
    work.mkdir(parents=True, exist_ok=True)
    job = {"algo": algo_name, "dataset": dataset, "dataset_file": str(dataset_path(dataset)), "env_id": ds.info.env_id,
           "env_kwargs": ds.info.env_kwargs, "steps": steps, "seeds": list(range(first_seed, first_seed + seeds)), "episodes": episodes,
           "ref_min_score": ds.info.ref_min_score, "ref_max_score": ds.info.ref_max_score, "threads": threads}
    if overrides:
        job["overrides"] = overrides
    (work / "job.json").write_text(json.dumps(job, indent=2))
    t0 = time.perf_counter()
    subprocess.run([python, str(script), "--job", str(work / "job.json"), "--out", str(work / "result.json")], check=True)
    result = json.loads((work / "result.json").read_text())
    return {"per_seed": [float(s) for s in result["per_seed"]], "success_rate": result.get("success_rate"),
            "seconds": round(time.perf_counter() - t0, 1), "run_dir": str(work), "library_version": result.get("library_version"),
            # what the seconds were measured on (the peer runner reads OFFRL_PEER_DEVICE, default cpu:0)
            "device": f"{os.environ.get('OFFRL_PEER_DEVICE', 'cpu:0')}, {threads} torch thread{'s' if threads > 1 else ''}",
            **({"peer_overrides": overrides} if overrides else {})}


def _defaults(algo_name: str) -> dict | None:
    from offrl.algos import get_algo

    try:
        return config_json(get_algo(algo_name).config_cls())
    except KeyError:  # a row of an algorithm no longer registered
        return None


def _headline(found: list[dict]) -> dict | None:
    """The row of a cell that the bar chart and the mean row use: rows run with today's defaults first
    (then rows of unrecorded config, then other configs), then most seeds, then most updates."""

    def rank(r):
        if r.get("peer_overrides"):
            return 0
        if r.get("config") is None:
            return 1
        return 2 if r["config"] == _defaults(r["algo"]) else 0

    return max(found, key=lambda r: (rank(r), r["seeds"], r["steps"])) if found else None


def _seed_range(first: int, n: int) -> str:
    return f"seed {first}" if n == 1 else f"seeds {first}–{first + n - 1}"


def _steps(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def _budget(r: dict) -> str:
    """A row's budget and what sets it apart: ``3×100k, pooled, beta=10.0``."""
    return (f"{r['seeds']}×{_steps(r['steps'])}"
            + (f", {_seed_range(r['first_seed'], r['seeds'])}" if r.get("first_seed") and not r.get("pooled") else "")
            + (f", success {r['success_rate']:.2f}" if r.get("success_rate") is not None else "")
            + (", pooled" if r.get("pooled") else "")
            + (f", {diff}" if (diff := _config_diff(r, _defaults(r["algo"]))) else "")
            + "".join(f", {k}={v}" for k, v in sorted((r.get("peer_overrides") or {}).items())))


def _label(r: dict) -> str:
    """A table column: the algorithm, and the library when it is a peer's."""
    return r["algo"] + ("" if r["library"] == "offrl" else f" ({r['library']})")


def _entries(rows: list[dict]) -> list[tuple[str, str, bool]]:
    """(label, algorithm, is a peer's) of the chart's and the page's rows: algorithms by name, each with its
    peers' rows right after it, so ``iql`` sits beside ``iql (d3rlpy)``."""
    algos = sorted({r["algo"] for r in rows})
    out = []
    for algo in algos:
        libraries = sorted({r["library"] for r in rows if r["algo"] == algo}, key=lambda lib: (lib != "offrl", lib))
        out += [(_label({"algo": algo, "library": lib}), algo, lib != "offrl") for lib in libraries]
    return out


# Twenty distinct colours (matplotlib's tab10, then ten more that stand apart from it); past twenty
# algorithms, evenly spaced hues. A peer's bars take its algorithm's colour, lighter and hatched.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#000075", "#800000", "#469990", "#f032e6", "#4f7a00", "#ffd700", "#000000", "#9a6324", "#6f4cff", "#ff4f6d")


def algo_colours(algos: list[str]) -> dict[str, str]:
    """One colour per algorithm, never the same twice."""
    import colorsys

    algos = sorted(set(algos))
    if len(algos) <= len(PALETTE):
        return dict(zip(algos, PALETTE))
    rgb = [colorsys.hsv_to_rgb(i / len(algos), 0.75, 0.8 if i % 2 else 0.55) for i in range(len(algos))]
    return {a: "#" + "".join(f"{round(255 * c):02x}" for c in col) for a, col in zip(algos, rgb)}


def _lighter(colour: str, amount: float = 0.45) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return tuple(c + (1 - c) * amount for c in to_rgb(colour))


def draw_chart(rows: list[dict], suite_name: str):
    """The bar chart of a table: one panel per dataset, a horizontal bar per algorithm (the cell's headline
    row, mean ± std over seeds), each peer's bar under its algorithm's in the same colour, lighter and hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    entries = _entries(rows)
    colours = algo_colours([algo for _, algo, _ in entries])
    ncols = max(1, min(3, len(datasets)))
    nrows = -(-max(len(datasets), 1) // ncols)
    height = 0.27 * max(len(entries), 1) + 1.1
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 + 4.3 * ncols, 0.7 + nrows * height), squeeze=False, sharey=True)
    ys = np.arange(len(entries))
    for k, ax in enumerate(axes.flat):
        if k >= len(datasets):
            ax.set_visible(False)
            continue
        dataset = datasets[k]
        heads = [_headline([r for r in rows if r["dataset"] == dataset and _label(r) == label]) for label, _, _ in entries]
        lows = [h["score_mean"] - h["score_std"] for h in heads if h]
        highs = [h["score_mean"] + h["score_std"] for h in heads if h]
        lo, hi = min([0.0, *lows]), max([100.0, *highs])
        pad = 0.12 * (hi - lo)
        ax.set_xlim(lo - (0.03 * (hi - lo) if lo < 0 else 0), hi + pad)
        for y, (label, algo, peer), head in zip(ys, entries, heads):
            if head is None:
                ax.text(0, y, " no row", va="center", ha="left", fontsize=7, color="#999999")
                continue
            colour = colours[algo]
            ax.barh(y, head["score_mean"], 0.78, xerr=head["score_std"], color=_lighter(colour) if peer else colour,
                    edgecolor=colour, hatch="///" if peer else None, linewidth=0.8,
                    error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"})
            ax.text(max(head["score_mean"] + head["score_std"], 0) + 0.01 * (hi - lo), y, f"{head['score_mean']:.1f}",
                    va="center", ha="left", fontsize=7)
        ax.axvline(0, color="#444444", lw=0.6)
        ax.axvline(100, color="grey", lw=0.8, ls="--")
        ax.set_title(dataset, fontsize=10)
        ax.tick_params(axis="y", length=0, labelsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="#e6e6e6", lw=0.6)
        ax.set_axisbelow(True)
        if k // ncols == nrows - 1 or k + ncols >= len(datasets):
            ax.set_xlabel("normalised score", fontsize=8)
    axes[0, 0].set_yticks(ys, [label for label, _, _ in entries])
    axes[0, 0].set_ylim(len(entries) - 0.4, -0.6)  # the first algorithm on top
    if any(peer for _, _, peer in entries):
        handles = [Patch(facecolor="#777777", edgecolor="#777777", label="offrl"),
                   Patch(facecolor=_lighter("#777777"), edgecolor="#777777", hatch="///", label="peer library (same algorithm)")]
        fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=2, frameon=False)
    fig.suptitle(f"offrl bench {suite_name}: normalised score, mean ± std over seeds (dashed: expert = 100)", fontsize=10,
                 x=0.01, ha="left")
    fig.tight_layout()  # leaves room for the title
    return fig


def write_html(folder: Path, suite_name: str, rows: list[dict]) -> Path:
    """``table.html``: one static, self-contained page (no server, no network) with the chart (``table.png``
    inline) and one cell per (algorithm, dataset): the row the mean and the chart use (:func:`_headline`);
    every row with its budget in a details section below."""
    import time

    from offrl import htmlpage as H

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    entries = _entries(rows)
    with_mean = len(datasets) > 1
    cells, classes = [], []
    for label, _, peer in entries:
        line, means = [H.esc(label)], []
        for d in datasets:
            found = [r for r in rows if r["dataset"] == d and _label(r) == label]
            head = _headline(found)
            if head is None:
                line.append('<span class="muted">–</span>')
                continue
            means.append(head["score_mean"])
            more = len(found) - 1
            line.append(f'<span title="{H.esc(_budget(head))}">{head["score_mean"]:.1f} '
                        f'<span class="std">± {head["score_std"]:.1f}</span></span>'
                        + (f' <span class="std" title="{more} other row{"s" if more > 1 else ""}: see every row below">'
                           f'(+{more})</span>' if more else ""))
        if with_mean:
            line.append(f"{round(float(np.mean(means)), 1) + 0.0:.1f}" if len(means) == len(datasets) else '<span class="muted">–</span>')
        cells.append(line)
        classes.append("peer" if peer else "")
    numeric = set(range(1, len(datasets) + 1 + with_mean))
    main = H.table(["algorithm", *datasets, *(["mean"] if with_mean else [])], cells, numeric=numeric, row_classes=classes)

    every, every_classes = [], []
    for label, _, _ in entries:
        for d in datasets:
            found = sorted((r for r in rows if r["dataset"] == d and _label(r) == label), key=lambda r: (-r["seeds"], -r["steps"]))
            head = _headline(found)
            for r in found:
                every.append([H.esc(label), H.esc(d), f'{r["score_mean"]:.1f} <span class="std">± {r["score_std"]:.1f}</span>',
                              H.esc(_budget(r)), H.esc(r.get("episodes")), H.esc(" ".join(f"{v:.1f}" for v in r["per_seed"])),
                              H.esc(r.get("seconds")), H.esc(r.get("device")), H.esc(r.get("date")), H.esc(r.get("commit"))])
                every_classes.append("headline" if r is head else "")
    details = H.table(["algorithm", "dataset", "score", "budget (seeds × updates, …)", "episodes", "per seed", "seconds",
                       "device", "date", "commit"], every, numeric={2, 4, 6}, row_classes=every_classes)
    suite = SUITES[suite_name].note if suite_name in SUITES else suite_name
    body = [f"<h1>offrl bench {H.esc(suite_name)}</h1>",
            f"<p class=\"note\">Suite: {H.esc(suite)}. Normalised score 100·(R − R_random)/(R_expert − R_random), "
            f"mean ± std over seeds. {len(rows)} rows; written {time.strftime('%Y-%m-%d %H:%M')} from "
            "<code>rows.jsonl</code> (commands and commits there and in <code>table.csv</code>).</p>",
            H.img((folder / "table.png").read_bytes(), f"offrl bench {suite_name}: normalised score per dataset and algorithm"),
            "<h2>Scores</h2>",
            "<p class=\"note\">Each cell shows one row: run with today's default config, then the most seeds, then the most "
            "updates (the rule of the chart and of the mean column; hover a score for its budget). \"(+N)\": N other rows "
            "of the cell (other budgets or configs), listed below. Indented: a peer library's implementation of the "
            "algorithm above it. Mean: over the datasets, when the algorithm has a row on each.</p>",
            main,
            f"<details><summary>Budgets and every row ({len(every)}; in bold, the row its cell shows)</summary>",
            "<p class=\"note\">Budget: seeds × updates per seed; \"pooled\": seeds from rows run at different times "
            "(<code>--first-seed</code>); <code>field=value</code>: a config field that differs from today's defaults "
            "(a peer's: <code>--peer-set</code>).</p>", details, "</details>"]
    return H.write_page(folder / "table.html", H.page(f"offrl bench {suite_name}", "\n".join(body)))


def write_table(folder: Path, suite_name: str, html: bool = False) -> Path:
    """Markdown, CSV and PNG (and with ``html``, a self-contained HTML page) of the latest row per
    (dataset, algo, library, budget)."""
    latest: dict[tuple, dict] = {}
    for row in read_rows(folder):
        latest[budget_key(row)] = row
    rows = sorted(pool_seed_extensions(list(latest.values())), key=lambda r: (r["dataset"], r["library"] != "offrl", r["algo"], -r["steps"]))
    columns = list(dict.fromkeys(f"{r['algo']}" + ("" if r["library"] == "offrl" else f" ({r['library']})") for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    label = _label

    with (folder / "table.csv").open("w", newline="") as f:
        fields = ["dataset", "algo", "library", "score_mean", "score_std", "per_seed", "success_rate", "seeds", "steps",
                  "episodes", "seconds", "commit", "date", "command", "pooled"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "per_seed": " ".join(f"{s:.2f}" for s in r["per_seed"])})
    lines = [f"# `offrl bench {suite_name}`", "",
             f"Suite: {SUITES[suite_name].note if suite_name in SUITES else suite_name}. Normalised score "
             "100·(R − R_random)/(R_expert − R_random), mean ± std over seeds; each cell names its budget "
             "(seeds × updates, evaluation episodes per seed; \"pooled\": seeds from rows run at different times, "
             "`--first-seed`; `field=value`: a config field that differs from today's defaults; in bold, the row of a "
             "cell that the mean row and the chart use). Rows, commands and commits: `rows.jsonl`, `table.csv`.", "",
             "| dataset | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for d in datasets:
        cells = []
        for c in columns:
            found = [r for r in rows if r["dataset"] == d and label(r) == c]
            head = _headline(found) if len(found) > 1 else None  # bold: the row the mean and the chart use

            def score(r):
                text = f"{r['score_mean']:.1f} ± {r['score_std']:.1f}"
                return f"**{text}**" if r is head else text

            cells.append("<br>".join(f"{score(r)} ({_budget(r)})" for r in found) or "–")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    if len(datasets) > 1:
        means = []
        for c in columns:
            found = {d: _headline([r for r in rows if r["dataset"] == d and label(r) == c]) for d in datasets}
            found = {d: r["score_mean"] for d, r in found.items() if r is not None}
            means.append(f"{np.mean(list(found.values())):.1f}" if len(found) == len(datasets) else "–")
        lines.append("| **mean** (per cell: a row with today's defaults, then most seeds, then most updates) | " + " | ".join(means) + " |")
    (folder / "table.md").write_text("\n".join(lines) + "\n")

    import matplotlib.pyplot as plt

    fig = draw_chart(rows, suite_name)
    fig.savefig(folder / "table.png", dpi=100)
    plt.close(fig)
    if html:
        write_html(folder, suite_name, rows)
    return folder / "table.md"


def bench(args: BenchArgs, argv: list[str]) -> Path:
    from offrl.data import list_datasets

    if args.suite not in SUITES:
        raise ValueError(f"unknown suite {args.suite!r}; valid suites: {', '.join(SUITES)}")
    suite = SUITES[args.suite]
    if args.merge or args.redraw:
        folder = Path(args.results) / args.suite
        if args.merge:
            added = merge_rows(folder, args.suite, Path(args.merge))
            print(f"merged {added} new row(s) from {args.merge} into {folder / 'rows.jsonl'}", file=sys.stderr)
        elif not read_rows(folder):
            raise ValueError(f"--redraw: {folder / 'rows.jsonl'} holds no rows; run the suite first (or pass --results)")
        table = write_table(folder, args.suite, args.html)
        print(table.read_text())
        return table
    datasets = args.datasets.split(",") if args.datasets else list(suite.datasets)
    known = list_datasets()
    missing = [d for d in datasets if d not in known]
    if missing:
        raise ValueError(f"unknown datasets {missing}; see `offrl data list` (locomotion names need the zoo's policies)")
    algos = [a.strip() for a in args.algos.split(",") if a.strip()] if args.algos else list(suite.algos)
    configs = {a: algo_config(a, args.set) for a in algos}  # unknown names and bad --set fail here, before any training
    overrides = peer_overrides(args.peer_set)
    if overrides and not args.peer:
        raise ValueError("--peer-set changes a peer's config: name the peer with --peer NAME")
    if args.peer_only and not args.peer:
        raise ValueError("--peer-only runs only a peer's rows: name the peer with --peer NAME")
    seeds, steps = args.seeds or suite.seeds, args.steps or suite.steps
    episodes = args.episodes or suite.episodes
    folder = Path(args.results) / args.suite
    stored = {budget_key(r) for r in read_rows(folder)}
    command = "offrl bench " + " ".join(shlex.quote(a) for a in argv)
    commit = git_commit()  # the code that runs: read before training, as commits made during a long run are not in it
    if args.first_seed < 0:
        raise ValueError(f"--first-seed must be >= 0, got {args.first_seed}")
    first = args.first_seed
    jobs = [] if args.peer_only else [(d, a, "offrl", seeds) for d in datasets for a in algos]
    if args.peer:
        jobs += [(d, a, args.peer, args.peer_seeds) for d in datasets for a in algos]
    for dataset, algo, library, n_seeds in jobs:
        ours = library == "offrl"
        key = (dataset, algo, library, n_seeds, steps, episodes, first, config_id(config_json(configs[algo])) if ours else None,
               None if ours else config_id(overrides))
        if key in stored and not args.rerun:
            print(f"{dataset} {algo} ({library}): stored row reused (--rerun to run it again)", file=sys.stderr)
            continue
        stem = f"{algo}-{dataset}-{library}-s{n_seeds}x{steps}" + (f"-from{first}" if first else "")
        if ours or overrides:  # runs of different configs keep their own folders
            stem += "-c" + hashlib.sha1((key[-2] if ours else key[-1]).encode()).hexdigest()[:8]
        if ours:
            out = run_ours(algo, dataset, n_seeds, steps, episodes, folder / "runs" / stem, args.progress, first, configs[algo])
        else:
            python = args.peer_python or f".venv-{library}/bin/python"
            out = run_peer(library, python, algo, dataset, n_seeds, steps, episodes, folder / "runs" / stem, first,
                           args.peer_threads, overrides)
        mean, std = summarise(out["per_seed"])
        out["dataset_sha256"] = dataset_checksum(dataset)  # which bytes both libraries trained on
        row = {"suite": args.suite, "dataset": dataset, "algo": algo, "library": library, "seeds": n_seeds, "steps": steps,
               "episodes": episodes, "first_seed": first, "score_mean": mean, "score_std": std, **out, "commit": commit,
               "date": time.strftime("%Y-%m-%d %H:%M"), "command": command}
        append_row(folder, row)
        print(f"{dataset:>24} {algo:>12} ({library}): {mean:6.1f} ± {std:4.1f}  ({out['seconds']} s)", file=sys.stderr)
    table = write_table(folder, args.suite, args.html)
    print(table.read_text())
    print(f"wrote {table}, {table.with_suffix('.csv')}, {table.with_suffix('.png')}"
          + (f", {table.with_suffix('.html')}" if args.html else ""), file=sys.stderr)
    return table


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(BenchArgs, argv, "offrl bench")
    try:
        bench(args, argv)
    except (ValueError, KeyError) as exc:
        print(f"offrl bench: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"offrl bench: error: the peer runner failed ({exc})", file=sys.stderr)
        return 1
    return 0
