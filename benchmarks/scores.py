"""Learning-quality benchmark: normalised scores of several algorithms on several datasets.

    python benchmarks/scores.py --algos bc,td3bc,iql --datasets pendulum-mixed,pendulum-medium \
        --seeds 3 --steps 20000 --episodes 10

Every algorithm trains ``--seeds`` agents together (vmapped) with its paper defaults on every
dataset through ``offrl.fit``, is evaluated at the end over ``--episodes`` episodes per seed, and
the table of normalised scores (mean ± std over seeds) is written as Markdown, CSV and a bar chart
PNG to ``benchmarks/results/`` with the command, commit and budget.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default="bc,td3bc,iql")
    parser.add_argument("--datasets", default="pendulum-mixed,pendulum-medium")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--name", default=None, help="stem of the result files (default: scores-DATE)")
    parser.add_argument("--out-dir", default="benchmarks/results")
    args = parser.parse_args()

    import offrl
    from offrl.algos import get_algo

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"scores-{time.strftime('%Y-%m-%d')}"
    algos, datasets = args.algos.split(","), args.datasets.split(",")
    rows = []
    for dataset in datasets:
        for name in algos:
            algo = get_algo(name)
            t0 = time.perf_counter()
            result = offrl.fit(algo.config_cls(), dataset, steps=args.steps, seeds=args.seeds, eval_episodes=args.episodes,
                               run_dir=out_dir / "runs" / f"{stem}-{name}-{dataset}", progress=False, plot=True)
            scores = np.array([r["normalized_score"] for r in result.final_eval])
            success = [r["success_rate"] for r in result.final_eval if r.get("success_rate") is not None]
            rows.append(dict(dataset=dataset, algo=name, score_mean=float(scores.mean()), score_std=float(scores.std()),
                             per_seed=[round(float(s), 2) for s in scores],
                             success_rate=round(float(np.mean(success)), 3) if success else None,
                             seconds=round(time.perf_counter() - t0, 1)))
            print(f"{dataset:>18} {name:>6}: {scores.mean():6.1f} ± {scores.std():4.1f}  ({rows[-1]['seconds']} s)", file=sys.stderr)

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    budget = f"{args.steps:,} updates per seed, {args.seeds} seeds in one compiled call, {args.episodes} evaluation episodes per seed"
    with (out_dir / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Normalised scores — {time.strftime('%Y-%m-%d')}", "",
        f"- command: `{command}`", f"- commit: {git_commit()}", f"- budget: {budget}",
        "- machine: 2-core CPU (no GPU); seed strategy `auto` (map on CPU, vmap on GPU)",
        "- score: 100·(R − R_random)/(R_expert − R_random), references stored in each dataset", "",
        "| dataset | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos),
    ]
    for dataset in datasets:
        cells = [f"{r['score_mean']:.1f} ± {r['score_std']:.1f}" for a in algos for r in rows if r["algo"] == a and r["dataset"] == dataset]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    if any(r["success_rate"] is not None for r in rows):
        lines += ["", "Success rate (mean over seeds and episodes):", "",
                  "| dataset | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
        for dataset in datasets:
            cells = [f"{r['success_rate']:.2f}" if r["success_rate"] is not None else "–"
                     for a in algos for r in rows if r["algo"] == a and r["dataset"] == dataset]
            lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    lines += ["", "Per-seed scores and wall time: see the CSV beside this file; run folders under `runs/`."]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out_dir / f"{stem}.json").write_text(json.dumps(dict(command=command, commit=git_commit(), budget=budget, rows=rows), indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(datasets) * len(algos) / 2, 3.4))
    width = 0.8 / len(algos)
    for i, name in enumerate(algos):
        means = [next(r["score_mean"] for r in rows if r["algo"] == name and r["dataset"] == d) for d in datasets]
        stds = [next(r["score_std"] for r in rows if r["algo"] == name and r["dataset"] == d) for d in datasets]
        ax.bar(np.arange(len(datasets)) + i * width, means, width, yerr=stds, label=name, capsize=3)
    ax.set_xticks(np.arange(len(datasets)) + width * (len(algos) - 1) / 2, datasets)
    ax.set_ylabel("normalised score")
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.legend()
    ax.set_title(f"{args.steps:,} updates, {args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}.png", dpi=110)
    print(f"wrote {out_dir / stem}.md/.csv/.json/.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
