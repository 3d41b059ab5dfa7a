"""``offrl zoo train ENV``: train a SAC behaviour policy online and keep policy snapshots along the way.

    offrl zoo train ENV [--env-steps N] [--seed S] [--out DIR] [--snapshot-every N] [--algo.FIELD VALUE ...]

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
class ZooTrainArgs:
    """Train a SAC behaviour policy online and save policy snapshots with JSON cards."""

    env: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="ENV")]]
    """Gymnasium environment id (defaults exist for: Pendulum-v1, Hopper-v5, HalfCheetah-v5, Walker2d-v5)."""
    env_steps: Optional[int] = None
    """Environment steps in total (default: the environment's entry in offrl.zoo.ZOO_DEFAULTS)."""
    seed: int = 0
    """Seed of the agent, the random warm-up actions and the environments' first resets."""
    out: Optional[str] = None
    """Run folder (default: $OFFRL_ZOO or ./zoo, then ENV/seed-S)."""
    snapshot_every: Optional[int] = None
    """Save a policy snapshot every this many env steps (default: the environment's entry)."""
    start_steps: Optional[int] = None
    """Uniform random actions for this many first env steps (default: the environment's entry)."""
    updates_per_step: Optional[float] = None
    """Gradient updates per env step, the update-to-data ratio (default: the environment's entry)."""
    num_envs: int = 1
    """Environments stepped in lockstep with one batched policy call."""
    eval_episodes: int = 10
    """Evaluation episodes of the deterministic policy at every snapshot."""
    progress: bool = True
    """Show a progress bar."""
    algo: sac.Config = field(default_factory=sac.Config)
    """SAC settings (the environment's entry sets hidden_dims unless --algo.hidden-dims is given)."""


def _train(argv: list[str]) -> int:
    from offrl.online import train_online

    args = tyro.cli(ZooTrainArgs, args=argv, prog="offrl zoo train")
    base = ZOO_DEFAULTS.get(args.env)
    if base is None and args.env_steps is None:
        known = ", ".join(ZOO_DEFAULTS)
        raise ValueError(f"no zoo defaults for {args.env!r} (known: {known}); pass --env-steps N (and --snapshot-every N)")
    base = base or ZooSettings(env_steps=args.env_steps, start_steps=5_000, updates_per_step=1,
                               snapshot_every=max(args.env_steps // 10, 1))
    config = args.algo
    if not any(a.startswith("--algo.hidden-dims") or a.startswith("--algo.hidden_dims") for a in argv):
        config = dataclasses.replace(config, hidden_dims=base.hidden_dims)
    out = Path(args.out) if args.out else Path(os.environ.get("OFFRL_ZOO", "zoo")) / args.env.replace("/", "_") / f"seed-{args.seed}"
    result = train_online(
        config, args.env,
        env_steps=args.env_steps if args.env_steps is not None else base.env_steps,
        num_envs=args.num_envs,
        start_steps=args.start_steps if args.start_steps is not None else base.start_steps,
        updates_per_step=args.updates_per_step if args.updates_per_step is not None else base.updates_per_step,
        snapshot_every=args.snapshot_every if args.snapshot_every is not None else base.snapshot_every,
        seed=args.seed, eval_episodes=args.eval_episodes, run_dir=out, progress=args.progress,
    )
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


def main(argv: list[str] | None = None) -> int:
    """``offrl zoo train ENV ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[0])
        print("\ncommands:\n  train   train a SAC behaviour policy online (`offrl zoo train ENV --help`)")
        return 0
    if argv[0] != "train":
        print(f"offrl zoo: error: unknown zoo command {argv[0]!r}; valid: train", file=sys.stderr)
        return 2
    try:
        return _train(argv[1:])
    except ValueError as exc:  # unknown env ids, bad settings: one line, no traceback
        print(f"offrl zoo train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the snapshots saved so far are in the run folder", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
