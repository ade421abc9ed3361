#!/usr/bin/env bash
# The GPU check, in two halves, for a GPU machine that has no network and takes at most 64 MiB:
#
#   here:   bash examples/gpu_check.sh [OUT]          # builds, bundles; prints the size of OUT
#   there:  python3 OUT/gpu_check.py OUT              # report: OUT/gpu_report.json
#
# Here: nin_imagenet and nin_cifar10 are compiled for the h200 profile (sm_90 machine code, any
# batch size), bundled with TVM's runtime (not its compiler) by `nindsl bundle`, with tvm_ffi's
# wheel for the GPU machine's Python (PYTHON_VERSION, default 3.12) and each network's PyTorch
# twin. There: the artifacts run at batch 1 and 64 against the twin on CUDA and ONNX Runtime (its
# CUDA provider where installed), with latency, max |Δ| and top-1 agreement, in a process where
# libtvm_compiler.so is never loaded (the report says so from /proc/self/maps).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu_bundle}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for spec in nin_imagenet nin_cifar10; do
  .venv/bin/nindsl compile "specs/$spec.nin" --target h200 -o "$work/$spec"
done
.venv/bin/pip download -q "apache-tvm-ffi==$(.venv/bin/python -c 'import tvm_ffi; print(tvm_ffi.__version__)')" \
  --python-version "${PYTHON_VERSION:-3.12}" --only-binary=:all: --no-deps -d "$work/wheels"
.venv/bin/nindsl bundle "$work/nin_imagenet" "$work/nin_cifar10" -o "$out" --python-wheel "$work"/wheels/*.whl
for spec in nin_imagenet nin_cifar10; do
  .venv/bin/nindsl compile "specs/$spec.nin" --target torch -o "$out/artifacts/$spec/twin.py"
done
cp examples/gpu_check.py "$out/"
du -sh "$out"
