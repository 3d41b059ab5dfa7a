# Sourced by rows.sh and lanes.sh (needs PY and WHL): the carried wheels onto the GPU machine's Python, the
# machine's versions printed. WHL=none uses the environment as it is (a CPU check of those scripts).
install_wheels() {  # install_wheels DIR TARGET: DIR/*.whl into TARGET, no index, no dependencies
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "$1"/*.whl
}
if ls "$WHL"/*.whl >/dev/null 2>&1; then
  install_wheels "$WHL" /tmp/site || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
make_peer_python() {  # d3rlpy's wheels (.whl-peer, its own gymnasium first on its path) behind /tmp/peer-python
  install_wheels .whl-peer /tmp/peer-site || exit 1
  printf '#!/bin/sh\nPYTHONPATH=/tmp/peer-site:/tmp/site exec %s "$@"\n' "$(command -v "$PY")" > /tmp/peer-python
  chmod +x /tmp/peer-python
  export OFFRL_PEER_DEVICE=${OFFRL_PEER_DEVICE:-cuda:0}
}
show_machine() {
  "$PY" -c "import jax, gymnasium, mujoco, tyro, offrl; print('jax', jax.__version__, jax.devices(), 'gymnasium', gymnasium.__version__, 'mujoco', mujoco.__version__)" || exit 1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi (CPU run)"
}
