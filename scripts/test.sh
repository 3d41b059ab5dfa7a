#!/usr/bin/env bash
# Set up .venv and run the whole test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
export OFFRL_HOME="${OFFRL_HOME:-$(mktemp -d)}"  # tests never touch the user's dataset cache
ensure_chromium  # scripts/_env.sh: the HTML pages' tests need a headless browser
# Two workers (the machines have 2 cores); an algorithm's contract tests stay on one worker
# (xdist_group), so they share its compiled programs. OFFRL_TEST_WORKERS=0 runs in one process.
# Tests compile with XLA's optimisations off (tests/conftest.py); OFFRL_TEST_OPTIMIZED=1 keeps them on.
exec .venv/bin/python -m pytest -q -n "${OFFRL_TEST_WORKERS:-2}" --dist loadgroup "$@"
