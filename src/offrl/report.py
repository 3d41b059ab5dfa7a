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

``offrl report --html RUN_DIR ...`` writes one static, self-contained page instead (no server, no
network; figures inline): the evaluation table, the over-estimation figure, each run's learning
curves and every evaluation, and each run's config.
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
    """PNG path (default: RUN_DIR/overestimation.png for one run, ./overestimation.png for several); with
    --html, the page's path (default: RUN_DIR/report.html for one run, ./report.html for several)."""
    labels: Optional[str] = None
    """Comma-separated legend labels (default: each run's algorithm and dataset)."""
    html: bool = False
    """Write one self-contained HTML page (no server, no network) with the evaluation table, the over-estimation
    figure, the learning curves and the config of every run, instead of the PNG."""


def _label(run_dir: Path) -> str:
    import json

    config = run_dir / "config.json"
    if config.is_file():
        meta = json.loads(config.read_text())
        return f"{meta.get('algo', run_dir.name)} ({meta.get('dataset_info', {}).get('name') or 'dataset'})"
    return run_dir.name


def _checked(run_dirs: list[str | Path], labels: list[str] | None) -> tuple[list[Path], list[str]]:
    runs = [Path(r) for r in run_dirs]
    for r in runs:
        if not (r / "eval.jsonl").is_file():
            raise ValueError(f"{r} has no eval.jsonl; train with evaluations (--eval-interval N) to draw its curves")
    labels = labels or [_label(r) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
    return runs, labels


def overestimation_figure(run_dirs: list[str | Path], out: str | Path | None = None, labels: list[str] | None = None) -> Path:
    """Write the figure (see the module docstring) and return its path."""
    import matplotlib.pyplot as plt

    runs, labels = _checked(run_dirs, labels)
    out = Path(out) if out else (runs[0] / "overestimation.png" if len(runs) == 1 else Path("overestimation.png"))
    fig = _draw_overestimation(runs, labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _draw_overestimation(runs: list[Path], labels: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    return fig


def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pm(row: dict, key: str, std_key: str) -> str:
    if row.get(key) is None:
        return "–"
    return f"{row[key]:.1f}" + (f' <span class="std">± {row[std_key]:.1f}</span>' if row.get(std_key) is not None else "")


def _default_config(algo: str | None) -> dict | None:
    """The algorithm's config with today's defaults, as it reads back from config.json (None: unknown algorithm)."""
    import dataclasses
    import json

    from offrl.algos import get_algo

    try:
        return json.loads(json.dumps(dataclasses.asdict(get_algo(algo).config_cls())))
    except (KeyError, TypeError):
        return None


def _config_section(run: Path, label: str) -> str:
    import json

    from offrl import htmlpage as H

    path = run / "config.json"
    if not path.is_file():
        return f"<h3>{H.esc(label)}</h3><p class=\"note\">{H.esc(run)} holds no config.json.</p>"
    meta = json.loads(path.read_text())
    info, loop = meta.get("dataset_info") or {}, meta.get("loop") or {}
    facts = [("folder", str(run)), ("algorithm", meta.get("algo")), ("dataset", meta.get("dataset_source") or info.get("name")),
             ("environment", info.get("env_id")), ("offrl version", meta.get("offrl_version")),
             *((k, loop[k]) for k in ("steps", "seeds", "seed", "seed_strategy", "chunk", "eval_interval", "eval_episodes") if k in loop)]
    out = [f"<h3>{H.esc(label)}</h3>", H.table(["run", "value"], [[H.esc(k), H.esc(v)] for k, v in facts])]
    config = meta.get("algo_config") or {}
    if config:
        defaults = _default_config(meta.get("algo")) or {}
        rows, classes = [], []
        for k, v in config.items():
            changed = k in defaults and defaults[k] != v
            rows.append([f"<code>{H.esc(k)}</code>", H.esc(json.dumps(v)),
                         H.esc(json.dumps(defaults[k])) if changed else ""])
            classes.append("headline" if changed else "")
        out.append("<p class=\"note\">Algorithm config (in bold: a field that differs from today's default).</p>")
        out.append(H.table(["field", "value", "default"], rows, row_classes=classes))
    out.append(f"<details><summary>config.json</summary>{H.json_block(meta)}</details>")
    return "".join(out)


def html_report(run_dirs: list[str | Path], out: str | Path | None = None, labels: list[str] | None = None) -> Path:
    """Write one self-contained HTML page for the runs (see the module docstring) and return its path."""
    import tempfile
    import time

    import matplotlib.pyplot as plt

    from offrl import htmlpage as H
    from offrl.logger import plot_run

    runs, labels = _checked(run_dirs, labels)
    out = Path(out) if out else (runs[0] / "report.html" if len(runs) == 1 else Path("report.html"))
    evals = [read_jsonl(r / "eval.jsonl") for r in runs]
    for run, rows in zip(runs, evals):
        if not rows:
            raise ValueError(f"{run}/eval.jsonl holds no evaluation; train with evaluations (--eval-interval N)")

    # The evaluation table: the last evaluation of every run.
    header = ["run", "updates", "normalised score", "return", "score per seed", "success rate",
              "Q(s0, π(s0))", "discounted return"]
    table_rows = []
    for label, rows in zip(labels, evals):
        last = rows[-1]
        per_seed = last.get("per_seed_scores") or last.get("per_seed_returns") or []
        table_rows.append([H.esc(label), H.esc(last.get("step")), _pm(last, "normalized_score", "normalized_score_std"),
                           _pm(last, "return_mean", "return_std"), H.esc(" ".join(f"{v:.1f}" for v in per_seed)),
                           _fmt(last.get("success_rate"), 2), _fmt(last.get("q_estimate"), 2), _fmt(last.get("discounted_return"), 2)])
    body = [f"<h1>offrl report: {H.esc(', '.join(labels))}</h1>",
            f"<p class=\"note\">{len(runs)} run{'s' if len(runs) > 1 else ''}; written {time.strftime('%Y-%m-%d %H:%M')} "
            "by <code>offrl report --html</code>. Scores: mean ± std over seeds at the last evaluation; normalised score "
            "100·(R − R_random)/(R_expert − R_random).</p>",
            "<h2>Evaluation</h2>", H.table(header, table_rows, numeric={1, 2, 3, 5, 6, 7})]

    fig = _draw_overestimation(runs, labels)
    body += ["<h2>Over-estimation</h2>",
             "<p class=\"note\">Left: the critic's value of the evaluation's start states, Q(s0, π(s0)) (solid), against the "
             "discounted return the policy then obtained from them (dashed), in the algorithm's reward units; a critic "
             "that over-estimates runs far above its dashed line. Right: the evaluation score.</p>",
             H.img(H.figure_png(fig), "over-estimation figure")]
    plt.close(fig)

    body.append("<h2>Learning curves</h2>")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (run, label, rows) in enumerate(zip(runs, labels, evals)):
            png = plot_run(run, Path(tmp) / f"curves{i}.png").read_bytes()
            every = [[H.esc(r.get("step")), _pm(r, "normalized_score", "normalized_score_std"), _pm(r, "return_mean", "return_std"),
                      _fmt(r.get("q_estimate"), 2), _fmt(r.get("discounted_return"), 2)] for r in rows]
            body += [f"<h3>{H.esc(label)}</h3>", H.img(png, f"learning curves of {label}"),
                     f"<details><summary>every evaluation ({len(rows)})</summary>",
                     H.table(["updates", "normalised score", "return", "Q(s0, π(s0))", "discounted return"], every,
                             numeric={0, 1, 2, 3, 4}), "</details>"]

    body.append("<h2>Config</h2>")
    body += [_config_section(run, label) for run, label in zip(runs, labels)]
    return H.write_page(out, H.page(f"offrl report: {', '.join(labels)}", "\n".join(body)))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(ReportArgs, argv, "offrl report")
    if not args.run_dirs:
        print("offrl report: error: give at least one RUN_DIR (a folder made by `offrl train`)", file=sys.stderr)
        return 2
    draw = html_report if args.html else overestimation_figure
    try:
        path = draw(list(args.run_dirs), args.out, args.labels.split(",") if args.labels else None)
    except ValueError as exc:
        print(f"offrl report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
