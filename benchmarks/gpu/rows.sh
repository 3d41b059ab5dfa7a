#!/usr/bin/env bash
# The `offrl bench` rows that wait for a GPU, run on a GPU machine in one call of at most 10 minutes.
#
#   here, once:   bash benchmarks/gpu/wheels.sh [--peer]       (the packages the GPU image lacks)
#   on the GPU:   OUT=$OUT [PEER=d3rlpy] bash benchmarks/gpu/rows.sh JOBSET [JOBSET ...]   (carry .whl [.whl-peer])
#   here, after:  offrl bench locomotion-cpu --merge FILES_AT/rows-locomotion-cpu.jsonl
#
# Job sets, the budgets of the CPU acceptance rows (one GPU call each, most important first):
#   constraint  bcq, bear: hopper-medium-replay and halfcheetah-medium, 2 seeds x 50k
#   cql         cql with fixed alpha and with the Lagrange alpha as d3rlpy sets it (target_action_gap=6.6
#               alpha=13.59, see docs/algorithms/cql.md), bc_steps=0:
#               hopper-medium-replay, 2 seeds x 30k
#   awac        awac: halfcheetah-medium and walker2d-medium-expert 3 x 50k, hopper-medium-replay 3 x 100k
#               (CRR's three rows and BRAC's were run on the CPU; `brac` below repeats BRAC's if wanted)
#   brac        brac_p, brac_v: hopper-medium-replay, 3 seeds x 100k
#   finetune    benchmarks/finetune.py: AWAC (2 seeds) and Cal-QL (1 seed) on hopper-medium-replay, 50k env steps,
#               merged with the recorded IQL/SAC curves; its .md/.csv/.png/.json come back in $OUT/finetune/
#   smoke       bc on pendulum-random, 1 seed x 300 updates (checks this script; on a CPU:
#               WHL=none PYTHON=.venv/bin/python OUT=/tmp/o bash benchmarks/gpu/rows.sh smoke)
# PEER=d3rlpy adds d3rlpy's row (1 seed, same files and budget) after ours, on cuda:0 (OFFRL_PEER_DEVICE).
#
# Datasets are made on the machine (offrl data make, in parallel, on the CPU); their checksums go
# into the rows. Rows go to /tmp/offrl-rows/SUITE/rows.jsonl and are copied to $OUT after every job,
# with each job's log, so a call stopped at its limit still returns the rows it finished.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/offrl-gpu-out}
RESULTS=${RESULTS:-/tmp/offrl-rows}
export OFFRL_HOME=${OFFRL_HOME:-/tmp/offrl-home}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$RESULTS"
WHL=${WHL:-.whl}  # WHL=none: use the environment as it is (a CPU check of this script)
source "$(dirname "$0")/_setup.sh"
PEER_ARGS=()
if [ -n "${PEER:-}" ]; then
  ls .whl-peer/*.whl >/dev/null 2>&1 || { echo "PEER=$PEER needs .whl-peer/ (bash benchmarks/gpu/wheels.sh --peer)"; exit 1; }
  make_peer_python
  PEER_ARGS=(--peer "$PEER" --peer-python /tmp/peer-python)
fi
show_machine
start=$(date +%s)

make_data() {  # each dataset once, in parallel, on the CPU (rollouts of the zoo's policies)
  local pids=() d
  for d in "$@"; do
    JAX_PLATFORMS=cpu "$PY" -m offrl.cli data make "$d" > "$OUT/data-$d.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { echo "data make failed:"; tail -5 "$OUT"/data-*.log; exit 1; }; done
  echo "datasets $* made after $(( $(date +%s) - start )) s"
}

job() {  # job NAME SUITE ARGS...: one offrl bench call, then its rows and log to $OUT
  local name=$1 suite=$2; shift 2
  echo "== $(date +%T) $name: offrl bench $suite $*"
  "$PY" -m offrl.cli bench "$suite" --results "$RESULTS" --no-progress "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? after $(( $(date +%s) - start )) s; $(grep -E '^ +[a-z0-9-]+ +[a-z_0-9]+ \(' "$OUT/$name.log" | tr -s ' ' | tr '\n' ';')"
  cp "$RESULTS/$suite/rows.jsonl" "$OUT/rows-$suite.jsonl" 2>/dev/null
}

for set in "$@"; do
  case $set in
    constraint)
      make_data hopper-medium-replay halfcheetah-medium
      for d in hopper-medium-replay halfcheetah-medium; do
        job "bcq-bear-$d" locomotion-cpu --algos bcq,bear --datasets "$d" --seeds 2 --steps 50000 "${PEER_ARGS[@]}"
      done ;;
    cql)
      make_data hopper-medium-replay
      # bc_steps=0: the default 40k-update behaviour-cloning warm-up would outlast a 30k budget (d3rlpy has none)
      job cql-fixed locomotion-cpu --algos cql --datasets hopper-medium-replay --seeds 2 --steps 30000 \
        --set bc_steps=0 "${PEER_ARGS[@]}"
      job cql-lagrange locomotion-cpu --algos cql --datasets hopper-medium-replay --seeds 2 --steps 30000 \
        --set bc_steps=0 target_action_gap=6.6 alpha=13.59 ;;
    awac)
      make_data halfcheetah-medium walker2d-medium-expert hopper-medium-replay
      job awac-hc locomotion-cpu --algos awac --datasets halfcheetah-medium --seeds 3 --steps 50000 "${PEER_ARGS[@]}"
      job awac-w2d locomotion-cpu --algos awac --datasets walker2d-medium-expert --seeds 3 --steps 50000 "${PEER_ARGS[@]}"
      job awac-hmr locomotion-cpu --algos awac --datasets hopper-medium-replay --seeds 3 --steps 100000 "${PEER_ARGS[@]}" ;;
    brac)
      make_data hopper-medium-replay
      job brac-hmr locomotion-cpu --algos brac_p,brac_v --datasets hopper-medium-replay --seeds 3 --steps 100000 ;;
    finetune)
      make_data hopper-medium-replay
      echo "== $(date +%T) finetune: benchmarks/finetune.py --algos awac:2,calql:1"
      # --merge writes beside the merged JSON: copy the record (and its notes) to $OUT first
      mkdir -p "$OUT/finetune" && cp benchmarks/results/finetune-hopper-medium-replay-2026-11-27.{json,md} "$OUT/finetune/"
      "$PY" benchmarks/finetune.py --algos awac:2,calql:1 --work /tmp/offrl-finetune \
        --merge "$OUT/finetune/finetune-hopper-medium-replay-2026-11-27.json" > "$OUT/finetune.log" 2>&1
      echo "   exit $? after $(( $(date +%s) - start )) s"; tail -5 "$OUT/finetune.log" ;;
    smoke)
      make_data pendulum-random
      job smoke locomotion-cpu --algos bc --datasets pendulum-random --seeds 1 --steps 300 --episodes 2 "${PEER_ARGS[@]}" ;;
    *) echo "unknown job set $set (constraint, cql, awac, brac, finetune, smoke)"; exit 2 ;;
  esac
done
echo "done after $(( $(date +%s) - start )) s; rows in $OUT:"; ls "$OUT"
