#!/usr/bin/env bash
# The GPU run, in stages that fit a GPU slot (bench/README.md, "The GPU run"). From any folder:
#   bash bench/gpu_run.sh --dry-run     # the stages, their budgets and commands, the total
#   bash bench/gpu_run.sh               # the first command: at most 9 minutes, kill grace included
#   bash bench/gpu_run.sh --plan more   # a second command: racecheck and the quick benchmark
#   bash bench/gpu_run.sh --only figures-vgg,memcheck-cupy    # a rerun of some stages
# Each stage runs under coreutils `timeout` (at most 5 minutes each): a 30-second preflight,
# the figures in priority order (VGG 3x3 N=32, the lesson training step, ResNet 3x3 and 1x1,
# pooling; PyTorch cuDNN in TF32 and FP32 beside them), the GPU tests, the sanitizers. Results go
# to $OUT (default bench/out/gpu) as they are measured: rows.jsonl (one row per line, flushed per
# row), stages.jsonl, preflight.json, summary.md and the logs env.txt, figures.log, tests.txt,
# sanitizer.txt. The stages are defined in bench/gpu_stages.py.
set -u
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m bench.gpu_stages run --out "${OUT:-$(pwd)/bench/out/gpu}" "$@"
