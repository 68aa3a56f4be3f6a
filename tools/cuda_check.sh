#!/usr/bin/env bash
# Prove visdet's CUDA-only paths on a GPU machine in one call (docs/cuda.md):
#   bash tools/cuda_check.sh                 # install (tools/setup_env.sh, cupy, pytest-timeout), then the rest
#   bash tools/cuda_check.sh --skip-install  # .venv is already set up
#   bash tools/cuda_check.sh --dry-run       # any machine, no CUDA needed: the same phases, checked not run
# Phases, each timed: install; the device (nvidia-smi, torch's CUDA build, the GPU); every test marked
# `cuda` (pytest -m cuda); benchmarks/detector_speed.py and benchmarks/optimizer_step.py on the GPU.
# Everything goes to work_dirs/cuda_check/<date>_<time>.log, named at the end with a summary: the phases,
# the tests' counts and the benchmarks' ratios. Exit 0 only when every phase passed.
#
# Environment: CUDA_CHECK_DRY_RUN=1 (= --dry-run), CUDA_CHECK_SKIP_INSTALL=1 (= --skip-install),
# CUDA_CHECK_LOG_DIR (default work_dirs/cuda_check), CUDA_CHECK_TESTS (pytest paths; default the whole
# suite), CUDA_CHECK_TEST_TIMEOUT / CUDA_CHECK_PER_TEST_TIMEOUT / CUDA_CHECK_BENCH_TIMEOUT (seconds for
# the test run / one test, where pytest-timeout is installed / each benchmark),
# CUDA_CHECK_DRY_BENCH=1 (a dry run also runs each benchmark for one iteration on the CPU), PYTHON (for
# tools/setup_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

DRY_RUN="${CUDA_CHECK_DRY_RUN:-0}"
SKIP_INSTALL="${CUDA_CHECK_SKIP_INSTALL:-0}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --skip-install) SKIP_INSTALL=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "cuda_check.sh: unknown argument '$1' (known: --dry-run, --skip-install, --help)" >&2; exit 2 ;;
    esac
    shift
done

PY=.venv/bin/python
LOG_DIR="${CUDA_CHECK_LOG_DIR:-work_dirs/cuda_check}"
# Limits that keep the run inside its 8 minutes after the install (the first real run will tell the times).
TEST_TIMEOUT="${CUDA_CHECK_TEST_TIMEOUT:-330}"
PER_TEST_TIMEOUT="${CUDA_CHECK_PER_TEST_TIMEOUT:-150}"
BENCH_TIMEOUT="${CUDA_CHECK_BENCH_TIMEOUT:-75}"
read -r -a TEST_PATHS <<< "${CUDA_CHECK_TESTS:-}"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/$(date +%Y%m%d_%H%M%S).log"
OUT_DIR="$(mktemp -d)"  # each phase's own output, for the summary
trap 'rm -rf "$OUT_DIR"' EXIT
export PYTHONUNBUFFERED=1

SUMMARY=()
FAILED=()
PHASE=""
PHASE_T0=0

phase_start() {
    PHASE="$1"
    PHASE_T0=$SECONDS
    echo
    echo "=== $PHASE"
}

phase_end() {  # STATUS: ok, skipped (with why), or what failed
    local elapsed=$((SECONDS - PHASE_T0))
    SUMMARY+=("$(printf '  %-16s %4ds  %s' "$PHASE" "$elapsed" "$1")")
    echo "=== $PHASE: $1 (${elapsed}s)"
    case "$1" in ok|skipped*|"dry run"*) ;; *) FAILED+=("$PHASE") ;; esac
}

run_phase_command() {  # NAME CMD...: run CMD, output to the log and to $OUT_DIR/NAME; end the phase by its status
    local name="$1" rc=0
    shift
    echo "\$ $*"
    "$@" 2>&1 | tee "$OUT_DIR/$name" || rc=$?
    if [ "$rc" -eq 0 ]; then
        phase_end ok
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        phase_end "FAILED: timed out"
    else
        phase_end "FAILED: exit status $rc"
    fi
}

check_flags() {  # FILE FLAG...: FILE's argparse declares each FLAG the GPU run passes (a dry run's check)
    "$PY" - "$@" <<'EOF'
import ast
import sys

path, *flags = sys.argv[1:]
tree = ast.parse(open(path).read())
declared = {arg.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "add_argument"
            for arg in node.args if isinstance(arg, ast.Constant)}
missing = [flag for flag in flags if flag not in declared]
if missing:
    sys.exit(f"{path} has no {', '.join(missing)} option, which tools/cuda_check.sh passes it")
print(f"{path} takes {' '.join(flags)}")
EOF
}

install_phase() {
    phase_start install
    if [ "$DRY_RUN" = 1 ] || [ "$SKIP_INSTALL" = 1 ]; then
        [ -x "$PY" ] || { echo "cuda_check.sh: no $PY: run without --skip-install/--dry-run, or bash tools/setup_env.sh"; exit 1; }
        phase_end "skipped ($([ "$DRY_RUN" = 1 ] && echo "dry run" || echo "--skip-install"); using $PY)"
        return
    fi
    bash tools/setup_env.sh || { phase_end "FAILED: tools/setup_env.sh exit status $?"; summary; exit 1; }
    # pytest-timeout: a hanging test fails alone instead of eating the whole run's time.
    "$PY" -m pip install --quiet --disable-pip-version-check pytest-timeout \
        || echo "warning: pytest-timeout did not install: only the whole test run has a time limit"
    # cupy: DeepSpeed's 1-bit optimizers import it for their compressed allreduce; not in .[all] (it needs CUDA).
    local major
    major="$("$PY" -c 'import torch; print((torch.version.cuda or "").split(".")[0])')"
    if [ -n "$major" ]; then
        "$PY" -m pip install --quiet --disable-pip-version-check "cupy-cuda${major}x" \
            || echo "warning: cupy-cuda${major}x did not install: the 1-bit optimizer tests will skip"
    fi
    phase_end ok
}

device_phase() {
    phase_start device
    if command -v nvidia-smi > /dev/null; then nvidia-smi || true; else echo "nvidia-smi: not found"; fi
    if command -v nvcc > /dev/null; then
        nvcc --version | tail -n 2
    else
        echo "nvcc: not found (DeepSpeed's FusedLamb/FusedLion JIT-compile CUDA kernels with it; their tests fail)"
    fi
    local rc=0
    "$PY" - <<'EOF' || rc=$?
import sys

import torch

print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if not torch.cuda.is_available():
    print("torch.cuda.is_available() is False")
    sys.exit(3)
for i in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {props.name}, compute capability {props.major}.{props.minor}, "
          f"{props.total_memory / 2**30:.0f} GiB; bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF
    if [ "$rc" -eq 0 ]; then
        phase_end ok
    elif [ "$DRY_RUN" = 1 ]; then
        phase_end "dry run: no CUDA device, going on"
    else
        phase_end "FAILED: no usable CUDA device"
        echo "cuda_check.sh: torch.cuda.is_available() is False here (no GPU or driver, or a CPU-only torch build);"
        echo "nothing was tested. Run it on a GPU machine, or with --dry-run to check the script itself."
        return 1
    fi
}

tests_phase() {
    phase_start tests
    local cmd=(timeout --kill-after=15 "$TEST_TIMEOUT" "$PY" -m pytest -q -m cuda -p no:cacheprovider -rs)
    if [ "$DRY_RUN" = 1 ]; then
        cmd+=(--collect-only)
    elif "$PY" -c "import pytest_timeout" 2> /dev/null; then
        cmd+=(--timeout="$PER_TEST_TIMEOUT")
    fi
    run_phase_command tests "${cmd[@]}" "${TEST_PATHS[@]}"
}

benchmark() {  # NAME FILE GPU-FLAGS... -- CPU-FLAGS...: time FILE on the GPU (a dry run checks its flags)
    local name="$1" file="$2"
    shift 2
    local gpu=() cpu=()
    while [ "$1" != "--" ]; do gpu+=("$1"); shift; done
    shift
    cpu=("$@")
    phase_start "$name"
    if [ "$DRY_RUN" != 1 ]; then
        run_phase_command "$name" timeout --kill-after=15 "$BENCH_TIMEOUT" "$PY" "$file" "${gpu[@]}"
    elif [ "${CUDA_CHECK_DRY_BENCH:-0}" = 1 ]; then
        run_phase_command "$name" timeout --kill-after=15 "$BENCH_TIMEOUT" "$PY" "$file" "${cpu[@]}"
    else
        local flags=()
        for arg in "${gpu[@]}"; do [[ "$arg" == --* ]] && flags+=("$arg"); done
        echo "dry run: would run $PY $file ${gpu[*]}"
        if check_flags "$file" "${flags[@]}"; then phase_end "dry run: options checked"; else phase_end "FAILED: options"; fi
    fi
}

summary() {
    echo
    echo "=== summary ($(date '+%Y-%m-%d %H:%M:%S'), ${HOSTNAME:-?}; total ${SECONDS}s)"
    printf '%s\n' "${SUMMARY[@]}"
    local line
    line="$(grep -E '[0-9]+ (passed|failed|skipped|error|errors|tests? collected|deselected)' "$OUT_DIR/tests" 2>/dev/null \
            | tail -n 1 || true)"
    echo "  tests: ${line:-no pytest summary line}"
    for name in detector_speed optimizer_step; do
        [ -s "$OUT_DIR/$name" ] || continue
        grep -E 'visdet / torchvision =|visdet vs bound:|mmengine / visdet:' "$OUT_DIR/$name" | sed "s/^ */  $name: /" || true
    done
    if [ "${#FAILED[@]}" -gt 0 ]; then
        echo "  FAILED: ${FAILED[*]}"
    else
        echo "  every phase passed"
    fi
    echo "log: $LOG"
}

main() {
    echo "tools/cuda_check.sh $(date '+%Y-%m-%d %H:%M:%S') on ${HOSTNAME:-?}; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    [ "$DRY_RUN" = 1 ] && echo "dry run: install skipped, tests collected only, benchmarks' options checked"
    install_phase
    if ! device_phase; then
        summary
        return 1
    fi
    tests_phase
    benchmark detector_speed benchmarks/detector_speed.py --device cuda --iters 10 -- \
        --device cpu --iters 1 --warmup 0 --no-profile
    benchmark optimizer_step benchmarks/optimizer_step.py --device cuda -- --device cpu --steps 1
    summary
    [ "${#FAILED[@]}" -eq 0 ]
}

main 2>&1 | tee "$LOG"  # set -e and pipefail: the script exits with main's status
