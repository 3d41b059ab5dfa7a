#!/usr/bin/env bash
# Set up .venv and run the main job: IQL on the built-in pendulum-mixed dataset (made locally),
# 20k updates, evaluation with a normalised score, and a learning-curve plot in runs/.
# Extra arguments go to `offrl train iql`, e.g. `bash scripts/demo.sh --seeds 4`.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/offrl train iql "$@"
