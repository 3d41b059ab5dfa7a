"""Static, self-contained HTML pages (``offrl report --html``, ``offrl bench --html``).

A page needs no server and no network: the CSS is inline, every figure is a PNG embedded as a
``data:`` URI, and there is no script. Open the file in any browser, attach it to a message, or
keep it beside a run.
"""

from __future__ import annotations

import base64
import io
import json
import os
from html import escape
from pathlib import Path

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1500px;
       padding: 0 16px; color: #1d1d1f; background: #ffffff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #d0d0d0; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
p.note, .muted { color: #5a5a5a; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.mean td { border-top: 2px solid #888888; font-weight: 600; }
tr.peer td:first-child { padding-left: 22px; color: #444444; }
tr.headline td { font-weight: 600; }
td.missing { color: #9a9a9a; text-align: center; }
.std { color: #6a6a6a; font-size: 0.85em; }
img.figure { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
details { margin: 0.6em 0; }
summary { cursor: pointer; color: #2a4f8a; }
pre { background: #f6f6f6; border: 1px solid #e0e0e0; padding: 8px; overflow-x: auto; font-size: 0.85em; }
code { font-size: 0.92em; }
"""


def esc(value) -> str:
    """``value`` as HTML text (None as an en dash)."""
    return "–" if value is None else escape(str(value))


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str) -> str:
    """An ``<img>`` holding the PNG bytes inline."""
    return f'<img class="figure" alt="{escape(alt, quote=True)}" src="{png_data_uri(png)}">'


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), row_classes: list[str] | None = None) -> str:
    """An HTML table; ``header`` is escaped here, cells are HTML already (pass them through ``esc``)."""
    def cls(i):
        return ' class="num"' if i in numeric else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(header))
    body = []
    for j, row in enumerate(rows):
        tr = f' class="{row_classes[j]}"' if row_classes and row_classes[j] else ""
        body.append(f"<tr{tr}>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def json_block(value) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, sort_keys=True), quote=False)}</pre>"


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def write_page(path: str | os.PathLike, text: str) -> Path:
    """Write a page atomically (a reader never sees half of it); returns its path."""
    from offrl.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))
    mask = os.umask(0)  # the temporary file was private (0600): give the page the usual permissions
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return Path(path)
