"""Achieved against requested return, for return-conditioned policies (``rvs``, ``dt``).

`sweep` evaluates a policy once per requested return; `write_target_returns` stores the table
(``target_returns.csv``: one row per target and seed) and its figure (``target_returns.png``: achieved
return against requested return, mean and range over seeds, the diagonal and the dataset's range of
episode returns) in a run folder, both written atomically. `far_outside` says which requests lie far
outside the returns the data holds (warned about: nothing in the data shows what such a return needs).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from offrl.checkpoint import atomic_write_bytes

__all__ = ["CSV_NAME", "PNG_NAME", "TargetReturnWarning", "default_targets", "far_outside", "far_outside_message", "parse_targets", "sweep", "warn_far_outside",
           "write_target_returns"]

CSV_NAME, PNG_NAME = "target_returns.csv", "target_returns.png"

#: a request farther than this fraction of the data's range of episode returns beyond it is "far outside"
FAR = 0.5


class TargetReturnWarning(UserWarning):
    """A requested return far outside the dataset's episode returns."""


def default_targets(low: float, high: float, count: int = 5) -> list[float]:
    """``count`` evenly spaced requests from the lowest to the highest episode return of the data."""
    return [float(x) for x in np.linspace(low, high, count)]


def far_outside(targets: Sequence[float], low: float, high: float) -> list[float]:
    """The requests below ``low - FAR (high - low)`` or above ``high + FAR (high - low)``."""
    span = max(high - low, 1e-8 * max(1.0, abs(high)))
    return [float(t) for t in targets if t < low - FAR * span or t > high + FAR * span]


def far_outside_message(targets: Sequence[float], low: float, high: float) -> str | None:
    """The warning about the requests `far_outside` the data's range (naming the range), or None."""
    far = far_outside(targets, low, high)
    if not far:
        return None
    listed = ", ".join(f"{t:g}" for t in far)
    return (f"target return {listed} is far outside the dataset's episode returns [{low:g}, {high:g}]: the data shows "
            "no behaviour reaching it, so the policy's answer is an extrapolation; ask for returns in or near that range")


def warn_far_outside(targets: Sequence[float], low: float, high: float) -> list[float]:
    """Warn (`TargetReturnWarning`) about the requests `far_outside` the data's range, naming it; returns them."""
    message = far_outside_message(targets, low, high)
    if message:
        warnings.warn(message, TargetReturnWarning, stacklevel=2)
    return far_outside(targets, low, high)


def parse_targets(text: str) -> list[float]:
    """``"1000,2000,3000"`` -> [1000.0, 2000.0, 3000.0]; ValueError naming the bad entry."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--target-returns: {part.strip()!r} is not a number; give returns separated by commas, "
                             "e.g. --target-returns 1000,2000,3000") from None
        if not np.isfinite(value):
            raise ValueError(f"--target-returns: {part.strip()!r} is not a finite number")
        values.append(value)
    return values


def sweep(evaluate_target: Callable[[float], list[dict]], targets: Sequence[float]) -> list[dict]:
    """One row per (target, seed): ``evaluate_target(target)`` returns one `offrl.evaluate` result per seed."""
    rows = []
    for target in targets:
        for seed_index, result in enumerate(evaluate_target(float(target))):
            row: dict[str, Any] = {"target_return": float(target), "seed_index": seed_index,
                                   "return_mean": result["return_mean"], "return_std": result["return_std"],
                                   "episodes": len(result["returns"])}
            if result.get("normalized_score") is not None:
                row["normalized_score"] = result["normalized_score"]
            rows.append(row)
    return rows


def write_target_returns(run_dir: str | os.PathLike, rows: list[dict], data_range: tuple[float, float] | None = None,
                         title: str = "") -> tuple[Path, Path]:
    """Write ``target_returns.csv`` and ``target_returns.png`` into ``run_dir``; returns both paths."""
    run_dir = Path(run_dir)
    columns = ["target_return", "seed_index", "return_mean", "return_std", "episodes"]
    if rows and "normalized_score" in rows[0]:
        columns.append("normalized_score")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = run_dir / CSV_NAME
    atomic_write_bytes(csv_path, text.getvalue().encode())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({r["target_return"] for r in rows})
    achieved = [[r["return_mean"] for r in rows if r["target_return"] == t] for t in targets]
    mean = np.array([np.mean(a) for a in achieved])
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    ax.plot(targets, mean, marker="o", label="achieved (mean over seeds)")
    ax.fill_between(targets, [min(a) for a in achieved], [max(a) for a in achieved], alpha=0.25, label="seed range")
    lims = [min(targets + list(mean)), max(targets + list(mean))]
    ax.plot(lims, lims, color="grey", linestyle="--", linewidth=1, label="achieved = requested")
    if data_range is not None:
        ax.axvspan(*data_range, color="tab:green", alpha=0.08, label="dataset's episode returns")
    ax.set_xlabel("requested return")
    ax.set_ylabel("achieved return")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    png_path = run_dir / PNG_NAME
    atomic_write_bytes(png_path, buffer.getvalue())
    return csv_path, png_path
