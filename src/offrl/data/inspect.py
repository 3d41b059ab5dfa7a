"""Dataset inspection: summary statistics, a return histogram, and the ``offrl data info|plot``
command bodies (:func:`cli_info`, :func:`cli_plot`).

Standard deviations are population ones (``ddof=0``, numpy's default); quantiles use numpy's
default (linear) interpolation. Normalised scores are D4RL-style,
``100 * (R - ref_min_score) / (ref_max_score - ref_min_score)``, per episode, reported only when
both reference scores are known.

(No ``from __future__ import annotations`` here: tyro must resolve the annotations of the
argument classes defined inside the command functions, where ``tyro`` is a local import.)
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np

from offrl.data.dataset import Dataset
from offrl.usage import parse_args

__all__ = ["QUANTILES", "cli_info", "cli_plot", "dataset_summary", "plot_returns"]

#: Quantiles of the episode returns reported by `dataset_summary` (keys ``q05`` ... ``q95``).
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _stats(values: np.ndarray, quantiles: tuple[float, ...] = ()) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    out = {"mean": float(values.mean()), "std": float(values.std()),
           "min": float(values.min()), "max": float(values.max())}
    for q in quantiles:
        out[f"q{round(q * 100):02d}"] = float(np.quantile(values, q))
    return out


def _has_refs(dataset: Dataset) -> bool:
    lo, hi = dataset.info.ref_min_score, dataset.info.ref_max_score
    return lo is not None and hi is not None and np.isfinite([lo, hi]).all() and lo != hi


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    """Numbers describing a dataset, as a JSON-able dict.

    Keys: ``name, env_id, transitions, episodes, obs_dim, act_dim``; ``num_actions`` for a
    discrete dataset;
    ``episode_return`` (mean/std/min/max and the :data:`QUANTILES` as ``q05..q95``);
    ``episode_length`` (mean/std/min/max); ``reward`` (per-step mean/std/min/max);
    ``terminals`` and ``timeouts`` (number of transitions flagged);
    ``ref_min_score, ref_max_score`` (None when unknown) and ``normalized_score`` (per-episode
    mean/std/min/max of the behaviour data, None unless both references are known).
    The final episode is counted even when the arrays cut it (offrl marks it as a timeout).
    """
    returns = dataset.episode_returns()
    lengths = dataset.episode_lengths()
    info = dataset.info
    summary: dict[str, Any] = {
        "name": info.name,
        "env_id": info.env_id,
        "transitions": dataset.num_transitions,
        "episodes": dataset.num_episodes,
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        **({"num_actions": dataset.num_actions} if dataset.is_discrete else {}),
        "episode_return": _stats(returns, QUANTILES),
        "episode_length": _stats(lengths),
        "reward": _stats(dataset.rewards),
        "terminals": int((dataset.terminals > 0).sum()),
        "timeouts": int((dataset.timeouts > 0).sum()),
        "ref_min_score": info.ref_min_score,
        "ref_max_score": info.ref_max_score,
        "normalized_score": None,
    }
    if _has_refs(dataset):  # offrl.envs.normalized_score's formula (offrl.data imports no envs)
        lo, hi = info.ref_min_score, info.ref_max_score
        summary["normalized_score"] = _stats(100.0 * (np.asarray(returns, np.float64) - lo) / (hi - lo))
    return summary


def plot_returns(dataset: Dataset, path: str | os.PathLike, *, bins: int | None = None) -> Path:
    """Write a histogram of the episode returns to ``path`` (PNG, matplotlib Agg canvas); for the
    PointMaze datasets, also the visited positions on the maze map.

    Dashed vertical lines mark ``ref_min_score`` (random) and ``ref_max_score`` (expert) when
    known, a solid one the mean return. Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, no GUI

    returns = dataset.episode_returns()
    if bins is None:
        bins = int(np.clip(np.sqrt(len(returns)), 10, 50))
    panel = None
    if dataset.info.env_id and dataset.info.env_id.startswith("offrl/PointMaze"):
        from offrl.data.registry import builtins_package  # the layer that knows the mazes

        panel = builtins_package().position_panel(dataset)
    fig = Figure(figsize=(13, 4.6) if panel else (7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1) if panel else fig.add_subplot()
    if panel:  # mazes: the visited positions on the maze map beside the returns
        panel(fig.add_subplot(1, 2, 2))
    ax.hist(returns, bins=bins, color="tab:blue", alpha=0.75, edgecolor="white")
    ax.axvline(returns.mean(), color="black", lw=1.5, label=f"mean {returns.mean():.1f}")
    info = dataset.info
    if info.ref_min_score is not None:
        ax.axvline(info.ref_min_score, color="tab:red", ls="--", lw=1.5,
                   label=f"ref_min (random) {info.ref_min_score:.1f}")
    if info.ref_max_score is not None:
        ax.axvline(info.ref_max_score, color="tab:green", ls="--", lw=1.5,
                   label=f"ref_max (expert) {info.ref_max_score:.1f}")
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    ax.set_title(f"{info.name or 'dataset'}: {dataset.num_episodes} episodes, "
                 f"{dataset.num_transitions:,} transitions")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# ---------------------------------------------------------------------------------------------
# Command-line bodies (called by offrl.cli for `offrl data info|plot`)
# ---------------------------------------------------------------------------------------------


def _load(name: str, seed: int) -> Dataset:
    if name.startswith("minari:"):
        from offrl.data.minari_io import load_minari_name

        return load_minari_name(name)
    from offrl.data.registry import load_dataset

    return load_dataset(name, seed=seed)


def _default_plot_path(name: str) -> Path:
    stem = Path(name).stem if Path(name).expanduser().is_file() else name
    stem = re.sub(r"[^\w.-]+", "-", stem).strip("-") or "dataset"
    return Path.cwd() / f"{stem}-returns.png"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


def cli_info(argv: list[str]) -> int:
    """``offrl data info NAME [--seed S] [--json]``: print :func:`dataset_summary` as a table."""
    import tyro

    @dataclass
    class InfoArgs:
        """Summarise a dataset: sizes, episode returns and lengths, ends, reference scores."""

        name: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")]
        """Built-in dataset name, minari:NAMESPACE/NAME-vN, or path of an .hdf5/.npz file."""
        seed: int = 0
        """Seed of a built-in dataset."""
        json: bool = False
        """Print the summary as JSON instead of a table."""

    args = parse_args(InfoArgs, argv, "offrl data info")
    summary = dataset_summary(_load(args.name, args.seed))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dataset {summary['name'] or args.name}")
    table.add_column("quantity", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if key != "name":
            table.add_row(key.replace("_", " "), _fmt(value))
    Console().print(table)
    return 0


def cli_plot(argv: list[str]) -> int:
    """``offrl data plot NAME [--out PATH] [--seed S]``: write the episode-return histogram."""
    import tyro

    @dataclass
    class PlotArgs:
        """Plot the histogram of a dataset's episode returns (with the reference scores)."""

        name: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")]
        """Built-in dataset name, minari:NAMESPACE/NAME-vN, or path of an .hdf5/.npz file."""
        out: Annotated[Optional[str], tyro.conf.arg(metavar="PATH")] = None
        """PNG to write (default: NAME-returns.png in the current folder)."""
        seed: int = 0
        """Seed of a built-in dataset."""

    args = parse_args(PlotArgs, argv, "offrl data plot")
    out = Path(args.out) if args.out else _default_plot_path(args.name)
    path = plot_returns(_load(args.name, args.seed), out)
    print(f"wrote {path}")
    return 0
