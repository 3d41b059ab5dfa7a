"""``offrl finetune CHECKPOINT``: continue an offline agent online (offline-to-online fine-tuning).

    offrl finetune RUN_DIR [--env ENV] [--steps N] [--offline-ratio R | --symmetric] [--out DIR]

The agents of an offline run (all its seeds) keep training in the environment with the loop of
:func:`offrl.online.train_online`: ``num_envs`` environments per agent collect transitions with the
agent's stochastic policy (``act(..., deterministic=False)``), and every gradient update draws
a batch that mixes the offline dataset with the new transitions:

* default: each row is offline with probability ``N_offline / (N_offline + N_online)``, i.e. one
  buffer holding the dataset and the new data (what most fine-tuning code does);
* ``--offline-ratio R``: a set share ``R`` of offline rows (``0`` uses the new data alone);
* ``--symmetric``: ``R = 0.5``, symmetric sampling (Ball et al. 2023).

The observation normalisation and reward scaling of the offline run apply to the new data too.
Learning-rate schedules span the offline and online updates together (the optimiser's step count
continues; IQL's cosine actor decay would otherwise have reached zero at the end of the offline run).
Algorithms whose updates need per-transition extras (Cal-QL's Monte-Carlo returns) compute them
for each online episode when it ends (``Algo.episode_extras``); until then the row's extras are
``-inf`` (for Cal-QL: no floor). Supported: continuous-action algorithms that train on one-step
uniform batches (IQL, AWAC, CQL, Cal-QL, TD3+BC, SAC, ...).

Results (per seed, in ``OUT/seed-S`` or ``OUT`` for one seed): ``eval.csv`` (the learning curve,
step 0 = the offline agent), ``train.csv``, policy snapshots, ``checkpoint.msgpack``, and
``finetune.json`` with the offline and final scores and the cumulative regret: the mean over the
online evaluations (steps > 0) of ``1 - normalised score / 100`` (CORL's measure; 0 = expert
throughout).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import tyro

from offrl.config import Checked, integer, number
from offrl.usage import parse_args

__all__ = ["finetune", "regret_of"]


@dataclass
class FinetuneArgs(Checked):
    """Continue an offline agent online, mixing its dataset with new transitions."""

    _label = ""  # messages name the option: "steps = 0 is out of range: ..."

    checkpoint: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="CHECKPOINT")]]
    """Run folder or checkpoint.msgpack of an offline run (`offrl train`)."""
    env: Optional[str] = None
    """Gymnasium env id (default: the dataset's env)."""
    steps: int = integer(50_000, ge=1)
    """Environment steps of online training (per seed)."""
    offline_ratio: Optional[float] = number(None, ge=0, le=1, optional=True)
    """Share of each batch drawn from the offline dataset (default: proportional to the sizes, as one buffer; 0: new data only)."""
    symmetric: bool = False
    """Symmetric sampling: half of each batch offline, half online (same as --offline-ratio 0.5)."""
    dataset: Optional[str] = None
    """Offline dataset to mix in (default: the one the checkpoint was trained on)."""
    updates_per_step: float = number(1.0, gt=0)
    """Gradient updates per environment step."""
    num_envs: int = integer(1, ge=1)
    """Environments per agent, stepped in lockstep."""
    eval_every: int = integer(5_000, ge=1)
    """Evaluate every this many environment steps (and at step 0 and the end)."""
    eval_episodes: int = integer(10, ge=0)
    """Evaluation episodes per seed."""
    out: Optional[str] = None
    """Run folder (default: runs/finetune-ALGO-DATASET-TIME)."""
    progress: bool = True
    """Show a progress bar."""


def regret_of(eval_rows: list[dict]) -> float | None:
    """Mean over the online evaluations (step > 0) of ``1 - normalized_score / 100``."""
    scores = [r["normalized_score"] for r in eval_rows if r["step"] > 0 and r.get("normalized_score") is not None]
    return float(np.mean([1.0 - s / 100.0 for s in scores])) if scores else None


def finetune(checkpoint: str | os.PathLike, *, env_id: str | None = None, steps: int = 50_000,
             offline_ratio: float | None = None, dataset: str | None = None, updates_per_step: float = 1.0,
             num_envs: int = 1, eval_every: int = 5_000, eval_episodes: int = 10,
             run_dir: str | os.PathLike | None = None, progress: bool = True, plot: bool = True):
    """Fine-tune the agents of ``checkpoint`` online; returns one result per seed (see the module docstring)."""
    import jax
    from flax import serialization

    from offrl.algos import DataSpec, get_algo
    from offrl.algos.registry import uniform_batches
    from offrl.checkpoint import load_checkpoint
    from offrl.data import Transforms, load_dataset
    from offrl.online import train_online
    from offrl.train import config_from_dict, device_data, init_agents

    state_dict, _, meta = load_checkpoint(checkpoint)
    algo = get_algo(meta["algo"])
    if meta.get("training") == "online":
        raise ValueError(f"{checkpoint} is an online run; fine-tuning continues an offline run (`offrl train`)")
    if algo.discrete or algo.make_batch is not uniform_batches:
        raise ValueError(f"fine-tuning supports continuous-action algorithms trained on one-step uniform batches; "
                         f"{algo.name} is not one (try iql, awac, cql, calql, td3bc)")
    if offline_ratio is not None and not 0.0 <= offline_ratio <= 1.0:
        raise ValueError(f"--offline-ratio must be in [0, 1], got {offline_ratio}")
    config = config_from_dict(algo.config_cls, meta["algo_config"])
    loop = meta["loop"]
    source = dataset or meta["dataset_source"]
    data = load_dataset(source)
    if algo.prepare_dataset is not None:
        data = algo.prepare_dataset(config, data)
    transforms = Transforms.from_dict(meta["transforms"])
    spec = DataSpec(**meta["spec"])
    if DataSpec.from_dataset(data) != spec:
        raise ValueError(f"dataset {source!r} has shapes {DataSpec.from_dataset(data)}, the checkpoint {spec}")
    offline = None
    if offline_ratio != 0.0:
        offline = device_data(algo, config, data, transforms)
    env_id = env_id or data.info.env_id
    if env_id is None:
        raise ValueError(f"dataset {source!r} names no environment; pass --env ENV")
    seeds, seed = int(loop["seeds"]), int(loop["seed"])
    # learning-rate schedules (IQL's cosine actor decay) span the offline and the online updates, as
    # when one run does both: the optimiser step count continues from the offline run's
    template, _ = init_agents(algo, config, spec, seed, seeds, int(loop["steps"]) + int(round(steps * updates_per_step)))
    states = serialization.from_state_dict(template, jax.tree.map(np.asarray, state_dict))
    refs = (data.info.ref_min_score, data.info.ref_max_score)
    refs = refs if None not in refs else None
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(os.environ.get("OFFRL_RUNS", "runs")) / f"finetune-{algo.name}-{data.info.name or 'data'}-{stamp}"
    settings = dict(checkpoint=str(checkpoint), dataset_source=source, offline_ratio=offline_ratio,
                    offline_step=int(meta.get("step", loop["steps"])))
    results = train_online(
        config, env_id, env_steps=steps, num_envs=num_envs, start_steps=0, updates_per_step=updates_per_step,
        seed=seed, seeds=seeds, eval_every=eval_every, eval_episodes=eval_episodes, snapshot_every=None,
        run_dir=run_dir, env_kwargs=data.info.env_kwargs or None, progress=progress, plot=plot,
        init_state=states, transforms=transforms, offline=offline, offline_ratio=offline_ratio, ref_scores=refs,
        dataset_info=data.info, meta_extra={"finetune": settings, "dataset_source": source},
    )
    results = results if isinstance(results, list) else [results]
    for res in results:
        evals = res.run_dir / "eval.jsonl"  # absent with eval_episodes=0: a summary without scores
        rows = [json.loads(line) for line in evals.read_text().splitlines() if line.strip()] if evals.exists() else []
        summary = {**settings, "algo": algo.name, "env": env_id, "env_steps": steps,
                   "offline_score": rows[0].get("normalized_score") if rows else None,
                   "offline_return": rows[0]["return_mean"] if rows else None,
                   "final_score": rows[-1].get("normalized_score") if rows else None,
                   "final_return": rows[-1]["return_mean"] if rows else None,
                   "regret": regret_of(rows), "evaluations": len(rows)}
        (res.run_dir / "finetune.json").write_text(json.dumps(summary, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(FinetuneArgs, argv, "offrl finetune")
    if args.symmetric and args.offline_ratio not in (None, 0.5):
        print("offrl finetune: error: --symmetric sets the offline ratio to 0.5; drop --offline-ratio", file=sys.stderr)
        return 2
    try:
        results = finetune(args.checkpoint, env_id=args.env, steps=args.steps,
                           offline_ratio=0.5 if args.symmetric else args.offline_ratio, dataset=args.dataset,
                           updates_per_step=args.updates_per_step, num_envs=args.num_envs, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, run_dir=args.out, progress=args.progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"offrl finetune: error: {exc}", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fine-tuning")
    for col in ("run", "offline score", "final score", "regret"):
        table.add_column(col)
    fmt = lambda x: "-" if x is None else f"{x:.3f}" if abs(x) < 2 else f"{x:.1f}"
    for res in results:
        s = json.loads((res.run_dir / "finetune.json").read_text())
        table.add_row(str(res.run_dir), fmt(s["offline_score"]), fmt(s["final_score"]), fmt(s["regret"]))
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
