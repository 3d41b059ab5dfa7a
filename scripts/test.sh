#!/usr/bin/env bash
# Set up .venv and run the whole test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
export OFFRL_HOME="${OFFRL_HOME:-$(mktemp -d)}"  # tests never touch the user's dataset cache
exec .venv/bin/python -m pytest -q "$@"
