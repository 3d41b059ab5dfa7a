#!/usr/bin/env bash
# Train the MuJoCo zoo on a GPU machine: one process per env, several seeds batched in each, for
# TRAIN_S seconds, then pack the candidate snapshots into $OUT (see zoo_pack.py).
#   OUT=... TRAIN_S=420 bash benchmarks/gpu/zoo.sh      (wheels for the missing packages in .whl/)
#   ZOO="Hopper-v5:5 Ant-v5:4" bash benchmarks/gpu/zoo.sh   (env id:seeds pairs; default below)
set -u
export PYTHONUNBUFFERED=1
TRAIN_S=${TRAIN_S:-420}
ZOO=${ZOO:-"Hopper-v5:5 Walker2d-v5:6 HalfCheetah-v5:3"}
ENVS=$(for spec in $ZOO; do printf '%s ' "${spec%%:*}"; done)
NENVS=$(echo $ZOO | wc -w)
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
python3 -c "import jax, flax, optax, gymnasium, mujoco, tyro; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'mujoco', mujoco.__version__, jax.devices())" || exit 1
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
nproc
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.25
ROOT=/tmp/zoo
mkdir -p $ROOT
start=$(date +%s)
pids=()
for spec in $ZOO; do
  env=${spec%%:*}; n=${spec##*:}
  timeout -s INT $TRAIN_S python3 -m offrl.cli zoo train $env --seeds $n --env-steps 1000000 --snapshot-every 10000 \
    --eval-episodes 5 --out $ROOT/$env --no-progress > $ROOT/$env.log 2>&1 &
  pids+=($!)
done
sleep 60
for env in $ENVS; do
  echo "== $env after 60 s"; tail -3 $ROOT/$env.log; tail -1 $ROOT/$env/seed-0/train.csv 2>/dev/null | cut -c1-200
done
alive=0; for p in "${pids[@]}"; do kill -0 $p 2>/dev/null && alive=$((alive+1)); done
if [ $alive -lt $NENVS ]; then echo "a training process died early"; for env in $ENVS; do echo "== $env"; tail -30 $ROOT/$env.log; done; kill -INT "${pids[@]}" 2>/dev/null; wait; exit 1; fi
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
wait
echo "training ended after $(( $(date +%s) - start )) s"
for env in $ENVS; do echo "== $env"; tail -4 $ROOT/$env.log | cut -c1-300; done
python3 benchmarks/gpu/zoo_pack.py $ROOT ${OUT:-/tmp/zoo_out}
for env in $ENVS; do cp $ROOT/$env.log ${OUT:-/tmp/zoo_out}/ 2>/dev/null; done
echo "done after $(( $(date +%s) - start )) s"
