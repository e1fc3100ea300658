#!/usr/bin/env bash
# Device check for a GPU machine with TensorRT (see benchmarks/device_check.py for what it runs).
# Builds FP16 and FP32 engines of a small test model, checks their scores against onnxruntime FP32,
# runs the agent's TensorRT backend on 1,000 frames and prints ONE JSON line on stdout:
# batch1_p50_ms / batch1_p99_ms, batch8_fps / batch32_fps (pipelined), max_deviation (and more).
# Without TensorRT but with CUDA it still runs the cuda-python buffer/stream checks and says what is missing.
#   benchmarks/device_check.sh [--model M.onnx] [--samples DIR] [--frames 1000] [--out DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
else
  echo "device_check: nvidia-smi not found" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/device_check.py "$@"
