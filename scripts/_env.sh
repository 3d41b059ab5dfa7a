# Shared set-up for scripts/demo.sh and scripts/test.sh: a virtual environment in .venv with offrl installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "offrl needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$PYTHON" --version)" >&2
  "$PYTHON" -m venv .venv
fi
echo "installing offrl and its dependencies into .venv (first time: a few minutes)" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"

# The tests of the HTML pages (offrl report --html, offrl bench --html) load them in a headless browser,
# Debian's chromium. When it is missing and apt-get can install it (root, as on CI), install it; then those
# tests must run (OFFRL_REQUIRE_BROWSER=1: a missing browser fails them). Elsewhere they skip and say why.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || [ -n "${OFFRL_CHROMIUM:-}" ]; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export OFFRL_REQUIRE_BROWSER=1
    echo "installing chromium with apt-get (the HTML pages' tests load them in a headless browser)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null; then
      echo "apt-get could not install chromium: the browser tests will fail" >&2
    fi
  fi
}
