#!/usr/bin/env bash
# The GPU columns of the benchmarks in one call of a device machine (no internet there).
#
#   here:   python benchmarks/device_kit.py        # fills device_carry/ (git-ignored, < 58 MiB)
#   device: command "bash benchmarks/device_session.sh", carry ["device_carry"], timeout 600 s
#   here:   tar xzf <files_at>/results.tgz         # benchmarks/results/*_cuda.*, then commit
#
# In order of what the issue needs most, each step given at most its own cap and what is
# left of DEADLINE seconds: the ground truth of VARIANTS (the cuda protocol of ground_truth.py;
# every finished cell is kept, so a step cut short still returns what it measured), fit's
# budget curve against it, throughput with GPU utilisation during a fit, then the baselines
# at the same budgets. Everything under benchmarks/results/*_cuda.* and the log come back
# in $OUT; the budget steps measure again what an earlier session measured (against the
# grid as it is now). Overrides: DEADLINE, VARIANTS, FRACTIONS, BASELINES, FIT_BUDGET, and
# DEVICE (cpu: a dry run of the plumbing here, in a scratch clone, since it writes the cpu
# results).
set -uo pipefail
cd "$(dirname "$0")/.."
kit=$PWD/device_carry
device=${DEVICE:-cuda}
deadline=${DEADLINE:-540}
variants=${VARIANTS:-flowers5_subset/vtab1k}
fractions=${FRACTIONS:-0.05,0.1,0.25,0.5}
baselines=${BASELINES:-seed-style default,fastai fine_tune,BiT-HyperRule every backbone}
fit_budget=${FIT_BUDGET:-30s}
out=${OUT:-$PWD/device_out}
mkdir -p "$out"
log=$out/log.txt
start=$SECONDS

[ -d "$kit/wheels" ] || { echo "no $kit: run benchmarks/device_kit.py first" | tee "$log"; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$kit"/wheels/*.whl || exit 1
export PYTHONPATH=$PWD:$kit/site:/tmp/site PYTHONUNBUFFERED=1
export AUTOTRANSFER_BENCH_DATASETS=$kit/datasets AUTOTRANSFER_CACHE=/tmp/autotransfer-cache
export HF_HUB_OFFLINE=1  # nothing outside the machine can be reached
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; } \
  | tee "$log"

step() {  # step AT_MOST_SECONDS script.py args...
  local left=$((deadline - (SECONDS - start)))
  local t=$(($1 < left ? $1 : left))
  shift
  if [ "$t" -lt 30 ]; then
    echo "== skipped, ${left}s left: $*" | tee -a "$log"
    return
  fi
  echo "== $(date -u +%T) at most ${t}s: $*" | tee -a "$log"
  timeout "$t" python3 "$@" 2>&1 | tee -a "$log"
  echo "== exit ${PIPESTATUS[0]} after $((SECONDS - start))s" | tee -a "$log"
}

step 300 benchmarks/ground_truth.py --device "$device" --variants "$variants"
step 200 benchmarks/budget_efficiency.py --device "$device" --variants "$variants" \
  --fractions "$fractions" --methods fit --again
step 150 benchmarks/throughput.py --device "$device" --data "$kit/datasets/flowers5_subset" \
  --fit-budget "$fit_budget"
step 600 benchmarks/budget_efficiency.py --device "$device" --variants "$variants" \
  --fractions "$fractions" --methods "$baselines" --again
# tables and plots from whatever the steps kept (a step stopped by its timeout wrote none)
python3 benchmarks/ground_truth.py --device "$device" --render >>"$log" 2>&1
python3 benchmarks/budget_efficiency.py --device "$device" --render >>"$log" 2>&1
tar czf "$out/results.tgz" benchmarks/results/*_"$device".* && ls -l "$out" | tee -a "$log"
