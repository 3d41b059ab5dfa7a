#!/usr/bin/env bash
# Several benchmark jobs at once on one GPU machine, in one call of at most 10 minutes: each argument is a
# lane (a comma list of jobs run one after another); lanes run side by side, sharing the GPU and the CPUs.
# A lane is a process on the GPU: rows that ran beside others carry slower `seconds` than alone.
#
#   here, once:   bash benchmarks/gpu/wheels.sh --peer       (the packages the GPU image lacks)
#   on the GPU:   OUT=$OUT LIMIT_S=540 bash benchmarks/gpu/lanes.sh cql-fixed,cql-lagrange peer-awac-hmr ...
#                 (carry .whl .whl-peer)
#   here, after:  tar xzf FILES_AT/lanes.tgz; offrl bench locomotion-cpu --merge res/JOB/locomotion-cpu/rows.jsonl
#
# Jobs (ours unless peer-; budgets of the CPU acceptance rows; peers: d3rlpy, 1 seed, on cuda:0):
#   cql-fixed, cql-lagrange   cql, bc_steps=0, fixed alpha / Lagrange alpha as d3rlpy's reproduction sets it
#                             (its threshold 10 and weight 5 from alpha e: ours alpha=13.59 target_action_gap=6.6,
#                             docs/algorithms/cql.md; session 15 ran target_action_gap=10 alpha=5, which let alpha
#                             fall to 0.01):
#                             hopper-medium-replay, 2 seeds x 30k
#   peer-cql                  d3rlpy's CQL, hopper-medium-replay, 30k
#   awac-hmr, awac-hc, awac-w2d            awac, 3 seeds: hopper-medium-replay x 100k, halfcheetah-medium
#   peer-awac-hmr, peer-awac-hc, peer-awac-w2d   and walker2d-medium-expert x 50k; d3rlpy's AWAC likewise
#   bcq-hmr-more              bcq, hopper-medium-replay, seeds 2-4 x 50k
#   peer-bcq-hmr-s2, -s3      d3rlpy's BCQ (n_action_samples=10), hopper-medium-replay, seed 2 / 3 x 50k
#   ft-awac, ft-calql         benchmarks/finetune.py on hopper-medium-replay (AWAC 2 seeds, Cal-QL 1 seed),
#                             each into its own copy of the recorded fine-tuning JSON
#   sacn-hc, edac-hc          issue 31's ensembles at the paper's N (and eta) per dataset, 1 seed each:
#   sacn-w2d, edac-w2d        halfcheetah-medium x 50k (N 10; eta 1), walker2d-medium-expert x 50k (N 20; N 10, eta 5),
#   sacn-hmr, edac-hmr        hopper-medium-replay x 100k (N 200; N 50, eta 1); on one CPU core, scaled from
#                             the measured N = 10 rates, these would take from about 1.5 h (N 10) to about 40 h (N 200)
#   bracp-a10-w2d, bracv-a10-w2d   issue 31's weak rows after the fix: brac_p / brac_v at alpha 10, walker2d-medium-expert 3 x 50k
#   crr-ln-w2d, crr-ln-hmr    crr with critic_layer_norm: walker2d-medium-expert 3 x 50k, hopper-medium-replay 3 x 100k
#   smoke, peer-smoke         bc on pendulum-random, 1 seed x 300 updates, ours / d3rlpy's (CPU check of this
#                             script: WHL=none PYTHON=.venv/bin/python OUT=/tmp/o bash benchmarks/gpu/lanes.sh smoke
#                             peer-smoke; FT_ARGS="--env-steps 200 ..." shrinks the ft- jobs for such a check)
#
# Every dataset a job needs is made once, at the start, in parallel on the CPU; a job waits for its own.
# Each job has its own results folder; rows, logs, evaluation curves and fine-tuning records are packed
# into $OUT/lanes.tgz every 20 s and at the end, so a call stopped at its limit still returns what finished.
# Jobs still running at LIMIT_S seconds are stopped. SPEED=1 first times the compiled loop against d3rlpy on
# the GPU alone (benchmarks/speed.py: IQL and TD3+BC at 1 and 8 seeds, CQL at 1; at most SPEED_S seconds (default 300),
# while the datasets are made on the CPU); the lanes start after it.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/offrl-gpu-out}
LIMIT_S=${LIMIT_S:-540}
ROOT=${ROOT:-/tmp/lanes}
export OFFRL_HOME=${OFFRL_HOME:-/tmp/offrl-home}
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU's memory
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$ROOT/res" "$ROOT/logs"
PEER_PY=""  # set below, after the jobs are checked
HMR=hopper-medium-replay HC=halfcheetah-medium W2D=walker2d-medium-expert
BCQ_PEER=(--peer-set n_action_samples=10)
dataset_of() {  # the datasets a job reads
  case $1 in
    *-hc) echo $HC ;; *-w2d) echo $W2D ;; *smoke) echo pendulum-random ;; *) echo $HMR ;;
  esac
}
bench_args() {  # the offrl bench arguments of a job
  local peer=(--peer d3rlpy --peer-only --peer-seeds 1 --peer-threads 1 --peer-python "$PEER_PY")
  case $1 in
    cql-fixed)      echo --algos cql --datasets $HMR --seeds 2 --steps 30000 --set bc_steps=0 ;;
    cql-lagrange)   echo --algos cql --datasets $HMR --seeds 2 --steps 30000 --set bc_steps=0 target_action_gap=6.6 alpha=13.59 ;;
    peer-cql)       echo --algos cql --datasets $HMR --seeds 2 --steps 30000 --set bc_steps=0 "${peer[@]}" ;;
    awac-hmr)       echo --algos awac --datasets $HMR --seeds 3 --steps 100000 ;;
    awac-hc)        echo --algos awac --datasets $HC --seeds 3 --steps 50000 ;;
    awac-w2d)       echo --algos awac --datasets $W2D --seeds 3 --steps 50000 ;;
    peer-awac-hmr)  echo --algos awac --datasets $HMR --seeds 3 --steps 100000 "${peer[@]}" ;;
    peer-awac-hc)   echo --algos awac --datasets $HC --seeds 3 --steps 50000 "${peer[@]}" ;;
    peer-awac-w2d)  echo --algos awac --datasets $W2D --seeds 3 --steps 50000 "${peer[@]}" ;;
    bcq-hmr-more)   echo --algos bcq --datasets $HMR --seeds 3 --first-seed 2 --steps 50000 ;;
    peer-bcq-hmr-s2) echo --algos bcq --datasets $HMR --seeds 1 --first-seed 2 --steps 50000 "${peer[@]}" "${BCQ_PEER[@]}" ;;
    peer-bcq-hmr-s3) echo --algos bcq --datasets $HMR --seeds 1 --first-seed 3 --steps 50000 "${peer[@]}" "${BCQ_PEER[@]}" ;;
    sacn-hc)        echo --algos sac_n --datasets $HC --seeds 1 --steps 50000 --set num_qs=10 ;;
    edac-hc)        echo --algos edac --datasets $HC --seeds 1 --steps 50000 --set num_qs=10 eta=1 ;;
    sacn-w2d)       echo --algos sac_n --datasets $W2D --seeds 1 --steps 50000 --set num_qs=20 ;;
    edac-w2d)       echo --algos edac --datasets $W2D --seeds 1 --steps 50000 --set num_qs=10 eta=5 ;;
    sacn-hmr)       echo --algos sac_n --datasets $HMR --seeds 1 --steps 100000 --set num_qs=200 ;;
    edac-hmr)       echo --algos edac --datasets $HMR --seeds 1 --steps 100000 --set num_qs=50 eta=1 ;;
    bracp-a10-w2d)  echo --algos brac_p --datasets $W2D --seeds 3 --steps 50000 --set alpha=10 ;;
    bracv-a10-w2d)  echo --algos brac_v --datasets $W2D --seeds 3 --steps 50000 --set alpha=10 ;;
    crr-ln-w2d)     echo --algos crr --datasets $W2D --seeds 3 --steps 50000 --set critic_layer_norm=true ;;
    crr-ln-hmr)     echo --algos crr --datasets $HMR --seeds 3 --steps 100000 --set critic_layer_norm=true ;;
    smoke)          echo --algos bc --datasets pendulum-random --seeds 1 --steps 300 --episodes 2 ;;
    peer-smoke)     echo --algos bc --datasets pendulum-random --seeds 1 --steps 300 --episodes 2 "${peer[@]}" ;;
    *) return 1 ;;
  esac
}

pack() {  # everything worth keeping, small files only (no checkpoints), into $OUT/lanes.tgz (atomically; lanes pack at once)
  local tmp="$OUT/.lanes.$BASHPID.tgz"  # one temporary file per packing process
  (cd "$ROOT" && find res ft logs speed -type f \( -name 'rows.jsonl' -o -name 'eval.csv' -o -name 'train.csv' \
      -o -name 'config.json' -o -name '*.log' -o -name 'finetune-*' -o -name 'speed-*' \) 2>/dev/null | tar czf "$tmp" -T -) \
    && mv "$tmp" "$OUT/lanes.tgz"
}

run_job() {  # run_job JOB: wait for its dataset, run it with what is left of LIMIT_S
  local job=$1 d left log="$ROOT/logs/$1.log"
  d=$(dataset_of "$job")
  while [ ! -f "$OFFRL_HOME/datasets/$d.hdf5" ]; do
    [ -f "$ROOT/logs/data-$d.failed" ] && { echo "$job: dataset $d failed" | tee -a "$log"; return 1; }
    sleep 2
  done
  left=$(( start + LIMIT_S - $(date +%s) ))
  [ "$left" -gt 20 ] || { echo "$job: skipped, ${left} s left"; return 1; }
  echo "== +$(( $(date +%s) - start )) s $job (at most $left s)"
  case $job in
    ft-awac|ft-calql)
      local algo=${job#ft-} seeds=2; [ "$algo" = calql ] && seeds=1
      mkdir -p "$ROOT/ft/$algo"
      cp benchmarks/results/finetune-hopper-medium-replay-2026-11-27.{json,md} "$ROOT/ft/$algo/"
      # shellcheck disable=SC2086
      timeout "$left" "$PY" benchmarks/finetune.py --algos "$algo:$seeds" --work "$ROOT/ft-work/$algo" ${FT_ARGS:-} \
        --merge "$ROOT/ft/$algo/finetune-hopper-medium-replay-2026-11-27.json" > "$log" 2>&1 ;;
    *)
      local args; args=$(bench_args "$job") || { echo "unknown job $job"; return 2; }
      case $job in peer-*) [ -n "$PEER_PY" ] || { echo "$job: no peer (carry .whl-peer)"; return 2; } ;; esac
      # shellcheck disable=SC2086
      timeout "$left" "$PY" -m offrl.cli bench locomotion-cpu --results "$ROOT/res/$job" --no-progress $args > "$log" 2>&1 ;;
  esac
  local rc=$?
  echo "   $job exit $rc after $(( $(date +%s) - start )) s: $(grep -E '^ +[a-z0-9-]+ +[a-z_0-9]+ \(|^(awac|calql): ' "$log" | tr -s ' ' | tr '\n' ';')"
  pack
}

lane() {  # lane JOB,JOB,...: its jobs one after another
  local job
  for job in ${1//,/ }; do run_job "$job"; done
}

for l in "$@"; do  # every job known before anything starts (no install, no dataset)
  for j in ${l//,/ }; do
    case $j in ft-awac|ft-calql) ;; *) bench_args "$j" >/dev/null || { echo "unknown job $j (see the list at the top of $0)"; exit 2; } ;; esac
  done
done
[ $# -gt 0 ] || { echo "usage: bash $0 LANE [LANE ...], a lane being a comma list of jobs"; exit 2; }

start=$(date +%s)
WHL=${WHL:-.whl}
source "$(dirname "$0")/_setup.sh"
if [ "$WHL" != none ] && ls .whl-peer/*.whl >/dev/null 2>&1; then
  make_peer_python
  PEER_PY=/tmp/peer-python
elif [ "$WHL" = none ] && [ -x .venv-d3rlpy/bin/python ]; then
  PEER_PY=$PWD/.venv-d3rlpy/bin/python
fi
show_machine
echo "commit: $(git rev-parse --short HEAD 2>&1 | head -1); $(nproc) CPUs"

# the datasets, each once, in parallel on the CPU
needed=$(for l in "$@"; do for j in ${l//,/ }; do dataset_of "$j"; done; done | sort -u)
for d in $needed; do
  ( JAX_PLATFORMS=cpu "$PY" -m offrl.cli data make "$d" > "$ROOT/logs/data-$d.log" 2>&1 \
      && echo "dataset $d made after $(( $(date +%s) - start )) s" \
      || { touch "$ROOT/logs/data-$d.failed"; echo "dataset $d FAILED"; tail -3 "$ROOT/logs/data-$d.log"; } ) &
done
if [ "${SPEED:-0}" = 1 ]; then  # alone on the GPU: the timings of benchmarks/results/speed-gpu-*.md
  mkdir -p "$ROOT/speed"
  speed_s=${SPEED_S:-300}
  peer_flags=(--peer none); [ -n "$PEER_PY" ] && peer_flags=(--peer d3rlpy --peer-python "$PEER_PY")
  timeout $(( speed_s * 2 / 3 )) "$PY" benchmarks/speed.py --platform default --algos iql,td3bc --seeds 1,8 \
    --seed-strategies vmap --updates 3000 --peer-updates 1000 "${peer_flags[@]}" \
    --out "$ROOT/speed/speed-gpu-iql-td3bc.md" > "$ROOT/logs/speed-iql-td3bc.log" 2>&1
  echo "speed iql,td3bc exit $? after $(( $(date +%s) - start )) s"
  left=$(( start + speed_s - $(date +%s) ))
  [ "$left" -gt 15 ] && timeout "$left" "$PY" benchmarks/speed.py --platform default --algos cql --seeds 1 \
    --updates 1000 --peer-updates 300 --set bc_steps=0 target_action_gap=10 "${peer_flags[@]}" \
    --out "$ROOT/speed/speed-gpu-cql.md" > "$ROOT/logs/speed-cql.log" 2>&1
  echo "speed cql exit $? after $(( $(date +%s) - start )) s"
  grep -h -E '^\| (offrl|d3rlpy) ' "$ROOT"/speed/*.md 2>/dev/null
  pack
fi
pids=()
for l in "$@"; do lane "$l" & pids+=($!); done
( while sleep 20; do pack; done ) & packer=$!
for p in "${pids[@]}"; do wait "$p"; done
kill $packer 2>/dev/null
pack
echo "done after $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
tar tzf "$OUT/lanes.tgz" | grep -c . | sed 's/^/files packed: /'
