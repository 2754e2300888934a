#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU, from the repository root, with the
# project's dependencies installed (numba-cuda, CuPy, PyTorch with CUDA, pytest-benchmark).
# Everything goes to $OUT (default ./gpu-out): env.txt, tests.txt, sanitizer.txt,
# benchmark.json and report.md; bench/RESULTS-gpu.md is written from them afterwards with
#   python -m fastconv.bench.report gpu-out/benchmark.json --out gpu-out --results-md bench/RESULTS-gpu.md
# It fits in 8 minutes: each step has its own time limit, and a step that fails or runs out of
# time is recorded and the next one runs.
set -u
OUT="${OUT:-$(pwd)/gpu-out}"
mkdir -p "$OUT"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
export FASTCONV_CACHE_DIR="$OUT/cache"
PY="${PYTHON:-python3}"
BACKENDS="${GPU_BACKENDS:-numba-cuda cupy}"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log its status
    local name="$1" limit="$2"
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "step $name: exit $rc in $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
}

{
    date -u
    nvidia-smi || true
    "$PY" -c "import sys, numpy, numba; print(sys.version); print('numpy', numpy.__version__, 'numba', numba.__version__)"
    "$PY" -c "import cupy; print('cupy', cupy.__version__)" || true
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" || true
    command -v compute-sanitizer || echo "compute-sanitizer: not found"
    "$PY" -m fastconv info
} >"$OUT/env.txt" 2>&1

# 1. the GPU backends through the shared test suite, simulator off (numba-cuda) and emulation
#    off (cupy): every test taking the backend fixture, plus the device tests
for b in $BACKENDS; do
    step "tests-$b" 150 "$PY" -m pytest tests -q -p no:cacheprovider -x -k "$b or device" \
        >>"$OUT/tests.txt" 2>&1
done

# 2. memcheck and racecheck on a run that launches every kernel once on odd shapes
if command -v compute-sanitizer >/dev/null; then
    for b in $BACKENDS; do
        for tool in memcheck racecheck; do
            step "sanitizer-$tool-$b" 60 compute-sanitizer --tool "$tool" --error-exitcode 9 \
                "$PY" -m tests.kernel_smoke "$b" >>"$OUT/sanitizer.txt" 2>&1
        done
    done
else
    echo "compute-sanitizer not found" >"$OUT/sanitizer.txt"
fi

# 3. the benchmark's GPU rows: every bench layer, pooling, the lesson network's training and
#    inference, fastconv's GPU backends against PyTorch + cuDNN in the same run
backend_args=()
for b in $BACKENDS; do backend_args+=(--fc-backend "$b"); done
step bench 210 "$PY" -m pytest bench -q -p no:cacheprovider --quick "${backend_args[@]}" \
    -k "cuda or cupy" --benchmark-json="$OUT/benchmark.json" --report-dir "$OUT" \
    >"$OUT/bench.txt" 2>&1
cat "$OUT/steps.txt"
