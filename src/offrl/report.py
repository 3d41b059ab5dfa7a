"""``offrl report RUN_DIR [RUN_DIR ...]``: the over-estimation figure of one or several runs.

For every Q-based algorithm, each evaluation of :func:`offrl.fit` logs (``eval.jsonl``), averaged over
the evaluation episodes and the seeds:

* ``q_estimate``: the critic's value of the start states, Q(s0, pi(s0)) (``Algo.q_value`` at the
  policy's deterministic action), in the algorithm's reward units (after reward scaling);
* ``discounted_return``: the discounted return sum_t discount^t r_t the policy actually obtained from
  those start states, with the same reward scaling and the algorithm's ``discount``;
* ``q_ratio``: q_estimate / discounted_return (meaningful when the return is positive).

The figure draws, against training updates, the two values (left: the estimate solid, the realised
return dashed, per run; a critic that over-estimates runs far above its dashed line) and the normalised
score (right). A run without a critic (e.g. BC) contributes its score only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import tyro

from offrl.logger import read_jsonl
from offrl.usage import parse_args


@dataclass
class ReportArgs:
    """Draw the over-estimation figure of one or several run folders."""

    run_dirs: tyro.conf.Positional[Annotated[tuple[str, ...], tyro.conf.arg(metavar="RUN_DIR")]]
    """Run folders of `offrl train` (each holds eval.jsonl and config.json)."""
    out: Optional[str] = None
    """PNG path (default: RUN_DIR/overestimation.png for one run, ./overestimation.png for several)."""
    labels: Optional[str] = None
    """Comma-separated legend labels (default: each run's algorithm and dataset)."""


def _label(run_dir: Path) -> str:
    import json

    config = run_dir / "config.json"
    if config.is_file():
        meta = json.loads(config.read_text())
        return f"{meta.get('algo', run_dir.name)} ({meta.get('dataset_info', {}).get('name') or 'dataset'})"
    return run_dir.name


def overestimation_figure(run_dirs: list[str | Path], out: str | Path | None = None, labels: list[str] | None = None) -> Path:
    """Write the figure (see the module docstring) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [Path(r) for r in run_dirs]
    for r in runs:
        if not (r / "eval.jsonl").is_file():
            raise ValueError(f"{r} has no eval.jsonl; train with evaluations (--eval-interval N) to draw its curves")
    labels = labels or [_label(r) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
    out = Path(out) if out else (runs[0] / "overestimation.png" if len(runs) == 1 else Path("overestimation.png"))
    fig, (ax_q, ax_s) = plt.subplots(1, 2, figsize=(10, 3.8))
    any_q = False
    for i, (run, label) in enumerate(zip(runs, labels)):
        rows = read_jsonl(run / "eval.jsonl")
        color = f"C{i}"
        q = [(r["step"], r["q_estimate"], r["discounted_return"]) for r in rows if r.get("q_estimate") is not None]
        if q:
            any_q = True
            steps, est, ret = zip(*q)
            ax_q.plot(steps, est, color=color, marker="o", ms=3, label=f"{label}: Q(s0, π(s0))")
            ax_q.plot(steps, ret, color=color, ls="--", marker="x", ms=3, label=f"{label}: discounted return")
        key = "normalized_score" if rows and rows[0].get("normalized_score") is not None else "return_mean"
        ax_s.plot([r["step"] for r in rows], [r[key] for r in rows], color=color, marker="o", ms=3, label=label)
        ax_s.set_ylabel("normalised score" if key == "normalized_score" else "return")
    ax_q.set_title("critic estimate vs realised return at the start states")
    ax_q.set_xlabel("updates")
    ax_q.set_ylabel("value (algorithm's reward units)")
    if any_q:
        values = [abs(v) for line in ax_q.get_lines() for v in line.get_ydata()]
        if values and max(values) > 50 * max(min(values), 1e-6) and min(values) > 0:
            ax_q.set_yscale("symlog")
        ax_q.legend(fontsize=7)
    else:
        ax_q.text(0.5, 0.5, "no critic estimates logged", ha="center", va="center", transform=ax_q.transAxes)
    ax_s.set_title("evaluation")
    ax_s.set_xlabel("updates")
    ax_s.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(ReportArgs, argv, "offrl report")
    if not args.run_dirs:
        print("offrl report: error: give at least one RUN_DIR (a folder made by `offrl train`)", file=sys.stderr)
        return 2
    try:
        path = overestimation_figure(list(args.run_dirs), args.out, args.labels.split(",") if args.labels else None)
    except ValueError as exc:
        print(f"offrl report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
