"""``offrl ope RUN_DIR... --dataset NAME``: trained runs' policies evaluated off-policy on a dataset, and
``offrl ope select RUN_DIR...``: the runs ranked by one estimator.

This module joins what :mod:`offrl.ope` keeps apart: it loads each run with :func:`offrl.load_agent` and
turns the agent into an :class:`offrl.ope.Policy` by the class of its policy network (the densities of
:mod:`offrl.nets`), then prints a table and writes ``ope.json`` and ``ope.csv``.

Which policy is evaluated: by default the agent's deterministic action (what ``offrl eval`` runs): the
argmax of a discrete agent (importance weights 0 or 1/pi_beta) and the mean action of a continuous one,
which has no density, so IS and DR are left out for it (``--smoothing SIGMA`` evaluates N(pi(s), SIGMA^2)
in the unit action box instead). ``--stochastic`` evaluates the sampled policy with its own density:
softmax of logits (or of Q values), the Gaussian of ``GaussianActor`` algorithms (awac, awr, crr, iql, bc
with a Gaussian policy) and the tanh-Gaussian of ``TanhGaussianActor`` ones (sac, cql, calql, brac,
combo, edac, mopo, mobile). Deterministic actors (td3bc, rebrac, bc) and policies that take the argmax
over sampled candidates (bcq, bear) have no density.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import jax
import numpy as np
import tyro

from offrl.checkpoint import atomic_write_bytes
from offrl.ope import (DEFAULT_ESTIMATORS, ESTIMATORS, FQEConfig, ModelBasedConfig, OPEConfig, OPEError, Policy, ProxyConfig,
                       behaviour_log_probs, episodes_of, evaluate_policy, parse_estimators, smoothed)
from offrl.usage import UsageError, parse_args

#: Algorithms whose act takes the argmax of a critic over sampled candidates: their action has no density.
ARGMAX_OVER_SAMPLES = ("bcq", "bear")


def agent_policy(agent, seed_index: int = 0, stochastic: bool = False, smoothing: float | None = None,
                 name: str = "policy") -> Policy:
    """The evaluation policy of a loaded agent (:func:`offrl.load_agent`) as pure functions of raw observations."""
    from offrl.nets import GaussianActor, TanhGaussianActor

    algo, config, transforms = agent.algo, agent.config, agent.transforms
    if not 0 <= seed_index < agent.num_seeds:
        raise OPEError(f"--seed-index {seed_index} is out of range: {name} holds {agent.num_seeds} seed(s)")
    state = jax.tree.map(lambda x: x[seed_index], agent.states)
    obs_dim = int(agent.meta["spec"]["obs_dim"])
    norm = lambda o: transforms.normalize_obs(o)
    if algo.discrete:
        source = getattr(state, "actor", None) or state.critic
        outputs = lambda o: source.apply_fn(source.params, norm(o))
        note = "softmax of the policy's logits" if hasattr(state, "actor") else "softmax of Q"
        kind = "categorical" if stochastic else "greedy"
        return Policy(kind, outputs, obs_dim, num_actions=transforms.num_actions, name=name,
                      note=note if stochastic else "argmax action")
    low, high = np.asarray(transforms.action_low, np.float32), np.asarray(transforms.action_high, np.float32)
    scale, offset = (high - low) / 2.0, (high + low) / 2.0
    actor = getattr(state, "actor", None)
    module = getattr(getattr(actor, "apply_fn", None), "__self__", None)
    if stochastic:
        if algo.name not in ARGMAX_OVER_SAMPLES and isinstance(module, (GaussianActor, TanhGaussianActor)):
            kind = "gaussian" if isinstance(module, GaussianActor) else "tanh_gaussian"
            outputs = lambda o: actor.apply_fn(actor.params, norm(o))
            return Policy(kind, outputs, obs_dim, action_scale=scale, action_offset=offset, name=name,
                          note=f"{type(module).__name__} of {algo.name}")
        why = ("takes the argmax of its critic over sampled actions" if algo.name in ARGMAX_OVER_SAMPLES
               else "has a deterministic actor")
        if smoothing is None:
            raise OPEError(f"{name}: {algo.name}'s policy {why}, so --stochastic has no density to evaluate. Fix: drop "
                           "--stochastic (FQE and mb evaluate its action), or add --smoothing SIGMA for IS and DR")
    key = jax.random.PRNGKey(0)
    outputs = lambda o: algo.act(config, state, norm(o), key, True)
    policy = Policy("deterministic", outputs, obs_dim, action_scale=scale, action_offset=offset, name=name,
                    note=f"{algo.name}'s deterministic action")
    return smoothed(policy, smoothing) if smoothing is not None else policy


def _check_fits(agent, dataset, name: str) -> None:
    spec = agent.meta["spec"]
    if int(spec["obs_dim"]) != dataset.obs_dim:
        raise OPEError(f"{name} was trained on observations of {spec['obs_dim']} dimensions "
                       f"({agent.dataset_info.name or 'its dataset'}) but {dataset.info.name} has {dataset.obs_dim}: the policy "
                       "comes from another observation space. Fix: evaluate it on a dataset of its own environment")
    if (agent.transforms.num_actions is None) != (dataset.num_actions is None) or (
            agent.transforms.num_actions not in (None, dataset.num_actions)):
        raise OPEError(f"{name} acts in {agent.transforms.num_actions or 'continuous'} actions but {dataset.info.name} has "
                       f"{dataset.num_actions or 'continuous'} actions. Fix: evaluate it on a dataset of its own environment")


@dataclass
class OpeArgs:
    """Estimate the value of trained runs' policies from a dataset, without running them."""

    run_dirs: tyro.conf.Positional[Annotated[tuple[str, ...], tyro.conf.arg(metavar="RUN_DIR")]]
    """Run folders of `offrl train` (or checkpoint files)."""
    dataset: Optional[str] = None
    """Logged data: a built-in name or a file (default: the first run's training dataset)."""
    estimators: str = ",".join(DEFAULT_ESTIMATORS)
    """Comma-separated estimators out of is, wis, pdis, wpdis, dr, wdr, fqe, mb."""
    behaviour: Literal["auto", "data", "proxy"] = "auto"
    """pi_beta: the dataset's behaviour_log_probs (data), a behaviour-cloning proxy fitted now (proxy), or data when stored (auto)."""
    stochastic: bool = False
    """Evaluate the sampled policy with its density instead of its deterministic action."""
    smoothing: Optional[float] = None
    """Evaluate a deterministic continuous policy as N(pi(s), SIGMA^2) in the unit action box (for IS and DR)."""
    discount: float = 0.99
    """gamma of the estimated value E[sum_t gamma^t r_t]."""
    max_weight: Optional[float] = None
    """Clip per-decision importance weights at this value (the count is reported)."""
    bootstrap: int = 200
    """Bootstrap resamples of the episodes for the confidence intervals."""
    confidence: float = 0.95
    """Coverage of the intervals."""
    seed_index: int = 0
    """Which seed of a multi-seed run to evaluate."""
    fqe_steps: int = 20_000
    """FQE regression updates."""
    fqe_hidden_dims: tuple[int, ...] = (256, 256)
    """FQE's Q network."""
    proxy_steps: int = 10_000
    """Maximum-likelihood updates of the behaviour proxy."""
    mb_horizon: Optional[int] = None
    """Model rollout length (default: the longest episode of the data)."""
    mb_max_epochs: Optional[int] = None
    """Epoch budget of the dynamics ensemble when it has to be trained."""
    dynamics: str = ""
    """A dynamics file for mb (default: the dataset's cached ensemble, trained if absent)."""
    out: str = "ope"
    """Folder for ope.json and ope.csv."""
    progress: bool = True
    """Report training progress (FQE, the proxy) on stderr."""


@dataclass
class SelectArgs(OpeArgs):
    """Rank trained runs by one off-policy estimate of their value."""

    by: str = "fqe"
    """The estimator that ranks the runs."""


def _configs(args: OpeArgs) -> tuple[OPEConfig, FQEConfig, ProxyConfig, ModelBasedConfig]:
    ope = OPEConfig(discount=args.discount, max_weight=args.max_weight, num_bootstrap=args.bootstrap, confidence=args.confidence)
    return (ope, FQEConfig(discount=args.discount, steps=args.fqe_steps, hidden_dims=tuple(args.fqe_hidden_dims)),
            ProxyConfig(source=args.behaviour, steps=args.proxy_steps),
            ModelBasedConfig(discount=args.discount, horizon=args.mb_horizon, max_epochs=args.mb_max_epochs, dynamics=args.dynamics))


def run_ope(args: OpeArgs, estimators: tuple[str, ...], strict: bool) -> tuple[list[dict], dict]:
    """Every run's estimates as table rows, and the shared facts (dataset, behaviour source)."""
    from offrl.agent import load_agent
    from offrl.data import load_dataset

    if not args.run_dirs:
        raise UsageError("give at least one RUN_DIR (a folder made by `offrl train`)")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.progress else None
    ope, fqe, proxy, model = _configs(args)
    agents = [(str(run), load_agent(run)) for run in args.run_dirs]
    dataset = load_dataset(args.dataset or agents[0][1].dataset_info.name)
    episodes = episodes_of(dataset)
    behaviour = None
    rows, skipped_all = [], {}
    for run, agent in agents:
        name = Path(run).name or run
        _check_fits(agent, dataset, name)
        policy = agent_policy(agent, args.seed_index, args.stochastic, args.smoothing, name)
        if behaviour is None and policy.has_density and any(e in ("is", "wis", "pdis", "wpdis", "dr", "wdr") for e in estimators):
            behaviour = behaviour_log_probs(dataset, proxy, log)
        estimates, skipped = evaluate_policy(dataset, policy, estimators, config=ope, behaviour=behaviour, proxy=proxy,
                                             fqe=fqe, model=model, episodes=episodes, strict=strict, log=log)
        for e in estimates:
            rows.append({"run": run, "algo": agent.algo.name, "policy": policy.kind, **e.to_dict()})
        for est, why in skipped.items():
            skipped_all.setdefault(est, why)
            rows.append({"run": run, "algo": agent.algo.name, "policy": policy.kind, "estimator": est, "value": None,
                         "note": why})
    facts = {"dataset": dataset.info.name, "episodes": episodes.num_episodes, "transitions": len(dataset),
             "discount": args.discount, "behaviour": behaviour.source if behaviour is not None else None,
             "behaviour_nll": behaviour.nll if behaviour is not None else None, "estimators": list(estimators),
             "stochastic": args.stochastic, "smoothing": args.smoothing, "max_weight": args.max_weight,
             "seed_index": args.seed_index, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    return rows, facts


CSV_COLUMNS = ("run", "algo", "policy", "estimator", "value", "ci_low", "ci_high", "confidence", "episodes", "ess",
               "ess_fraction", "weights_clipped", "weights_total", "trajectories_clipped", "max_weight", "behaviour",
               "td_loss", "note")


def write_results(out: str, rows: list[dict], facts: dict, name: str = "ope") -> tuple[Path, Path]:
    """``OUT/NAME.json`` ({facts, rows}) and ``OUT/NAME.csv`` (one row per run and estimator), atomically."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    js = folder / f"{name}.json"
    atomic_write_bytes(js, json.dumps({**facts, "rows": rows}, indent=2, default=float).encode())
    buf = io.StringIO()
    columns = (("rank",) if any("rank" in r for r in rows) else ()) + CSV_COLUMNS
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path = folder / f"{name}.csv"
    atomic_write_bytes(path, buf.getvalue().encode())
    return js, path


def _fmt(x, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def print_table(rows: list[dict], facts: dict, title: str) -> None:
    """The estimates as a rich table; the estimators left out are listed once per reason below it."""
    from rich.console import Console
    from rich.table import Table

    shown = [r for r in rows if r.get("value") is not None]
    table = Table(title=title)
    level = int(round(100 * (shown[0]["confidence"] if shown else 0.95)))
    for col in ("rank", "run", "estimator", "value", f"{level}% CI", "ESS / episodes", "clipped weights"):
        if col == "rank" and not any("rank" in r for r in shown):
            continue
        table.add_column(col, justify="left" if col in ("run", "estimator") else "right")
    for r in shown:
        ess = "" if r.get("ess") is None else f"{r['ess']:.1f} / {r['episodes']}"
        clipped = "" if r.get("max_weight") is None else f"{r['weights_clipped']} / {r['weights_total']}"
        cells = [str(r["run"]), r["estimator"], _fmt(r["value"]), f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", ess, clipped]
        table.add_row(*([str(r["rank"])] if "rank" in r else []) + cells)
    console = Console()
    console.print(table)
    left_out: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.get("value") is None:
            runs = left_out.setdefault(r["note"], {})
            runs.setdefault(r["estimator"], []).append(str(r["run"]))
    for note, by_est in left_out.items():
        runs = sorted({run for rs in by_est.values() for run in rs})
        console.print(f"left out {', '.join(by_est)} for {', '.join(runs)}: {note}", highlight=False)
    console.print(f"{facts['dataset']}: {facts['episodes']} episodes, discount {facts['discount']}, behaviour log-probs: "
                  f"{facts['behaviour'] or 'not needed'}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "select":
        args = parse_args(SelectArgs, argv[1:], "offrl ope select")
        by = parse_estimators(args.by)
        if len(by) != 1:
            raise OPEError(f"--by takes one estimator, got {args.by!r}; valid: {', '.join(ESTIMATORS)}")
        rows, facts = run_ope(args, by, strict=True)
        rows.sort(key=lambda r: -np.inf if r.get("value") is None else -r["value"])
        for rank, r in enumerate(rows, 1):
            r["rank"] = rank
        js, path = write_results(args.out, rows, {**facts, "ranked_by": by[0]}, "select")
        print_table(rows, facts, f"runs ranked by {by[0]} on {facts['dataset']} (best first)")
        print(f"best: {rows[0]['run']}\nwrote {js} and {path}")
        return 0
    args = parse_args(OpeArgs, argv, "offrl ope")
    explicit = any(a == "--estimators" or a.startswith("--estimators=") for a in argv)
    rows, facts = run_ope(args, parse_estimators(args.estimators), strict=explicit)
    js, path = write_results(args.out, rows, facts)
    print_table(rows, facts, f"off-policy estimates on {facts['dataset']}")
    print(f"wrote {js} and {path}")
    return 0
