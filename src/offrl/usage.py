"""The boundary between a user's mistake and a bug on the command line.

A user's mistake (an option out of range, a missing file, an unknown name, a dataset that does not
fit the algorithm) is one of ``offrl.cli.user_errors()``: ``offrl`` prints it as one line on stderr,
``offrl COMMAND: error: ...``, and exits with status 2. Any other exception is a bug and keeps its
traceback. :func:`parse_args` runs tyro so that its own parse errors (a malformed value, a missing
argument) become a :class:`UsageError` too, instead of a multi-line box.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from typing import Any, Sequence


class UsageError(Exception):
    """A malformed command line: an unknown command or option, a value tyro cannot parse."""


def one_line(box: str) -> str:
    """The first paragraph of a tyro error box as one line: ``Required options: Missing from ...``,
    ``--steps: invalid literal for int() ...`` (a "Value error" box shows only its message). Reads
    both of tyro's drawings: a Unicode box, and the plain one (title, dashed rules) it draws when the
    stream cannot show box characters."""
    items = []  # (kind, text): "title", "rule" or "text"
    for raw in box.splitlines():
        line = raw.strip()
        top = line.startswith(("╭", "+"))
        line = line.strip("│|╭╮╰╯").strip()
        if not line:
            continue
        words = line.strip("─-+ ").strip()
        items.append(("title", words) if top and words else ("text", line) if words else ("rule", ""))
    if len(items) >= 2 and items[0][0] == "text" and items[1][0] == "rule":  # the plain drawing's title
        items[:2] = [("title", items[0][1])]
    title = items[0][1] if items and items[0][0] == "title" else ""
    body: list[str] = []
    for kind, line in items[1 if title else 0:]:
        if kind == "rule" and body:  # what follows is help text
            break
        if kind == "text":
            body.append(line)
    text = re.sub(r"\s+", " ", " ".join(body)).strip()
    text = re.sub(r"^Error parsing (-[^:]+): ", r"\1: ", text)  # an option: keep its name
    text = re.sub(r"^Error parsing [^-:][^:]*: ", "", text)  # a nested config: its message names the field
    if title and title.lower() != "value error" and not text.lower().startswith(title.lower()):
        text = f"{title}: {text}" if text else title
    return text or "invalid arguments"


def parse_args(cls: Any, argv: Sequence[str], prog: str) -> Any:
    """``tyro.cli(cls, args=argv, prog=prog)``; a parse error raises :class:`UsageError` (one line)
    instead of printing tyro's box. ``--help`` prints the help and exits 0 as usual."""
    import tyro

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = tyro.cli(cls, args=list(argv), prog=prog)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        raise UsageError(f"{one_line(captured.getvalue())} (see `{prog} --help`)") from None
    sys.stderr.write(captured.getvalue())  # warnings of a successful parse still reach the user
    return args
