"""Progress of long work: a rich bar on a terminal, plain lines in a log.

On a terminal, :class:`Progress` draws a rich bar (done / total, rate, ETA, latest score). Where
stderr is not a terminal (``nohup``, a cluster job, a pipe) a live bar prints nothing until it
stops, so there it writes one plain line every ``interval_s`` seconds instead, and a last one when
the work ends::

    [00:41:07] sac_n on walker2d-medium-expert: 5,000/50,000 updates (10%), 6.1 updates/s, ETA 2:02:58, score 8.3 ± 0.0
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import TextIO

PLAIN_INTERVAL_S = 60.0
"""Seconds between two plain progress lines (the first comes after the first update)."""


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` of a non-negative number of seconds (``--:--:--`` when unknown)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "--:--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def plain_line(title: str, done: int, total: int, unit: str, rate: float | None, score: str | None,
               clock: str) -> str:
    """One progress line: ``[clock] title: done/total unit (pct), rate unit/s, ETA h:mm:ss[, score]``."""
    pct = 100.0 * done / total if total else 100.0
    parts = [f"[{clock}] {title}: {done:,}/{total:,} {unit} ({pct:.0f}%)"]
    if rate is not None and rate > 0:
        parts.append(f"{rate:,.1f} {unit}/s")
        parts.append(f"ETA {format_eta((total - done) / rate)}")
    if score:
        parts.append(score)
    return ", ".join(parts)


class Progress:
    """Done / total ``unit``, the rate, the ETA and the latest score, on a terminal or as plain lines."""

    def __init__(self, enabled: bool, total: int, title: str, unit: str = "updates", start: int = 0,
                 stream: TextIO | None = None, interval_s: float = PLAIN_INTERVAL_S):
        self.enabled, self.total, self.title, self.unit = enabled, total, title, unit
        self._stream = stream if stream is not None else sys.stderr
        self._interval_s = interval_s
        self._rich = None
        self._done, self._rate, self._score = start, None, None
        self._start_time, self._start_step, self._last_line = time.monotonic(), start, None
        if not enabled:
            return
        if getattr(self._stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[score]}"), console=Console(file=self._stream),
            )
            self._rich.start()
            self._task = self._rich.add_task(title, total=total, completed=start, rate="", score="")

    def update(self, done: int, rate: float | None = None, score: str | None = None) -> None:
        """``done`` so far; ``rate`` the latest units/s (None keeps the last); ``score`` the latest evaluation."""
        if not self.enabled:
            return
        self._done = done
        if rate is not None:
            self._rate = rate
        if score is not None:
            self._score = score
        if self._rich is not None:
            fields = {"score": self._score or ""}
            if self._rate is not None:
                fields["rate"] = f"{self._rate:,.0f} {self.unit}/s"
            self._rich.update(self._task, completed=done, **fields)
            return
        now = time.monotonic()
        if self._last_line is None or now - self._last_line >= self._interval_s:
            self._write(now)

    def _write(self, now: float) -> None:
        # ETA from the average rate since the start: chunk rates include compile pauses and evaluations
        elapsed = now - self._start_time
        average = (self._done - self._start_step) / elapsed if elapsed > 0 and self._done > self._start_step else self._rate
        line = plain_line(self.title, self._done, self.total, self.unit, average, self._score,
                          datetime.now().strftime("%H:%M:%S"))
        print(line, file=self._stream, flush=True)
        self._last_line = now

    def close(self) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.stop()
        elif self._last_line is None or self._done > self._start_step:
            self._write(time.monotonic())
