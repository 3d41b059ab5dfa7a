"""Offline-to-online fine-tuning benchmark: fine-tuned agents against online SAC from scratch.

    python benchmarks/finetune.py [--dataset hopper-medium-replay] [--env-steps 50000]
        [--algos iql:2,sac:2,awac:2,calql:1] [--offline-steps 100000] [--out benchmarks/results]

For each ``ALGO:SEEDS``: ``offrl.fit`` trains the agents offline (``--offline-steps`` updates; or
``--checkpoint ALGO=RUN_DIR`` reuses a run), then ``offrl.finetune`` continues them online for
``--env-steps`` environment steps (one update per step, batches proportional to the offline and
online data sizes unless ``--offline-ratio``). The reference is ``offrl.online.train_online`` SAC
from scratch over the same environment steps: ``sac:SEEDS`` in ``--algos`` (in that position), or
``--sac-seeds`` agents after the others. Every run evaluates every ``--eval-every`` env steps.
Writes ``finetune-DATASET-DATE.csv`` (one row per evaluation), ``.md`` (offline score, final
score, regret per algorithm: mean over seeds), ``.png`` (the curves) and ``.json`` (every curve with
the command, commit and budget that produced it), again after each algorithm: a run stopped
part-way keeps the algorithms it finished. ``--merge EARLIER.json`` starts from an earlier run's
algorithms and writes to that run's files, so a later run adds (or replaces, by name) some without
training the others again; each algorithm keeps its own command, commit and date. Hand-written
text under a ``## Notes`` heading of the ``.md`` is kept when the files are rewritten.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np


def parse_algos(text: str) -> list[tuple[str, int]]:
    out = []
    for part in text.split(","):
        name, _, seeds = part.partition(":")
        out.append((name.strip(), int(seeds or 1)))
    return out


def eval_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="hopper-medium-replay")
    ap.add_argument("--env-steps", type=int, default=50_000)
    ap.add_argument("--algos", default="iql:2,sac:2,awac:2,calql:1")
    ap.add_argument("--offline-steps", type=int, default=100_000)
    ap.add_argument("--checkpoint", action="append", default=[], help="ALGO=RUN_DIR: reuse an offline run")
    ap.add_argument("--offline-ratio", type=float, default=None)
    ap.add_argument("--sac-seeds", type=int, default=0, help="SAC-from-scratch agents after the others (or sac:N in --algos)")
    ap.add_argument("--eval-every", type=int, default=5_000)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--hidden-dims", type=int, nargs="+", default=None, help="override every network's width (smoke tests)")
    ap.add_argument("--work", default="runs/finetune-bench")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--merge", default=None, help="JSON of an earlier run: its algorithms are kept beside this run's")
    args = ap.parse_args()

    import dataclasses

    from offrl.algos import get_algo, sac
    from offrl.bench import git_commit
    from offrl.data import load_dataset
    from offrl.finetune import finetune
    from offrl.online import train_online
    from offrl.train import fit

    def config_of(name: str):
        config = get_algo(name).config_cls()
        if args.hidden_dims:
            config = dataclasses.replace(config, hidden_dims=tuple(args.hidden_dims))
        return config

    data = load_dataset(args.dataset)
    refs = (data.info.ref_min_score, data.info.ref_max_score)
    work = Path(args.work) / args.dataset
    reuse = dict(c.split("=", 1) for c in args.checkpoint)
    entries: dict[str, dict] = load_entries(args.merge, args.dataset) if args.merge else {}
    command, commit = "python " + " ".join(sys.argv), git_commit()  # offrl.bench's: "-dirty" when src/ has changes
    budget = (f"{args.offline_steps:,} offline updates, then {args.env_steps:,} env steps at one update per step; "
              f"evaluation every {args.eval_every:,} steps over {args.eval_episodes} episodes; offline ratio "
              f"{'proportional to the sizes' if args.offline_ratio is None else args.offline_ratio}")

    def record(name: str, runs: list, seconds: float, note: str = "") -> None:
        entries[name] = {"curves": [eval_rows(r.run_dir) for r in runs], "seconds": round(seconds, 1),
                         "command": command, "commit": commit, "budget": budget + note,
                         "date": datetime.date.today().isoformat()}

    def run_sac(seeds: int) -> None:
        t0 = time.time()
        config = sac.Config(hidden_dims=tuple(args.hidden_dims)) if args.hidden_dims else sac.Config()
        res = train_online(config, data.info.env_id, env_steps=args.env_steps, seeds=seeds,
                           start_steps=min(5_000, args.env_steps // 10), eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, run_dir=work / "sac-scratch", progress=False, ref_scores=refs)
        res = res if isinstance(res, list) else [res]
        record("sac (scratch)", res, time.time() - t0, "; SAC from scratch: no offline phase")

    jobs = parse_algos(args.algos) + ([("sac", args.sac_seeds)] if args.sac_seeds else [])
    for name, seeds in jobs:
        if name == "sac":
            run_sac(seeds)
            write_results(args, entries)
            continue
        t0 = time.time()
        offline_dir = Path(reuse[name]) if name in reuse else work / f"{name}-offline"
        if name not in reuse:
            fit(config_of(name), args.dataset, steps=args.offline_steps, seeds=seeds, run_dir=offline_dir,
                eval_episodes=args.eval_episodes, progress=False)
        results = finetune(offline_dir, steps=args.env_steps, offline_ratio=args.offline_ratio, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, run_dir=work / f"{name}-online", progress=False)
        note = f"; offline agents reused from {reuse[name]} (its offline updates, config and seeds)" if name in reuse else ""
        record(name, results, time.time() - t0, note)
        print(f"{name}: {[round(c[-1]['normalized_score'], 1) for c in entries[name]['curves']]} "
              f"in {entries[name]['seconds']:.0f} s", flush=True)
        write_results(args, entries)


def load_entries(path: str, dataset: str) -> dict[str, dict]:
    """The algorithms of an earlier run's JSON (``--merge``), checked to be of the same dataset."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"finetune.py: error: --merge {path}: cannot read it as JSON ({exc})")
    if saved.get("dataset") != dataset:
        raise SystemExit(f"finetune.py: error: --merge {path} holds dataset {saved.get('dataset')!r}, this run "
                         f"{dataset!r}; pass --dataset {saved.get('dataset')} or another file")
    missing = [n for n, e in saved.get("entries", {}).items() if not {"curves", "seconds", "command", "commit"} <= set(e)]
    if missing or "entries" not in saved:
        raise SystemExit(f"finetune.py: error: --merge {path}: entries {missing or 'all'} lack curves, seconds, command or commit")
    return dict(saved["entries"])


NOTES = "## Notes"


def write_results(args, entries: dict[str, dict]) -> Path:
    from offrl.finetune import regret_of

    if args.merge:  # the earlier run's files, extended
        stem = Path(args.merge).with_suffix("")
    else:
        stem = Path(args.out) / f"finetune-{args.dataset}-{datetime.date.today().isoformat()}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    old_md = stem.with_suffix(".md").read_text() if stem.with_suffix(".md").is_file() else ""
    notes = old_md[old_md.index(NOTES):] if NOTES in old_md else ""
    stem.with_suffix(".json").write_text(json.dumps({"dataset": args.dataset, "entries": entries}, indent=1) + "\n")
    curves = {name: e["curves"] for name, e in entries.items()}
    lines = ["algo,seed,env_step,normalized_score,return_mean"]
    for name, runs in curves.items():
        for k, rows in enumerate(runs):
            lines += [f"{name},{k},{r['step']},{r.get('normalized_score')},{r['return_mean']}" for r in rows]
    stem.with_suffix(".csv").write_text("\n".join(lines) + "\n")

    md = [f"# Offline-to-online fine-tuning on {args.dataset}", "",
          "Regret = mean over the online evaluations of 1 - normalised score / 100 (lower is better).", "",
          "| algo | seeds | offline score | final score | regret | wall-clock (s) | commit |",
          "|---|---:|---:|---:|---:|---:|---|"]
    for name, runs in curves.items():
        first = [r[0]["normalized_score"] for r in runs]
        last = [r[-1]["normalized_score"] for r in runs]
        regret = [regret_of(r) for r in runs]
        off = "-" if name.startswith("sac") else f"{np.mean(first):.1f}"
        md.append(f"| {name} | {len(runs)} | {off} | {np.mean(last):.1f} ± {np.std(last):.1f} | "
                  f"{np.mean(regret):.3f} | {entries[name]['seconds']:.0f} | {entries[name]['commit']} |")
    md += ["", "Runs (command, date and budget of each algorithm's row):", ""]
    md += [f"- {name}: `{e['command']}` ({e.get('date', '-')}). Budget: {e.get('budget', '-')}." for name, e in entries.items()]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n" + ("\n" + notes if notes else ""))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in curves.items():
        steps = [r["step"] for r in runs[0]]
        scores = np.array([[r["normalized_score"] for r in rows][: len(steps)] for rows in runs])
        ax.plot(steps, scores.mean(axis=0), label=f"{name} ({len(runs)} seeds)")
        if len(runs) > 1:
            ax.fill_between(steps, scores.min(axis=0), scores.max(axis=0), alpha=0.2)
    ax.set_xlabel("online environment steps")
    ax.set_ylabel("normalised score")
    ax.set_title(f"fine-tuning on {args.dataset}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print("\n".join(md))
    print(f"wrote {stem}.csv/.md/.png/.json")
    return stem


if __name__ == "__main__":
    main()
