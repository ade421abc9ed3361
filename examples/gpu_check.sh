#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU (about 5 minutes): CUDA builds of every shipped
# spec run on the GPU and equal ONNX Runtime, through the tests marked `gpu`.
#   bash examples/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'
.venv/bin/python -c "import tvm; assert tvm.cuda(0).exist, 'no CUDA device visible to TVM'"
.venv/bin/python -m pytest -q -m gpu tests/test_tvm.py
for spec in specs/nin_*.nin; do
  .venv/bin/nindsl compile "$spec" --target h100 -o "runs/gpu/$(basename "$spec" .nin)"
done
