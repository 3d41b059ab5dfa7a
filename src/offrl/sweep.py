"""``offrl sweep SPEC``: a hyperparameter sweep, trained as populations, merged into one table.

    offrl sweep sweep.toml                          # local: one process per core, pinned
    offrl sweep sweep.toml --backend ray            # Ray Tune on a local Ray (offrl[ray]), ASHA early stopping
    offrl sweep sweep.toml --backend ray --ray-address auto   # a running Ray cluster
    offrl sweep sweep.toml --redraw                 # tables only, from what has finished

The spec (TOML or JSON) names algorithms, datasets, seeds and updates, and the fields to vary::

    algos = ["iql"]
    datasets = ["pendulum-mixed"]
    seeds = 4
    steps = 20000
    [loop]                       # any option of `offrl train`'s loop: chunk, eval_interval, eval_episodes, seed, ...
    eval_interval = 5000
    [fixed]                      # set for every trial
    "algo.hidden_dims" = [64, 64]
    [grid]                       # every combination
    "algo.beta" = [1, 3, 10]
    "algo.expectile" = [0.7, 0.9]
    [random]                     # `samples` draws (with `seed`), combined with every grid point
    samples = 4
    "algo.actor_lr" = {low = 1e-4, high = 1e-3, log = true}
    "algo.batch_size" = {values = [128, 256]}

A key ``algo.FIELD`` applies to every algorithm of the spec, ``NAME.FIELD`` (``iql.beta``) only to
algorithm NAME. Trials are (algorithm, dataset, config); the trials that differ only in float fields
(kind ``number``) form one **group**, trained as one population (``offrl.fit(population=...)``:
members x seeds in one compiled call); every other difference (sizes, integers, choices, flags,
algorithms, datasets) starts another group. A group whose float field cannot be traced (it reaches
a shape, a branch or the host-side data preparation) trains its members one after another instead.

Every group writes its run folder under ``OUT/groups/``; a group with ``done.json`` is finished and a
restarted sweep skips it (a killed group resumes from its checkpoint). The merged table ``OUT/results.csv``
(and ``.jsonl``, ``table.md``, optional ``table.html``) has one row per trial: score mean, std and 95%
confidence interval over seeds, the best config per (dataset, algorithm) in bold and in ``best.csv``;
``OUT/tuning.csv``/``.png`` hold the tuning-budget curves (:mod:`offrl.tuning`).

Local backend: ``--workers`` processes (default: the cores this process may use), each pinned to one
core with ``taskset`` and one XLA thread. Ray backend: each group is one Tune trial with one CPU;
trials report the best member's evaluation at every chunk-boundary evaluation, which ASHA uses to
stop unpromising groups early (``--no-asha`` keeps them all); trials read and write absolute paths
only, run one XLA thread each and never preallocate GPU memory (``XLA_PYTHON_CLIENT_PREALLOCATE=false``),
so trials sharing a machine or a GPU do not fight over it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import tyro

from offrl.config import Checked, ConfigError, choice, declared, flag, integer, text

SPEC_KEYS = ("name", "algos", "datasets", "seeds", "steps", "loop", "fixed", "grid", "random")
LOOP_KEYS = ("seed", "chunk", "eval_interval", "eval_episodes", "checkpoint_interval", "normalize_observations",
             "reward_scaling", "seed_strategy")
#: One XLA thread per trial on a CPU, no GPU memory grabbed up front: trials share the machine.
TRIAL_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
             "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


class SweepError(ValueError):
    """A sweep spec the user wrote is malformed (a user error: one line, exit 2)."""


# ----------------------------------------------------------------------------- the spec


def load_spec(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep spec {path} does not exist; write a TOML or JSON spec (see `offrl sweep --help`)")
    try:
        if path.suffix.lower() == ".json":
            spec = json.loads(path.read_text())
        else:
            import tomllib

            spec = tomllib.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise SweepError(f"sweep spec {path} cannot be read: {exc}") from None
    if not isinstance(spec, dict):
        raise SweepError(f"sweep spec {path} must hold a table/object at the top")
    return spec


def _list(spec: dict, key: str) -> list:
    value = spec.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SweepError(f"the spec's {key!r} must be a non-empty list (e.g. {key} = [\"...\"])")
    return value


def _field_of(algo, key: str, algos: list[str]) -> Optional[str]:
    """The config field a spec key names for ``algo`` (None: the key is another algorithm's)."""
    import difflib

    if "." not in key:
        raise SweepError(f"spec key {key!r}: name a config field as algo.FIELD (every algorithm) or ALGO.FIELD")
    prefix, name = key.split(".", 1)
    if prefix not in ("algo", *algos):
        raise SweepError(f"spec key {key!r}: {prefix!r} is neither 'algo' nor one of the spec's algorithms {algos}")
    if prefix not in ("algo", algo.name):
        return None
    fields = [f.name for f in dataclasses.fields(algo.config_cls)]
    if name not in fields:
        guess = difflib.get_close_matches(name, fields, n=1)
        hint = f" (did you mean {prefix}.{guess[0]}?)" if guess else ""
        raise SweepError(f"spec key {key!r}: {algo.name}'s config has no field {name!r}{hint}")
    return name


def _draw(rng: np.random.Generator, key: str, dist: Any) -> Any:
    if not isinstance(dist, dict):
        raise SweepError(f"random {key!r}: give {{low, high[, log, int]}} or {{values = [...]}}; got {dist!r}")
    if "values" in dist:
        values = dist["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"random {key!r}: values must be a non-empty list")
        return values[int(rng.integers(len(values)))]
    try:
        low, high = float(dist["low"]), float(dist["high"])
    except (KeyError, TypeError, ValueError):
        raise SweepError(f"random {key!r}: give numeric low and high (or values = [...]); got {dist!r}") from None
    if not low <= high or (dist.get("log") and low <= 0):
        raise SweepError(f"random {key!r}: need low <= high{' and low > 0 on a log scale' if dist.get('log') else ''}")
    x = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if dist.get("log") else float(rng.uniform(low, high))
    return int(round(x)) if dist.get("int") else x


def expand(spec: dict) -> tuple[list[dict], dict]:
    """The spec's trials ``{algo, dataset, overrides}`` and its run settings; every trial's config is built
    (:class:`ConfigError` for a value of the wrong type or out of range) before anything trains."""
    from offrl.algos import get_algo
    from offrl.population import parse_value
    from offrl.train import LoopSettings, config_from_dict

    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise SweepError(f"unknown spec key {unknown[0]!r}; valid keys: {', '.join(SPEC_KEYS)}")
    algos = [str(a) for a in _list(spec, "algos")]
    datasets = [str(d) for d in _list(spec, "datasets")]
    loop = dict(spec.get("loop") or {})
    bad = [k for k in loop if k not in LOOP_KEYS]
    if bad:
        raise SweepError(f"unknown [loop] option {bad[0]!r}; valid: {', '.join(LOOP_KEYS)}")
    settings = {"seeds": spec.get("seeds", 1), "steps": spec.get("steps", 20_000), **loop}
    LoopSettings(**settings)  # ConfigError on a value out of range
    grid = dict(spec.get("grid") or {})
    random_spec = dict(spec.get("random") or {})
    samples = random_spec.pop("samples", 1 if random_spec else 0)
    rng = np.random.default_rng(random_spec.pop("seed", 0))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid {key!r}: the grid is empty; give a non-empty list of values")
    if "grid" in spec and not grid:
        raise SweepError("the spec's [grid] is empty; give at least one field with a list of values")
    if not isinstance(samples, int) or samples < (1 if random_spec else 0):
        raise SweepError(f"random samples must be an int >= 1; got {samples!r}")
    draws = [{k: _draw(rng, k, d) for k, d in random_spec.items()} for _ in range(samples)] or [{}]
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    trials = []
    for algo_name in algos:
        algo = get_algo(algo_name)
        tuple_fields = {f.name for f in dataclasses.fields(algo.config_cls) if declared(f) is not None and declared(f).kind == "sizes"}
        for dataset in datasets:
            for point, draw in itertools.product(points, draws):
                overrides = {}
                for key, value in {**(spec.get("fixed") or {}), **point, **draw}.items():
                    name = _field_of(algo, key, algos)
                    if name is None:
                        continue
                    if declared_kind(algo.config_cls, name) in ("number", "integer"):
                        value = parse_value(algo.config_cls, name, value, f"spec {key}")
                    overrides[name] = tuple(value) if name in tuple_fields and isinstance(value, list) else value
                config_from_dict(algo.config_cls, overrides)  # ConfigError: wrong type or out of range
                trials.append({"algo": algo_name, "dataset": dataset, "overrides": overrides})
    unique = list({json.dumps(t, sort_keys=True): t for t in trials}.values())
    return unique, settings


def declared_kind(config_cls: type, name: str) -> Optional[str]:
    f = next(f for f in dataclasses.fields(config_cls) if f.name == name)
    valid = declared(f)
    return valid.kind if valid is not None else None


def make_groups(trials: list[dict], settings: dict) -> list[dict]:
    """Trials that differ only in float fields share a group (one population call)."""
    from offrl.algos import get_algo

    varying: dict[tuple, set] = {}  # per (algo, dataset): the float fields that take more than one value
    seen: dict[tuple, dict] = {}
    for trial in trials:
        cls = get_algo(trial["algo"]).config_cls
        for k, v in trial["overrides"].items():
            if declared_kind(cls, k) == "number":
                values = seen.setdefault((trial["algo"], trial["dataset"]), {}).setdefault(k, set())
                values.add(v)
                if len(values) > 1:
                    varying.setdefault((trial["algo"], trial["dataset"]), set()).add(k)
    groups: dict[str, dict] = {}
    for trial in trials:
        vary = varying.get((trial["algo"], trial["dataset"]), set())
        floats = {k: v for k, v in trial["overrides"].items() if k in vary}
        fixed = {k: v for k, v in trial["overrides"].items() if k not in floats}
        key = json.dumps([trial["algo"], trial["dataset"], fixed, sorted(floats)], sort_keys=True, default=list)
        group = groups.setdefault(key, {"algo": trial["algo"], "dataset": trial["dataset"], "fixed": fixed, "members": [],
                                        **settings})
        if floats not in group["members"]:
            group["members"].append(floats)
    out = []
    for group in groups.values():
        ident = hashlib.sha1(json.dumps(group, sort_keys=True, default=list).encode()).hexdigest()[:10]
        group["id"] = f"{group['algo']}-{str(group['dataset']).replace('/', '_')}-{ident}"
        out.append(group)
    return out


# ----------------------------------------------------------------------------- one group


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=list))
    os.replace(tmp, path)


def run_group(group: dict, run_dir: str | os.PathLike, on_eval=None, progress: bool = False) -> dict:
    """Train one group (a population, or its members one after another when they cannot share a call) and write
    ``run_dir/done.json``: the group and one row per member."""
    from offrl.algos import get_algo
    from offrl.population import Population, member_rows
    from offrl.train import config_from_dict, fit

    run_dir = Path(run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    algo = get_algo(group["algo"])
    config = config_from_dict(algo.config_cls, group["fixed"])
    loop = {k: group[k] for k in LOOP_KEYS if k in group}
    kwargs = dict(steps=group["steps"], seeds=group["seeds"], progress=progress, on_eval=on_eval, **loop)
    members = [m for m in group["members"] if m]
    population = Population.of(algo.config_cls, members) if members else None
    t0 = time.perf_counter()
    rows, mode = None, "population" if population is not None else "single"
    if (run_dir / "checkpoint.msgpack").exists() and (run_dir / "config.json").exists():
        result = fit(None, group["dataset"], resume=run_dir, progress=progress, on_eval=on_eval)
    else:
        try:
            result = fit(config, group["dataset"], run_dir=run_dir, population=population, **kwargs)
        except ConfigError as exc:
            if population is None or "a population can vary only" not in str(exc):
                raise
            rows, mode = [], f"members one by one ({exc})"
            for m in range(population.size):
                r = fit(population.member_config(config, m), group["dataset"], run_dir=run_dir / f"member-{m}", **kwargs)
                one = Population(population.names, (population.values[m],))
                rows.append({**member_rows(one, group["seeds"], r.final_eval, None, r.step)[0], "member": m})
    if rows is None:
        rows = result.members or member_rows(Population((), ((),)), group["seeds"], result.final_eval, None, result.step)
    meta = json.loads(((run_dir / "config.json") if (run_dir / "config.json").exists()
                       else (run_dir / "member-0" / "config.json")).read_text())
    done = {"group": group, "mode": mode, "rows": rows, "seconds": time.perf_counter() - t0,
            "ref_min_score": meta["dataset_info"].get("ref_min_score"), "ref_max_score": meta["dataset_info"].get("ref_max_score")}
    _write_json(run_dir / "done.json", done)
    return done


def _best_score(row: dict) -> Optional[float]:
    values = row.get("per_member_score") or row.get("per_member_return_mean")
    if values:
        return float(max(values))
    value = row.get("normalized_score", row.get("return_mean"))
    return None if value is None else float(value)


# ----------------------------------------------------------------------------- backends


def _trial_env() -> dict:
    env = {**os.environ, **TRIAL_ENV}
    src = str(Path(__file__).resolve().parents[1])  # the offrl this process runs, first on the trials' path
    env["PYTHONPATH"] = os.pathsep.join([src, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def run_local(groups: list[dict], out: Path, workers: Optional[int], log=print) -> None:
    """Run the groups as processes, at most ``workers`` at a time, each pinned to its own core."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    workers = workers or len(cores)
    free = [cores[i % len(cores)] for i in range(workers)]
    pending, running, failed = list(groups), {}, []
    pin = shutil.which("taskset") is not None
    env = _trial_env()
    done_count = 0
    while pending or running:
        while pending and free:
            group, core = pending.pop(0), free.pop(0)
            run_dir = out / "groups" / group["id"]
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(run_dir / "group.json", group)
            cmd = (["taskset", "-c", str(core)] if pin else []) + [sys.executable, "-m", "offrl.sweep", "--run-group",
                                                                  str(run_dir)]
            logfile = (run_dir / "worker.log").open("w")
            running[subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env)] = (group, core, logfile)
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            group, core, logfile = running.pop(proc)
            logfile.close()
            free.append(core)
            done_count += 1
            if proc.returncode != 0:
                tail = (out / "groups" / group["id"] / "worker.log").read_text().strip().splitlines()[-1:] or [""]
                failed.append(group["id"])
                log(f"[{done_count}/{len(groups)}] {group['id']} FAILED (exit {proc.returncode}): {tail[0]}")
            else:
                log(f"[{done_count}/{len(groups)}] {group['id']} done")
    if failed:
        log(f"{len(failed)} group(s) failed; their logs: {out}/groups/ID/worker.log. Run the sweep again to retry them.")


def run_ray(groups: list[dict], out: Path, address: Optional[str], num_cpus: Optional[int], asha: bool,
            grace_steps: Optional[int], log=print) -> None:
    """Every group one Ray Tune trial with one CPU; ASHA stops groups whose best member lags at an evaluation."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
    except ImportError:
        raise SweepError("the Ray backend needs Ray Tune: pip install 'offrl[ray]'") from None
    env = {k: v for k, v in _trial_env().items() if k in (*TRIAL_ENV, "PYTHONPATH", "OFFRL_HOME", "JAX_PLATFORMS",
                                                           "JAX_COMPILATION_CACHE_DIR", "JAX_DISABLE_MOST_OPTIMIZATIONS")}
    env["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env}, ignore_reinit_error=True)
    try:
        def trainable(config):
            group, run_dir = config["job"]["group"], config["job"]["run_dir"]

            def report(row):  # intermediate evaluations only: the last report comes after done.json is written
                score = _best_score(row)
                if score is not None and row["step"] < group["steps"]:
                    tune.report({"score": score, "step": row["step"]})

            done = run_group(group, run_dir, on_eval=report)
            scores = [r.get("normalized_score", r.get("return_mean")) for r in done["rows"]]
            scores = [x for x in scores if x is not None]
            tune.report({"score": max(scores) if scores else 0.0, "step": group["steps"], "evaluated": bool(scores)})

        steps = max(g["steps"] for g in groups)
        scheduler = (ASHAScheduler(time_attr="step", metric="score", mode="max", max_t=steps,
                                   grace_period=grace_steps or max(steps // 4, 1)) if asha else None)
        jobs = [{"group": g, "run_dir": str((out / "groups" / g["id"]).absolute())} for g in groups]
        for job in jobs:
            Path(job["run_dir"]).mkdir(parents=True, exist_ok=True)
            _write_json(Path(job["run_dir"]) / "group.json", job["group"])
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"job": tune.grid_search(jobs)},
            tune_config=tune.TuneConfig(scheduler=scheduler),
            run_config=tune.RunConfig(storage_path=str((out / "ray").absolute()), name="tune", verbose=0),
        )
        results = tuner.fit()
        errors = [r.error for r in results if r.error is not None]
        stopped = 0
        for r in results:  # ASHA's stops: marked, so a restarted sweep does not train them to the end
            run_dir = Path(r.config["job"]["run_dir"])
            if r.error is None and not (run_dir / "done.json").exists():
                stopped += 1
                _write_json(run_dir / "stopped.json", {"step": (r.metrics or {}).get("step"), "by": "asha"})
        log(f"ray: {len(results)} trial(s), {stopped} stopped early by ASHA, {len(errors)} failed")
        for e in errors[:3]:
            log(f"  {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}")
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- the merged table


def _trial_row(group: dict, row: dict, status: str) -> dict:
    varied = {k: row[k] for k in (row.keys() - {"member"}) if k in _member_names(group)}
    config = {**group["fixed"], **varied}
    score_key = "normalized_score" if row.get("normalized_score") is not None else "return_mean"
    per_seed = row.get("per_seed_scores") if score_key == "normalized_score" else row.get("per_seed_returns")
    return {"dataset": group["dataset"], "algo": group["algo"],
            "config": " ".join(f"{k}={_fmt(v)}" for k, v in sorted(config.items())) or "defaults",
            "score": score_key, "score_mean": row.get(score_key), "score_std": row.get(f"{score_key}_std", row.get("return_std")),
            "score_ci95": row.get(f"{score_key}_ci95", row.get("return_ci95")), "per_seed": per_seed,
            "seeds": group["seeds"], "steps": row.get("step", group["steps"]), "status": status, "group": group["id"],
            "fields": config}


def _member_names(group: dict) -> set:
    return set().union(*(m.keys() for m in group["members"])) if group["members"] else set()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    return str(v)


def collect(out: Path) -> tuple[list[dict], dict]:
    """One row per trial from every group folder (finished, or stopped early: its last evaluation), and the
    tuning-budget arms: (algo, dataset) -> every finished policy's episode scores."""
    from offrl.logger import read_jsonl
    from offrl.population import ci95
    from offrl.tuning import episode_scores

    rows, arms = [], {}
    for gdir in sorted((out / "groups").glob("*")):
        if (gdir / "done.json").exists():
            done = json.loads((gdir / "done.json").read_text())
            for r in done["rows"]:
                rows.append(_trial_row(done["group"], r, "done"))
                arms.setdefault((done["group"]["algo"], done["group"]["dataset"]), []).extend(
                    episode_scores(r, done.get("ref_min_score"), done.get("ref_max_score")))
            continue
        if not (gdir / "group.json").exists():
            continue
        group = json.loads((gdir / "group.json").read_text())
        evals = read_jsonl(gdir / "eval.jsonl")
        if not evals:
            continue
        last, seeds = evals[-1], group["seeds"]
        key = "per_seed_scores" if last.get("per_seed_scores") else "per_seed_returns"
        per_agent = last.get(key) or []
        members = group["members"] if any(group["members"]) else [{}]
        for m, values in enumerate(members):
            per_seed = per_agent[m * seeds:(m + 1) * seeds]
            stat = "normalized_score" if key == "per_seed_scores" else "return_mean"
            r = {**values, "step": last["step"], stat: float(np.mean(per_seed)) if per_seed else None,
                 f"{stat}_std": float(np.std(per_seed)) if per_seed else None, f"{stat}_ci95": ci95(per_seed),
                 ("per_seed_scores" if key == "per_seed_scores" else "per_seed_returns"): per_seed}
            status = "stopped by ASHA" if (gdir / "stopped.json").exists() else "unfinished"
            rows.append(_trial_row(group, r, f"{status} at {last['step']}"))
    return rows, arms


def write_tables(out: Path, html: bool = False) -> Path:
    """``results.jsonl``/``.csv`` (one row per trial), ``best.csv``, ``table.md`` (optionally ``table.html``),
    and the tuning-budget curves ``tuning.csv``/``.png``."""
    from offrl.tuning import write_tuning

    rows, arms = collect(out)
    rows.sort(key=lambda r: (r["dataset"], r["algo"], -(r["score_mean"] if r["score_mean"] is not None else -np.inf)))
    _write_text(out / "results.jsonl", "".join(json.dumps(r, default=list) + "\n" for r in rows))
    fields = ["dataset", "algo", "config", "score", "score_mean", "score_std", "score_ci95", "per_seed", "seeds", "steps",
              "status", "group"]
    _write_csv(out / "results.csv", fields, [{**r, "per_seed": " ".join(f"{s:.2f}" for s in r["per_seed"] or [])} for r in rows])
    best = {}
    for r in rows:  # sorted: the first finished row of each (dataset, algo) is its best
        if r["status"] == "done" and r["score_mean"] is not None:
            best.setdefault((r["dataset"], r["algo"]), r)
    _write_csv(out / "best.csv", fields, [{**r, "per_seed": " ".join(f"{s:.2f}" for s in r["per_seed"] or [])} for r in best.values()])
    lines = [f"# `offrl sweep` {out.name}", "",
             "One row per trial: score (normalised when the dataset has reference scores, else the return) mean ± 95% "
             "confidence interval over seeds (Student t), std, seeds x updates; in bold the best finished config of each "
             "(dataset, algorithm). Rows: `results.jsonl`, `results.csv`; best configs: `best.csv`; tuning budget: "
             "`tuning.csv`, `tuning.png`.", "",
             "| dataset | algo | config | score (mean ± 95% CI) | std | budget | status |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cell = "–" if r["score_mean"] is None else f"{r['score_mean']:.1f} ± {r['score_ci95']:.1f}"
        if best.get((r["dataset"], r["algo"])) is r:
            cell = f"**{cell}**"
        std = "–" if r["score_std"] is None else f"{r['score_std']:.1f}"
        lines.append(f"| {r['dataset']} | {r['algo']} | {r['config']} | {cell} | {std} | {r['seeds']} x {r['steps']:,} | {r['status']} |")
    if best:
        lines += ["", "## Best config per dataset", "", "| dataset | algo | config | score |", "|---|---|---|---|"]
        by_dataset = {}
        for (d, _), r in best.items():
            if d not in by_dataset or r["score_mean"] > by_dataset[d]["score_mean"]:
                by_dataset[d] = r
        for d, r in sorted(by_dataset.items()):
            lines.append(f"| {d} | {r['algo']} | {r['config']} | {r['score_mean']:.1f} ± {r['score_ci95']:.1f} |")
    tuning = write_tuning(out, {k: v for k, v in arms.items() if v})
    if tuning is not None:
        lines += ["", "Tuning budget (expected score of the policy UCB picks after k evaluation episodes): `tuning.png`."]
    _write_text(out / "table.md", "\n".join(lines) + "\n")
    if html:
        from offrl import htmlpage

        body = [f"<h1>offrl sweep {htmlpage.esc(out.name)}</h1>", htmlpage.table(
            ["dataset", "algo", "config", "score (mean ± 95% CI)", "std", "budget", "status"],
            [[htmlpage.esc(r["dataset"]), htmlpage.esc(r["algo"]), htmlpage.esc(r["config"]),
              htmlpage.esc(None if r["score_mean"] is None else f"{r['score_mean']:.1f} ± {r['score_ci95']:.1f}"),
              htmlpage.esc(None if r["score_std"] is None else f"{r['score_std']:.1f}"),
              htmlpage.esc(f"{r['seeds']} x {r['steps']:,}"), htmlpage.esc(r["status"])] for r in rows],
            numeric={3, 4}, row_classes=["best" if best.get((r["dataset"], r["algo"])) is r else "" for r in rows])]
        if (out / "tuning.png").exists():
            body.append(htmlpage.img((out / "tuning.png").read_bytes(), "tuning-budget curves"))
        htmlpage.write_page(out / "table.html", htmlpage.page(f"offrl sweep {out.name}", "\n".join(body)))
    return out / "table.md"


def _write_text(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class SweepArgs(Checked):
    """Train a sweep spec as populations (one compiled call per group) and merge the results into one table.

    The spec, TOML or JSON: algos = [...], datasets = [...], seeds, steps; [loop] (chunk, eval_interval,
    eval_episodes, seed, ...); [fixed] FIELD = value; [grid] FIELD = [values]; [random] samples, seed,
    FIELD = {low, high[, log][, int]} or {values = [...]}. A FIELD is algo.NAME (every algorithm) or
    ALGO.NAME (one). Trials differing only in float fields train as one population (a group)."""

    _label = ""

    spec: tyro.conf.Positional[str]
    """The sweep spec: a .toml or .json file (format above)."""
    out: Optional[str] = text(None, optional=True)
    """Sweep folder (default: sweeps/SPEC_NAME); a restarted sweep skips the groups finished in it."""
    backend: Literal["local", "ray"] = choice("local")
    """local: one process per core, pinned; ray: Ray Tune trials (pip install 'offrl[ray]')."""
    workers: Optional[int] = integer(None, ge=1, optional=True)
    """Local backend: processes at once (default: the usable cores)."""
    ray_address: Optional[str] = text(None, optional=True)
    """Ray backend: a running cluster's address (default: start a local Ray)."""
    num_cpus: Optional[int] = integer(None, ge=1, optional=True)
    """Ray backend without --ray-address: CPUs of the local Ray (default: all)."""
    asha: bool = flag(True)
    """Ray backend: stop groups whose best member lags at an evaluation (ASHA)."""
    grace_steps: Optional[int] = integer(None, ge=1, optional=True)
    """ASHA: updates before a group can be stopped (default: a quarter of the run)."""
    html: bool = flag(False)
    """Also write table.html."""
    dry_run: bool = flag(False)
    """List the groups and train nothing."""
    redraw: bool = flag(False)
    """Train nothing; redraw the tables from the finished groups."""


def sweep(args: "SweepArgs", log=print) -> Path:
    spec = load_spec(args.spec)
    trials, settings = expand(spec)
    groups = make_groups(trials, settings)
    out = Path(args.out or Path("sweeps") / str(spec.get("name") or Path(args.spec).stem)).absolute()
    agents = sum(max(len(g["members"]), 1) * g["seeds"] for g in groups)
    log(f"sweep {out.name}: {len(trials)} trial(s) in {len(groups)} group(s), {agents} agents x {settings['steps']:,} updates")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "spec.json", spec)
    if args.dry_run:
        for g in groups:
            log(f"  {g['id']}: {len(g['members']) or 1} member(s) x {g['seeds']} seed(s), fixed {g['fixed'] or '{}'}")
        return out
    pending = [g for g in groups if not any((out / "groups" / g["id"] / f).exists() for f in ("done.json", "stopped.json"))]
    if len(pending) < len(groups):
        log(f"skipping {len(groups) - len(pending)} finished group(s)")
    if pending and not args.redraw:
        if args.backend == "ray":
            run_ray(pending, out, args.ray_address, args.num_cpus, args.asha, args.grace_steps, log=log)
        else:
            run_local(pending, out, args.workers, log=log)
    table = write_tables(out, html=args.html)
    log(f"table: {table}")
    return table


def main(argv: list[str] | None = None) -> int:
    from offrl.usage import parse_args

    args = parse_args(SweepArgs, list(sys.argv[1:] if argv is None else argv), "offrl sweep")
    sweep(args)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-group":  # one group, in a worker process of the local backend
        folder = Path(sys.argv[2])
        run_group(json.loads((folder / "group.json").read_text()), folder)
        sys.exit(0)
    sys.exit(main())
