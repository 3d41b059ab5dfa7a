"""Run logging: metrics as JSONL and CSV, learning curves as PNG, optional TensorBoard.

A run folder holds ``train.jsonl``/``train.csv`` (losses averaged on device over each chunk of
updates and over seeds; a population's rows add ``per_member_<loss>`` lists, JSONL only) and
``eval.jsonl``/``eval.csv`` (returns and normalised scores).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: ignore it
            continue
    return rows


class RunLogger:
    """Appends rows to ``{kind}.jsonl`` and ``{kind}.csv`` in a run folder."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = False, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        if resume_step is not None:  # drop rows written after the checkpoint we resume from
            for kind in ("train", "eval"):
                rows = [r for r in read_jsonl(self.run_dir / f"{kind}.jsonl") if r.get("step", 0) <= resume_step]
                (self.run_dir / f"{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
                (self.run_dir / f"{kind}.csv").unlink(missing_ok=True)
                for row in rows:
                    self._write_csv(kind, row)
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise ImportError("TensorBoard logging needs tensorboardX: pip install 'offrl[tensorboard]'") from None
            self._tb = SummaryWriter(str(self.run_dir / "tb"))

    def _write_csv(self, kind: str, row: dict) -> None:
        path = self.run_dir / f"{kind}.csv"
        if kind not in self._columns:
            if path.exists() and path.stat().st_size > 0:
                with path.open() as f:
                    self._columns[kind] = next(csv.reader(f))
            else:
                self._columns[kind] = [k for k, v in row.items() if not isinstance(v, (list, dict))]
                with path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._columns[kind])
        with path.open("a", newline="") as f:
            csv.writer(f).writerow(["" if _clean(row.get(c)) is None else row.get(c) for c in self._columns[kind]])

    def log(self, kind: str, row: dict) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        with (self.run_dir / f"{kind}.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._write_csv(kind, row)
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and value is not None:
                    self._tb.add_scalar(f"{kind}/{key}", value, row["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_run(run_dir: str | os.PathLike, path: str | os.PathLike | None = None, max_train_panels: int = 4) -> Path:
    """Learning curves of a run folder: evaluation score (mean ± std over seeds) and training losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = Path(path) if path else run_dir / "curves.png"
    train, evals = read_jsonl(run_dir / "train.jsonl"), read_jsonl(run_dir / "eval.jsonl")
    skip = {"step", "time", "updates_per_s", "elapsed_s"}
    train_keys = [k for k in (train[0] if train else {}) if k not in skip and isinstance(train[0][k], (int, float))]
    train_keys = [k for k in train_keys if k.endswith("loss")][:max_train_panels] or train_keys[:max_train_panels]
    panels = 1 + len(train_keys)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    ax = axes[0, 0]
    if evals:
        score_key = "normalized_score" if evals[0].get("normalized_score") is not None else "return_mean"
        std_key = "normalized_score_std" if score_key == "normalized_score" else "return_std"
        steps = [r["step"] for r in evals]
        mean = [r.get(score_key) or 0.0 for r in evals]
        std = [r.get(std_key) or 0.0 for r in evals]
        ax.plot(steps, mean, marker="o")
        ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.25)
        ax.set_ylabel("normalised score" if score_key == "normalized_score" else "return")
    ax.set_title("evaluation")
    ax.set_xlabel("updates")
    for i, key in enumerate(train_keys, start=1):
        a = axes[0, i]
        pts = [(r["step"], r[key]) for r in train if r.get(key) is not None]
        if pts:
            a.plot(*zip(*pts))
        a.set_title(key)
        a.set_xlabel("updates")
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
