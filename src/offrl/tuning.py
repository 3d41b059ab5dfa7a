"""Tuning-budget evaluation: how good a policy a user ends up with after k online evaluations.

In the spirit of Jackson et al. (2025): a sweep trains many policies offline, and choosing among them
needs online evaluation episodes, which an offline method should not need many of. Each policy of a
sweep (every member x seed of one algorithm on one dataset) is a bandit arm whose pulls draw one
recorded final-evaluation episode (with replacement: a bootstrap of its episodes). UCB1 spends a
budget of k pulls: first every arm once in a random order, then the arm maximising
``mean_a + c sqrt(2 ln t / n_a)`` (``c``: the range of the episode scores); after k pulls it
recommends the pulled arm with the best empirical mean. The curve is the expected true score (the
mean over all its recorded episodes) of the recommended policy, averaged over ``reps`` bootstrap
runs, for k = 1 .. K: flat curves mean a method needs little online tuning; k = 1 is the mean of the
sweep's policies, large k approaches its best one.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np


def ucb_recommend(arms: Sequence[np.ndarray], budget: int, rng: np.random.Generator, c: float) -> int:
    """One UCB1 run of ``budget`` pulls over ``arms`` (each an array of episode scores); the recommended arm."""
    n = len(arms)
    order = rng.permutation(n)
    counts, sums = np.zeros(n), np.zeros(n)
    for t in range(budget):
        if t < n:
            a = int(order[t])
        else:
            a = int(np.argmax(sums / counts + c * np.sqrt(2.0 * np.log(t) / counts)))
        counts[a] += 1
        sums[a] += arms[a][rng.integers(len(arms[a]))]
    means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    return int(np.argmax(means))


def tuning_curve(arms: Sequence[Sequence[float]], budgets: Sequence[int], reps: int = 500, seed: int = 0) -> list[dict]:
    """Per budget k: the expected true score of the policy UCB recommends after k pulls (``expected``), the
    standard error of that mean over the ``reps`` runs and the 5-95% range of the outcomes."""
    arms = [np.asarray(a, np.float64) for a in arms if len(a)]
    if not arms:
        return []
    true = np.array([a.mean() for a in arms])
    spread = float(np.ptp(np.concatenate(arms)))
    c = spread if spread > 0 else 1.0
    rng = np.random.default_rng(seed)
    out = []
    for k in budgets:
        picks = np.array([true[ucb_recommend(arms, int(k), rng, c)] for _ in range(reps)])
        out.append({"k": int(k), "expected": float(picks.mean()), "stderr": float(picks.std(ddof=1) / np.sqrt(reps)) if reps > 1 else 0.0,
                    "p05": float(np.percentile(picks, 5)), "p95": float(np.percentile(picks, 95)),
                    "best": float(true.max()), "mean": float(true.mean()), "policies": len(arms)})
    return out


def episode_scores(row: dict, ref_min: float | None, ref_max: float | None) -> list[list[float]]:
    """Each seed's recorded final-evaluation episodes of a sweep row, as normalised scores when the dataset has references."""
    episodes = row.get("per_seed_episode_returns") or []
    if ref_min is None or ref_max is None or ref_max == ref_min:
        return [list(map(float, e)) for e in episodes]
    return [[100.0 * (x - ref_min) / (ref_max - ref_min) for x in e] for e in episodes]


def write_tuning(out: str | os.PathLike, arms_by: dict[tuple[str, str], list[list[float]]], max_budget: int | None = None,
                 reps: int = 500) -> Path | None:
    """``tuning.csv`` (algo, dataset, k, expected, ...; dataset ``mean`` averages an algorithm's datasets) and
    ``tuning.png`` (one curve per algorithm) in ``out``."""
    if not arms_by:
        return None
    out = Path(out)
    rows = []
    n_max = max(len(a) for a in arms_by.values())
    budgets = list(range(1, (max_budget or max(2 * n_max, 10)) + 1))
    for (algo, dataset), arms in sorted(arms_by.items()):
        for r in tuning_curve(arms, budgets, reps=reps):
            rows.append({"algo": algo, "dataset": dataset, **r})
    algos = sorted({a for a, _ in arms_by})
    for algo in algos:
        datasets = sorted({d for a, d in arms_by if a == algo})
        if len(datasets) > 1:
            for k in budgets:
                found = [r for r in rows if r["algo"] == algo and r["k"] == k and r["dataset"] in datasets]
                rows.append({"algo": algo, "dataset": "mean", "k": k, "expected": float(np.mean([r["expected"] for r in found])),
                             "stderr": float(np.sqrt(np.sum([r["stderr"] ** 2 for r in found])) / len(found)),
                             "p05": None, "p95": None, "best": float(np.mean([r["best"] for r in found])),
                             "mean": float(np.mean([r["mean"] for r in found])), "policies": sum(r["policies"] for r in found)})
    fields = ["algo", "dataset", "k", "expected", "stderr", "p05", "p95", "best", "mean", "policies"]
    tmp = out / ".tuning.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "tuning.csv")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in algos:
        datasets = sorted({d for a, d in arms_by if a == algo})
        pick = "mean" if len(datasets) > 1 else datasets[0]
        curve = [r for r in rows if r["algo"] == algo and r["dataset"] == pick]
        ks = [r["k"] for r in curve]
        mean = np.array([r["expected"] for r in curve])
        err = np.array([r["stderr"] for r in curve])
        line, = ax.plot(ks, mean, label=f"{algo} ({pick})")
        ax.fill_between(ks, mean - 2 * err, mean + 2 * err, alpha=0.2, color=line.get_color())
    ax.set_xlabel("online evaluation episodes k (UCB over the sweep's policies)")
    ax.set_ylabel("expected score of the recommended policy")
    ax.set_title("tuning budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "tuning.png", dpi=110)
    plt.close(fig)
    return out / "tuning.csv"
