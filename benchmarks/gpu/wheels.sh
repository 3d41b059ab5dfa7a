#!/usr/bin/env bash
# Here, on a machine that reaches the package index: the wheels a GPU machine's image lacks, for
# benchmarks/gpu/rows.sh (its image has jax, flax, optax, h5py, rich, matplotlib, torch, but not
# gymnasium, mujoco or tyro; it reaches no index). Both folders are git-ignored through
# .git/info/exclude and travel with `carry`.
#   bash benchmarks/gpu/wheels.sh           # ours: gymnasium, mujoco, tyro and their needs -> .whl/   (about 26 MiB)
#   bash benchmarks/gpu/wheels.sh --peer    # also d3rlpy 2.8.1 and its needs -> .whl-peer/ (gymnasium 1.0.0, gym 0.26.2)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
TAGS=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
exclude() { grep -qx "/$1/" .git/info/exclude 2>/dev/null || echo "/$1/" >> .git/info/exclude; }

exclude .whl
rm -rf .whl && mkdir .whl
# The versions offrl's tests run with (pyproject.toml's environment); keep one version of each.
"$PY" -m pip download -q --no-deps --only-binary=:all: "${TAGS[@]}" -d .whl \
  gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 \
  glfw==2.11.0 pyopengl==3.1.10 tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1
ls .whl

if [ "${1:-}" = "--peer" ]; then
  exclude .whl-peer
  rm -rf .whl-peer && mkdir .whl-peer
  # d3rlpy pins gymnasium 1.0.0 (installed apart from ours, first on the peer's path) and imports gym.
  "$PY" -m pip download -q --no-deps --only-binary=:all: "${TAGS[@]}" -d .whl-peer \
    d3rlpy==2.8.1 gymnasium==1.0.0 gym-notices==0.1.0 structlog==25.5.0 dataclasses-json==0.6.7 marshmallow==3.26.1
  "$PY" -m pip wheel -q --no-deps -w .whl-peer gym==0.26.2  # gym 0.26.2 is published as source only
  ls .whl-peer
fi
du -sh .whl .whl-peer 2>/dev/null || true
