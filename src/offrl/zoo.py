"""``offrl zoo train ENV``: train a SAC behaviour policy online and keep policy snapshots along the way.

    offrl zoo train ENV [--env-steps N] [--seed S] [--seeds N] [--out DIR] [--snapshot-every N] [--algo.FIELD VALUE ...]

The snapshots (``policy-NNNNNNNN.msgpack`` with a JSON card each, see :mod:`offrl.online`) are the
behaviour policies of benchmark datasets: early ones are "medium"-like, the last one "expert"-like.
Each loads with ``offrl.load_agent(path)``.

Budget of the per-env defaults (:data:`ZOO_DEFAULTS`)
-----------------------------------------------------
The defaults are sized for a 2-core machine without GPU and about 2 hours per environment.

* ``Pendulum-v1``: 20 000 env steps, one update per env step after 1 000 random steps (SAC solves
  Pendulum in about 5 000 steps; the rest refines it): a few minutes.
* ``Hopper-v5``, ``HalfCheetah-v5``, ``Walker2d-v5``: 800 000 env steps at one update per env step
  (update-to-data ratio 1), after 10 000 uniform random steps, with 256x256 networks.
  Reasoning: the gradient updates dominate the cost (an env step with its policy call costs about
  0.5 ms, an update of the 256x256 SAC about 6 ms on one XLA thread), so the budget is a number of
  updates. Measured for a JAX SAC on Hopper with one update per env step: 150-186 env steps/s on
  one thread of this machine (115-140 while another job shared the cores). 2 hours at 150-186/s
  are 1.08-1.34 M updates; 800 k updates take 1.2-1.5 h and leave about a quarter of the budget
  for evaluations, compilation and a machine that is shared. The updates are spent at ratio 1
  rather than on fewer env steps at a higher ratio because ratio 1 is the setting of the published
  SAC learning curves (and of the SAC behaviour policies of D4RL), so the snapshots can be compared
  with them; a higher ratio without extra regularisation (resets, layer norm) buys little per
  update. SAC's published curves are near their 1 M-step level by 800 k steps on these tasks
  (Haarnoja et al. 2018, fig. 1). Snapshots every 25 000 env steps give 32 policies along the
  learning curve to pick "medium" (about a third of the final return) and "expert" from.

Everything can be overridden on the command line; an environment without an entry needs
``--env-steps``.

On a GPU machine, ``--seeds N`` trains N agents in one process with their updates batched (and the
env stepping overlapped with them): the shipped Hopper-v5 and HalfCheetah-v5 policies come from
such a run, 7 minutes on one H200 for 220k / 360k env steps per seed
(``benchmarks/gpu/zoo.sh``, ``benchmarks/results/zoo-2026-11-26.md``).

Shipping a run's policies: ``offrl zoo export RUN_DIR``
-------------------------------------------------------
Picks, from the snapshots of a training run, the policies that ship in ``offrl/envs/zoo/ENV/``
(see :mod:`offrl.envs.policies`), re-evaluating candidates on ``--episodes`` (100) episodes of the
deterministic policy (reset seeds ``REFERENCE_SEED + j``):

* ``expert``: the best of the ``--expert-candidates`` (3) snapshots with the highest training-time
  evaluation return;
* the uniform random policy's mean return: with the expert's, the normalisation references
  (``references.json``);
* ``medium``: among the snapshots before the expert whose training-time return is within 0.15-0.55
  of the normalised scale, the one whose 100-episode score is closest to ``--medium-target`` (1/3),
  required to land in 0.25-0.45;
* ``series-KK``: up to ``--series`` (5) snapshots spread evenly over training before the medium one,
  among those that score no higher than medium (in training-time and 100-episode evaluations).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import tyro

from offrl.algos import sac
from offrl.config import Checked, integer, number
from offrl.usage import parse_args


@dataclass(frozen=True)
class ZooSettings:
    """Online training settings of one environment."""

    env_steps: int
    start_steps: int
    updates_per_step: float
    snapshot_every: int
    hidden_dims: tuple[int, ...] = (256, 256)


_MUJOCO = ZooSettings(env_steps=800_000, start_steps=10_000, updates_per_step=1, snapshot_every=25_000)

#: Per-environment defaults; the budget behind them is in the module docstring.
ZOO_DEFAULTS: dict[str, ZooSettings] = {
    "Pendulum-v1": ZooSettings(env_steps=20_000, start_steps=1_000, updates_per_step=1, snapshot_every=2_000),
    "Hopper-v5": _MUJOCO,
    "HalfCheetah-v5": _MUJOCO,
    "Walker2d-v5": _MUJOCO,
}


@dataclass
class ZooTrainArgs(Checked):
    """Train a SAC behaviour policy online and save policy snapshots with JSON cards."""

    _label = ""  # messages name the option: "seeds = 0 is out of range: ..."

    env: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="ENV")]]
    """Gymnasium environment id (defaults exist for: Pendulum-v1, Hopper-v5, HalfCheetah-v5, Walker2d-v5)."""
    env_steps: Optional[int] = integer(None, ge=1, optional=True)
    """Environment steps in total (default: the environment's entry in offrl.zoo.ZOO_DEFAULTS)."""
    seed: int = integer(0, ge=0)
    """Seed of the agent, the random warm-up actions and the environments' first resets."""
    seeds: int = integer(1, ge=1)
    """Independent agents trained together (seeds S, S+1, ...; updates batched on an accelerator), each in its own run folder."""
    out: Optional[str] = None
    """Run folder (default: $OFFRL_ZOO or ./zoo, then ENV/seed-S); with --seeds N > 1 the folder that holds seed-S, seed-S+1, ..."""
    snapshot_every: Optional[int] = integer(None, ge=1, optional=True)
    """Save a policy snapshot every this many env steps (default: the environment's entry)."""
    start_steps: Optional[int] = integer(None, ge=0, optional=True)
    """Uniform random actions for this many first env steps (default: the environment's entry)."""
    updates_per_step: Optional[float] = number(None, gt=0, optional=True)
    """Gradient updates per env step, the update-to-data ratio (default: the environment's entry)."""
    num_envs: int = integer(1, ge=1)
    """Environments stepped in lockstep with one batched policy call."""
    eval_episodes: int = integer(10, ge=0)
    """Evaluation episodes of the deterministic policy at every snapshot."""
    progress: bool = True
    """Show a progress bar."""
    algo: sac.Config = field(default_factory=sac.Config)
    """SAC settings (the environment's entry sets hidden_dims unless --algo.hidden-dims is given)."""


def _train(argv: list[str]) -> int:
    from offrl.online import train_online

    args = parse_args(ZooTrainArgs, argv, "offrl zoo train")
    base = ZOO_DEFAULTS.get(args.env)
    if base is None and args.env_steps is None:
        known = ", ".join(ZOO_DEFAULTS)
        raise ValueError(f"no zoo defaults for {args.env!r} (known: {known}); pass --env-steps N (and --snapshot-every N)")
    base = base or ZooSettings(env_steps=args.env_steps, start_steps=5_000, updates_per_step=1,
                               snapshot_every=max(args.env_steps // 10, 1))
    config = args.algo
    if not any(a.startswith("--algo.hidden-dims") or a.startswith("--algo.hidden_dims") for a in argv):
        config = dataclasses.replace(config, hidden_dims=base.hidden_dims)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    env_dir = Path(os.environ.get("OFFRL_ZOO", "zoo")) / args.env.replace("/", "_")
    out = Path(args.out) if args.out else (env_dir / f"seed-{args.seed}" if args.seeds == 1 else env_dir)
    results = train_online(
        config, args.env,
        env_steps=args.env_steps if args.env_steps is not None else base.env_steps,
        num_envs=args.num_envs,
        start_steps=args.start_steps if args.start_steps is not None else base.start_steps,
        updates_per_step=args.updates_per_step if args.updates_per_step is not None else base.updates_per_step,
        snapshot_every=args.snapshot_every if args.snapshot_every is not None else base.snapshot_every,
        seed=args.seed, seeds=args.seeds, eval_episodes=args.eval_episodes, run_dir=out, progress=args.progress,
    )
    for result in (results if isinstance(results, list) else [results]):
        _print_snapshots(result)
    return 0


def _print_snapshots(result) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"policy snapshots in {result.run_dir}")
    for col in ("file", "env steps", "updates", "return (mean ± std)"):
        table.add_column(col)
    for path in result.snapshots:
        card = json.loads(path.with_suffix(".json").read_text())
        ret = "-" if card["return_mean"] is None else f"{card['return_mean']:.1f} ± {card['return_std']:.1f}"
        table.add_row(path.name, f"{card['env_steps']:,}", f"{card['updates']:,}", ret)
    Console().print(table)


REFERENCE_SEED = 0
MEDIUM_RANGE = (0.25, 0.45)


@dataclass
class ZooExportArgs(Checked):
    """Pick the expert, medium and series policies of a zoo run and write them with JSON cards."""

    _label = ""

    run_dir: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="RUN_DIR")]]
    """Run folder of `offrl zoo train` (holds policy-*.msgpack snapshots with their cards)."""
    out: Optional[str] = None
    """Destination folder (default: the package's offrl/envs/zoo/ENV)."""
    episodes: int = integer(100, ge=1)
    """Evaluation episodes per candidate policy and for the random reference."""
    expert_candidates: int = integer(3, ge=1)
    """How many of the best snapshots (by their training-time evaluation) compete for expert."""
    medium_target: float = number(1 / 3)
    """Normalised score the medium snapshot should be closest to."""
    series: int = integer(5, ge=0)
    """Snapshots from early training up to medium to ship as series-KK."""


def _evaluate_policy(env_id: str, act, episodes: int) -> dict:
    import numpy as np

    from offrl.envs import make_env
    from offrl.evaluate import evaluate

    probe = make_env(env_id)
    low, high = np.asarray(probe.action_space.low, np.float64), np.asarray(probe.action_space.high, np.float64)
    probe.close()

    def policy(obs):
        unit = act(obs.reshape(-1, obs.shape[-1]))
        return (low + (np.asarray(unit, np.float64) + 1.0) * 0.5 * (high - low)).reshape(obs.shape[:-1] + (-1,))

    res = evaluate(policy, env_id, episodes=episodes, seed=REFERENCE_SEED)[0]
    return {"return_mean": res["return_mean"], "return_std": res["return_std"], "eval_episodes": episodes,
            "eval_seed": REFERENCE_SEED, "eval_policy": "deterministic", "returns": [round(r, 4) for r in res["returns"]]}


def save_zoo_policy(path: Path, params: dict, card: dict) -> None:
    """Write ``path`` (.msgpack, the actor parameters) and its ``.json`` card, each atomically
    (the zoo policy file format of :mod:`offrl.envs.policies`, which reads them)."""
    import json

    import numpy as np
    from flax import serialization

    from offrl.checkpoint import atomic_write_bytes
    from offrl.envs.policies import params_to_layers

    layers = params_to_layers(params)
    tree = {f"Dense_{i}": {"kernel": np.asarray(k, np.float32), "bias": np.asarray(b, np.float32)}
            for i, (k, b) in enumerate(layers)}
    atomic_write_bytes(path, serialization.msgpack_serialize({"format": "offrl-zoo-policy", "layers": tree}))
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, episodes: int = 100,
               expert_candidates: int = 3, medium_target: float = 1 / 3, series: int = 5, log=print) -> Path:
    """Select and write a run's expert, medium and series policies (see the module docstring)."""
    import json

    import jax
    import numpy as np

    from offrl import __version__
    from offrl.checkpoint import load_checkpoint
    from offrl.envs.policies import ZOO_DIR, ZooPolicy, params_to_layers

    run_dir = Path(run_dir)
    cards = sorted((json.loads(p.read_text()) for p in run_dir.glob("policy-*.json")), key=lambda c: c["env_steps"])
    if len(cards) < 3:
        raise ValueError(f"{run_dir} holds {len(cards)} policy snapshots; export needs at least 3 (expert, medium, a series)")
    env_id = cards[0]["env"]
    out = Path(out) if out else ZOO_DIR / env_id

    def params(card):
        state, _, _ = load_checkpoint(run_dir / card["policy_file"])
        return jax.tree.map(lambda x: np.asarray(x)[0], state["actor"]["params"])

    def evaluate_card(card):
        policy = ZooPolicy(params_to_layers(params(card)), card)
        result = _evaluate_policy(env_id, policy.act, episodes)
        log(f"  {card['policy_file']}: {result['return_mean']:.1f} +- {result['return_std']:.1f} over {episodes} episodes")
        return result

    rng = np.random.default_rng(REFERENCE_SEED)
    action_dim = len(params_to_layers(params(cards[0]))[-1][1]) // 2
    log(f"{env_id}: uniform random policy")
    random_ref = _evaluate_policy(env_id, lambda o: rng.uniform(-1, 1, size=(o.shape[0], action_dim)), episodes)
    log(f"  random: {random_ref['return_mean']:.1f}")
    log("expert candidates")
    best = sorted(cards, key=lambda c: c["return_mean"], reverse=True)[:expert_candidates]
    evaluated = {c["policy_file"]: evaluate_card(c) for c in best}
    expert = max(best, key=lambda c: evaluated[c["policy_file"]]["return_mean"])
    lo_ret, hi_ret = random_ref["return_mean"], evaluated[expert["policy_file"]]["return_mean"]

    def norm(x):
        return (x - lo_ret) / (hi_ret - lo_ret)

    log("medium candidates")
    early = [c for c in cards if c["env_steps"] < expert["env_steps"] and 0.15 <= norm(c["return_mean"]) <= 0.55]
    for c in early:
        if c["policy_file"] not in evaluated:
            evaluated[c["policy_file"]] = evaluate_card(c)
    inside = [c for c in early if MEDIUM_RANGE[0] <= norm(evaluated[c["policy_file"]]["return_mean"]) <= MEDIUM_RANGE[1]]
    if not inside:
        scores = ", ".join(f"{c['policy_file']}: {norm(c['return_mean']):.2f}" for c in cards)
        raise ValueError(f"no snapshot scores {MEDIUM_RANGE[0]}-{MEDIUM_RANGE[1]} of the expert on the normalised "
                         f"scale (training-time scores: {scores}); train with more frequent snapshots (--snapshot-every)")
    medium = min(inside, key=lambda c: abs(norm(evaluated[c["policy_file"]]["return_mean"]) - medium_target))
    # the series climbs from random to medium: earlier snapshots that do not outscore the medium one
    # (learning curves are not monotone: a snapshot before medium can be better than medium)
    medium_score = evaluated[medium["policy_file"]]["return_mean"]
    before = [c for c in cards if c["env_steps"] < medium["env_steps"] and c["return_mean"] <= medium_score]
    picks = [before[int(round(i))] for i in np.linspace(0, len(before) - 1, min(series, len(before)))] if before else []
    picks = list({c["policy_file"]: c for c in picks}.values())
    log("series")
    for c in picks:
        if c["policy_file"] not in evaluated:
            evaluated[c["policy_file"]] = evaluate_card(c)
    picks = [c for c in picks if evaluated[c["policy_file"]]["return_mean"] <= medium_score]

    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.msgpack")) + list(out.glob("*.json")):
        stale.unlink()
    roles = [("expert", expert), ("medium", medium)] + [(f"series-{k:02d}", c) for k, c in enumerate(picks)]
    for role, card in roles:
        result = evaluated[card["policy_file"]]
        ship = {"role": role, "env": env_id, "env_steps": card["env_steps"], "updates": card["updates"],
                "seed": card["seed"], "algo": card["algo"], "source_run": str(run_dir.name), "policy_file": f"{role}.msgpack",
                "normalized_score": float(100 * norm(result["return_mean"])), "offrl_version": __version__,
                "policy": "tanh-Gaussian MLP (offrl.nets.TanhGaussianActor) on raw observations", **result}
        save_zoo_policy(out / f"{role}.msgpack", params(card), ship)
    refs = {"env": env_id, "random": random_ref, "expert": {**evaluated[expert["policy_file"]], "policy_file": "expert.msgpack"},
            "offrl_version": __version__}
    (out / "references.json").write_text(json.dumps(refs, indent=2, sort_keys=True) + "\n")
    log(f"wrote {len(roles)} policies and references.json to {out}")
    return out


def _export(argv: list[str]) -> int:
    args = parse_args(ZooExportArgs, argv, "offrl zoo export")
    export_run(args.run_dir, args.out, episodes=args.episodes, expert_candidates=args.expert_candidates,
               medium_target=args.medium_target, series=args.series)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``offrl zoo train ENV ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[0])
        print("\ncommands:\n  train   train a SAC behaviour policy online (`offrl zoo train ENV --help`)"
              "\n  export  ship a run's expert/medium/series policies (`offrl zoo export RUN_DIR --help`)")
        return 0
    if argv[0] not in ("train", "export"):
        print(f"offrl zoo: error: unknown zoo command {argv[0]!r}; valid: train, export", file=sys.stderr)
        return 2
    try:
        return (_train if argv[0] == "train" else _export)(argv[1:])
    except ValueError as exc:  # unknown env ids, bad settings: one line, no traceback
        print(f"offrl zoo {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the snapshots saved so far are in the run folder", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
