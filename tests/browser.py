"""Load an HTML page in a real headless browser (Debian's ``chromium``) for the tests of the static pages.

``scripts/test.sh`` installs chromium with apt-get when it is missing and it runs as root (as on CI) and
then sets ``OFFRL_REQUIRE_BROWSER=1``: there (and wherever ``CI`` is set) a missing browser fails the
test; elsewhere the test skips and says how to get one.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest


def chromium() -> str:
    path = os.environ.get("OFFRL_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if path:
        return path
    reason = ("no headless browser: install Debian's chromium (`apt-get install chromium`; scripts/test.sh does it "
              "when run as root) or set OFFRL_CHROMIUM=/path/to/chromium")
    if os.environ.get("OFFRL_REQUIRE_BROWSER") == "1" or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Rendered:
    dom: str
    """The DOM after loading (``--dump-dom``)."""
    screenshot: np.ndarray
    """The viewport as an (H, W, 3) uint8 array."""
    console: list[str]
    """The page's console messages and uncaught errors."""


def render(page: Path, work: Path, width: int = 1400, height: int = 2000) -> Rendered:
    """Open ``page`` in headless chromium; its DOM, a screenshot of the viewport and the console messages."""
    from PIL import Image

    browser = chromium()
    work.mkdir(parents=True, exist_ok=True)
    shot = work / "screenshot.png"
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", "--mute-audio", "--enable-logging=stderr", "--v=0", f"--user-data-dir={work / 'profile'}",
           f"--window-size={width},{height}", f"--screenshot={shot}", "--dump-dom", page.resolve().as_uri()]
    env = {**os.environ, "HOME": str(work)}  # the browser's caches stay in the test's folder
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=work)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{browser} did not finish loading {page} in 90 s")
    assert done.returncode == 0 and shot.is_file(), f"{browser} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return Rendered(done.stdout, np.asarray(Image.open(shot).convert("RGB")), console)


class PageParts(HTMLParser):
    """The parts of a page the tests look at: its images' sources, every link and source, and its tables' cells."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.tables: list[list[list[str]]] = []  # table -> row -> cell text
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        for name in ("src", "href", "srcset", "data", "poster", "action"):
            if attrs.get(name) is not None:
                self.references.append((tag, name, attrs[name]))
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> PageParts:
    parts = PageParts()
    parts.feed(html)
    parts.close()
    return parts


def assert_self_contained(html: str) -> PageParts:
    """No script, stylesheet link or frame, and every source or link is inline (``data:``) or on the page (``#id``)."""
    parts = parse(html)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parts.tags), set(parts.tags)
    outside = [r for r in parts.references if not (r[2].startswith("data:") or r[2].startswith("#"))]
    assert not outside, f"the page refers to outside resources: {outside}"
    assert "url(" not in html and "@import" not in html  # nothing fetched by the CSS
    return parts


def png_image(uri: str) -> np.ndarray:
    """A ``data:image/png;base64,...`` URI decoded and verified as a PNG; its pixels as (H, W, 3) uint8."""
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:60]
    data = base64.b64decode(uri[len(prefix):], validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    Image.open(io.BytesIO(data)).verify()  # a complete, well-formed PNG
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def coloured_share(pixels: np.ndarray) -> float:
    """The share of pixels with a clear colour (text, rules and table borders are grey or black)."""
    pixels = pixels.astype(np.int16)
    return float(np.mean(pixels.max(axis=-1) - pixels.min(axis=-1) > 60))


def ink_share(pixels: np.ndarray) -> float:
    """The share of pixels that are not (near) white."""
    return float(np.mean(pixels.min(axis=-1) < 200))


def locate(screen: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """Where ``image`` appears at its own size in ``screen`` (top, left), or None: the figure is on the screen."""
    h, w = image.shape[:2]
    key = int(np.argmax((image.min(axis=-1) < 200).sum(axis=1)))  # the image's row with the most ink
    needle = image[key].tobytes()
    for y in range(key, screen.shape[0] - (h - key) + 1):
        row = screen[y].tobytes()
        i = row.find(needle)
        while i >= 0 and i % 3:  # a whole pixel
            i = row.find(needle, i + 1)
        if i >= 0:
            top, left = y - key, i // 3
            block = screen[top:top + h, left:left + w].astype(np.int16)
            if block.shape == image.shape and np.abs(block - image).mean() < 2:
                return top, left
    return None
