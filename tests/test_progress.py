"""Progress of long work: plain lines where stderr is not a terminal, a rich bar where it is."""

from __future__ import annotations

import io
import re

from offrl.progress import Progress, format_eta, plain_line


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_eta():
    assert format_eta(0) == "0:00:00"
    assert format_eta(3725.4) == "1:02:05"
    assert format_eta(36000) == "10:00:00"
    assert format_eta(float("nan")) == "--:--:--"
    assert format_eta(float("inf")) == "--:--:--"
    assert format_eta(-1) == "--:--:--"


def test_plain_line_known_answer():
    line = plain_line("sac_n on walker", 5000, 50000, "updates", 10.0, "score 8.3 ± 0.0", "00:41:07")
    assert line == "[00:41:07] sac_n on walker: 5,000/50,000 updates (10%), 10.0 updates/s, ETA 1:15:00, score 8.3 ± 0.0"
    assert plain_line("x", 3, 4, "env steps", None, None, "t") == "[t] x: 3/4 env steps (75%)"


def test_plain_lines_off_a_terminal_are_spaced_by_the_interval():
    out = io.StringIO()
    bar = Progress(True, total=100, title="bc on data", stream=out, interval_s=1e9)
    for step in range(10, 101, 10):
        bar.update(step, 50.0, "score 1.0" if step == 50 else None)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the first update's line, then the closing line; the interval holds the rest back
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] bc on data: 10/100 updates \(10%\), [\d.,]+ updates/s, ETA \d+:\d\d:\d\d", lines[0])
    assert "100/100 updates (100%)" in lines[1] and lines[1].endswith("ETA 0:00:00, score 1.0")  # the score is kept


def test_every_update_writes_a_line_at_interval_zero_and_disabled_writes_nothing():
    out = io.StringIO()
    bar = Progress(True, total=30, title="t", unit="env steps", stream=out, interval_s=0.0)
    for step in (10, 20, 30):
        bar.update(step, 5.0)
    assert [line.split(": ", 1)[1].split(" (")[0] for line in out.getvalue().splitlines()] == \
        ["10/30 env steps", "20/30 env steps", "30/30 env steps"]
    quiet = io.StringIO()
    off = Progress(False, total=30, title="t", stream=quiet, interval_s=0.0)
    off.update(10, 5.0)
    off.close()
    assert quiet.getvalue() == ""


def test_a_terminal_gets_the_rich_bar_not_plain_lines():
    term = _Terminal()
    bar = Progress(True, total=100, title="bc on data", stream=term, interval_s=0.0)
    bar.update(50, 20.0, "score 2.0")
    bar.close()
    text = term.getvalue()
    assert "bc on data" in text and "50/100" in text and "20 updates/s" in text and "score 2.0" in text
    assert "(50%)" not in text and not re.search(r"\[\d\d:\d\d:\d\d\]", text)  # no plain line
