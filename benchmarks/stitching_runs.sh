#!/usr/bin/env bash
# The stitching runs of benchmarks/results/stitching-cpu-2026-12-07.md: bc, iql, rvs (RvS-R and RvS-G) and dt
# (cut sizes) on a maze stitch dataset at one budget, one job at a time on one core with one XLA thread.
# usage: benchmarks/stitching_runs.sh DATASET STEPS SEEDS OUT_DIR [DATA_FILE]   (DATA_FILE: another data seed's file)
# (CORE=N: the core it runs on, default 0)
set -euo pipefail
dataset=$1 steps=$2 seeds=$3 out=$4 data=${5:-$1}
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
run() {  # run LABEL ALGO [algo options...]   (LABEL names the run folder)
  local label=$1 algo=$2; shift 2
  local dir="$out/$label-$(basename "${data%.*}")"
  [ -f "$dir.done" ] && { echo "skip $dir"; return; }
  local t0=$SECONDS
  nice -n 10 taskset -c "${CORE:-0}" python -m offrl.cli train "$algo" --dataset "$data" --steps "$steps" --seeds "$seeds" \
    --eval-interval $((steps / 2)) --eval-episodes 10 --chunk 500 --no-progress --run-dir "$dir" "$@" > "$dir.log" 2>&1
  echo "$label $data: $((SECONDS - t0)) s wall" | tee -a "$out/walls.txt"
  touch "$dir.done"
}
mkdir -p "$out"
run bc bc
run iql iql
run rvs rvs --algo.hidden-dims 256 256 --algo.return-scale 0.04
run rvsg rvs --algo.hidden-dims 256 256 --algo.conditioning goal
run dt dt --algo.context-len 10 --algo.embed-dim 64 --algo.num-layers 2 --algo.warmup-steps 500 --algo.return-scale 0.04
