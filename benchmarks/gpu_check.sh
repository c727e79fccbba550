#!/usr/bin/env bash
# The GPU measurements that docs/scaling.md (section "GPU") still lacks, as one command:
#   1. JAX with CUDA (installs "jax[cuda12]" when the Python in use sees no GPU) and the missing packages;
#   2. the pallas backend's tests on the GPU (tests/zero/test_pallas_backend.py, against select);
#   3. interpreter throughput, pallas vs select (demo and linear-regressor spaces, 1000 programs);
#   4. the search evaluator at 1k, 10k and 100k demo programs (benchmarks/scaling.py), pallas and select;
#   5. the README main command (linear_demo) on the pallas backend: time to success for seeds 0-2.
# Every step has its own time limit (550 s together, under a 10-minute command limit) and writes
# into ONE results file; a step that runs out of time is recorded as such and the next one starts.
#
# Usage (from anywhere):  bash benchmarks/gpu_check.sh [RESULTS_FILE]
#   RESULTS_FILE defaults to $OUT/gpu_check.txt where $OUT is set, else ./gpu_check.txt.
# Environment:
#   PYTHON=python3        the interpreter to use
#   AZJAX_WHEELS=DIR      install only from the wheels in DIR (machines without internet access)
#   GPU_CHECK_SCALE=1.0   multiplies every step's time limit
#   GPU_CHECK_DRY_RUN=1   run on a machine without a GPU (checks this script only; pallas then runs in
#                         interpret mode and the numbers mean nothing)
set -u
cd "$(dirname "$0")/.."
RESULTS=${1:-}
if [ -z "$RESULTS" ]; then
  if [ -n "${OUT:-}" ]; then RESULTS=$OUT/gpu_check.txt; else RESULTS=gpu_check.txt; fi
fi
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
PY=${PYTHON:-python3}
SCALE=${GPU_CHECK_SCALE:-1.0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
START=$(date +%s)

log() { echo "$@" | tee -a "$RESULTS"; }

step() {  # step NAME SECONDS COMMAND...
  local name=$1 secs limit t0 rc
  secs=$2
  shift 2
  limit=$(awk -v s="$secs" -v k="$SCALE" 'BEGIN { printf "%d", s * k }')
  log ""
  log "=== $name (limit ${limit}s): $*"
  t0=$(date +%s)
  timeout --signal=KILL "$limit" "$@" 2>&1 | tee -a "$RESULTS"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 137 ]; then log "=== $name: TIMED OUT after ${limit}s"; else log "=== $name: exit $rc after $(( $(date +%s) - t0 ))s"; fi
}

pip_install() {
  if [ -n "${AZJAX_WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --find-links "$AZJAX_WHEELS" "$@"
  else
    "$PY" -m pip install -q "$@"
  fi
}

log "azjax gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$RESULTS"

# 1. JAX with CUDA, and the package's dependencies (the repository itself runs from PYTHONPATH: the native
#    CPU kernel is not needed here).
if [ "${GPU_CHECK_DRY_RUN:-0}" != 1 ] && \
   ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" >/dev/null 2>&1; then
  log "no GPU-enabled JAX found: installing jax[cuda12]"
  pip_install -U "jax[cuda12]" 2>&1 | tail -3 | tee -a "$RESULTS"
fi
for mod in flax optax chex absl ml_collections pytest; do
  if ! "$PY" -c "import $mod" >/dev/null 2>&1; then
    pkg=$mod; [ "$mod" = absl ] && pkg=absl-py
    log "installing missing $pkg"
    pip_install "$pkg" 2>&1 | tail -3 | tee -a "$RESULTS"
  fi
done
"$PY" - <<'EOF' 2>&1 | tee -a "$RESULTS"
import platform, jax, jaxlib
print(f"python {platform.python_version()}, jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
      f"backend {jax.default_backend()}, devices {jax.devices()}")
EOF
if ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" >/dev/null 2>&1; then
  if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
    log "DRY RUN without a GPU: the numbers below are not GPU measurements"
  else
    log "FAILED: JAX sees no GPU; nothing measured"
    exit 1
  fi
fi

# 2. Tests on the GPU (the pallas kernel through Triton against select under XLA:GPU).
step "tests" 90 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" tests/zero/test_pallas_backend.py
step "tests: op sets" 60 "$PY" -m pytest -q -p no:cacheprovider tests/zero/test_pallas_backend.py \
  -k "op_sets_match_select or accuracy"

# 3. Interpreter throughput, pallas vs select.
step "interpreter_throughput" 75 "$PY" benchmarks/interpreter_throughput.py --configs=demo,quick \
  --backends=pallas,select --repeats=3

# 4. The search evaluator at 1k/10k/100k programs (one GPU). select at 100k runs separately: it may not
#    finish in its limit (its batch is a sequential map over chunks of 25 programs).
step "scaling pallas" 120 "$PY" benchmarks/scaling.py --devices=1 --backend=pallas \
  --populations=1000,10000,100000 --repeats=3
step "scaling select 1k,10k" 60 "$PY" benchmarks/scaling.py --devices=1 --backend=select \
  --populations=1000,10000 --repeats=3
step "scaling select 100k" 45 "$PY" benchmarks/scaling.py --devices=1 --backend=select \
  --populations=100000 --repeats=1

# 5. linear_demo (the README main command) on the pallas backend: time to success, seeds 0-2.
step "linear_demo time to success (pallas)" 100 "$PY" benchmarks/time_to_solution.py --seeds=3 \
  --max_seconds=25 --override=backend=pallas --print_programs=false

log ""
log "gpu_check done in $(( $(date +%s) - START ))s; results in $RESULTS"
