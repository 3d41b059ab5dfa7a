"""The stitching table and figure: bc, iql, rvs (RvS-R and RvS-G) and dt run folders on maze stitch data
(benchmarks/stitching_runs.sh).

For every run folder (``LABEL-DATA``) it takes the last evaluation row of ``eval.jsonl`` (the run's own
evaluation: return-conditioned algorithms asked for their default target, the highest episode return of the
data; RvS-G its goal, where the data's reward is highest) and, for ``rvs`` (RvS-R) and ``dt``, evaluates the
final agents again asking for the evaluation env's reference return (the planner's, ``ref_max_score``), on
the same episodes (reset seeds 10000 + j) as the run's. Writes ``NAME.json``, ``NAME.md`` (table) and
``NAME.png`` (bars) next to ``--out``.

    python benchmarks/stitching.py RUNS_ROOT... --out benchmarks/results/stitching-cpu-2026-12-07
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ORDER = ("bc", "iql", "rvs", "rvsg", "dt")


def _last_eval(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines() if line.strip()]
    return rows[-1]


def _row(label: str, res: list[dict], target: float | None) -> dict:
    scores = np.array([r["normalized_score"] for r in res])
    steps = [t for r in res for t in r["success_steps"] if t is not None]
    return {"label": label, "target_return": target, "score_mean": float(scores.mean()), "score_std": float(scores.std()),
            "per_seed": [float(s) for s in scores], "success_rate": float(np.mean([r["success_rate"] for r in res])),
            "success_step_mean": float(np.mean(steps)) if steps else None,
            "episodes": int(sum(len(r["success_steps"]) for r in res))}


def measure(run: Path, episodes: int) -> list[dict]:
    """The run's rows: its own final evaluation (``eval.jsonl``), and for a return-conditioned agent one more
    asking for the reference (planner's) return."""
    from offrl.agent import load_agent
    from offrl.algos import DataSpec
    from offrl.evaluate import evaluate
    from offrl.train import default_target_return, make_policy

    agent = load_agent(run)
    info = agent.dataset_info
    logged = _last_eval(run)
    first = {"label": agent.algo.name, "target_return": None, "score_mean": logged["normalized_score"],
             "score_std": logged["normalized_score_std"], "per_seed": logged["per_seed_scores"],
             "success_rate": logged["success_rate"], "success_step_mean": logged.get("success_step_mean"),
             "episodes": None}
    out = [first]
    if agent.algo.stateful and not agent.algo.conditioned_on_return(agent.config):  # RvS-G: the goal from the data
        first["label"] = f"{agent.algo.name}-g (goal: where the data pays)"
    elif agent.algo.stateful:
        spec = DataSpec(**agent.meta["spec"])
        first["target_return"] = default_target_return(agent.config, agent.meta)
        first["label"] = f"{agent.algo.name} (R = {first['target_return']:g}, data max)"
        target = float(info.ref_max_score)
        policy = make_policy(agent.algo, agent.config, agent.transforms, spec, target)
        res = evaluate(lambda *obs: policy(agent.states, *obs), info.env_id, episodes=episodes,
                       num_policies=agent.num_seeds, seed=10_000, env_kwargs=info.env_kwargs or None,
                       ref_min_score=info.ref_min_score, ref_max_score=info.ref_max_score, obs_layout=info.obs_layout,
                       stateful=True)
        out.append(_row(f"{agent.algo.name} (R = {target:g}, planner return)", res, target))
    for row in out:
        row.update(algo=agent.algo.name, steps=agent.step, seeds=agent.num_seeds,
                   data_seed=int(info.metadata.get("seed", 0)), dataset=info.name)
    return out


def planner_row(run: Path, episodes: int) -> dict:
    """The noise-free planner (the reference of the normalised score, 100) on the same evaluation episodes."""
    from offrl.agent import load_agent
    from offrl.envs.maze import planner_policy
    from offrl.evaluate import evaluate

    info = load_agent(run).dataset_info
    res = evaluate(planner_policy(info.metadata["maze"]), info.env_id, episodes=episodes, seed=10_000,
                   env_kwargs=info.env_kwargs or None, ref_min_score=info.ref_min_score,
                   ref_max_score=info.ref_max_score, obs_layout=info.obs_layout)
    row = _row("planner (reference)", res, None)
    row.update(algo="planner", steps=0, seeds=1, data_seed=int(info.metadata.get("seed", 0)), dataset=info.name)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path, help="folders holding ALGO-DATA run folders")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix")
    ap.add_argument("--episodes", type=int, default=10)
    args = ap.parse_args()
    rows = []
    for root in args.roots:
        runs = sorted((p for p in root.iterdir() if (p / "eval.jsonl").is_file() and (p / "checkpoint.msgpack").exists()),
                      key=lambda p: ORDER.index(p.name.split("-")[0]) if p.name.split("-")[0] in ORDER else 99)
        for run in runs:
            print("measuring", run, flush=True)
            rows.extend(measure(run, args.episodes))
        if runs:
            rows.append(planner_row(runs[0], args.episodes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = ["| data (seed) | updates | agent | normalised score (per seed) | success | steps to goal (successes) |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        t = f"{r['success_step_mean']:.0f}" if r["success_step_mean"] is not None else "–"
        lines.append(f"| {r['dataset']} ({r['data_seed']}) | {r['steps']} | {r['label']} | {r['score_mean']:.1f} ± {r['score_std']:.1f} "
                     f"({' / '.join(f'{s:.1f}' for s in r['per_seed'])}) | {r['success_rate']:.2f} | {t} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows, args.out.with_suffix(".png"))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r["dataset"], r["data_seed"], r["steps"]) for r in rows if r["algo"] != "planner"))
    labels = list(dict.fromkeys(r["label"].split(" (")[0] + (" R=data max" if "data max" in r["label"] else
                                                             " R=planner" if "planner return" in r["label"] else "") for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    width = 0.8 / max(len(labels), 1)
    for k, lab in enumerate(labels):
        for ax, key, title in zip(axes, ("score_mean", "success_rate", "success_step_mean"),
                                  ("normalised score", "success rate", "steps to reach the goal (successful episodes)")):
            vals = []
            for g in groups:
                match = [r for r in rows if (r["dataset"], r["data_seed"]) == g[:2] and r["steps"] in (g[2], 0) and
                         r["label"].split(" (")[0] + (" R=data max" if "data max" in r["label"] else
                                                     " R=planner" if "planner return" in r["label"] else "") == lab]
                vals.append(match[0][key] if match and match[0][key] is not None else np.nan)
            ax.bar(np.arange(len(groups)) + k * width, vals, width, label=lab)
            ax.set_title(title)
            ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
            ax.set_xticklabels([f"{d}\ndata seed {s}\n{n} updates" for d, s, n in groups], fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
