#!/usr/bin/env bash
# The GPU check, in two halves, for a GPU machine that has no network and takes at most 64 MiB:
#
#   here:   bash examples/gpu_check.sh [OUT]          # builds, bundles; prints the size of OUT
#   there:  python3 OUT/gpu_check.py OUT              # report: OUT/gpu_report.json
#
# Here: nin_cifar10 (float32, and fp16 for any batch size and for batch 64) and nin_imagenet (fp16)
# are compiled for the h200 profile (sm_90 machine code), bundled with TVM's runtime (not its
# compiler) by `nindsl bundle`, with tvm_ffi's wheel for the GPU machine's Python (PYTHON_VERSION,
# default 3.12) and each network's PyTorch twin. (nin_imagenet in float32 as well would take the
# bundle past the 64 MiB a GPU check may carry.) There: the artifacts run at batch 1 and 64 against
# the twin on CUDA (float32, and float16 for fp16 artifacts) and ONNX Runtime (its CUDA provider
# where installed), with latency (input from and output to the host, and on the GPU alone), max
# |Δ| and top-1 agreement, in a process where libtvm_compiler.so is never loaded (the report says
# so from /proc/self/maps). TUNED=runs/tuned-h200 adds a build tuned through a kit
# (examples/gpu_tune_round.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu_bundle}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build() {  # NAME SPEC [compile options...]
  local name=$1 spec=$2
  shift 2
  .venv/bin/nindsl compile "specs/$spec.nin" --target h200 -o "$work/$name" "$@"
}
build nin_cifar10 nin_cifar10
build nin_cifar10-fp16 nin_cifar10 --precision fp16 --calibrate random
build nin_cifar10-fp16-b64 nin_cifar10 --precision fp16 --calibrate random --batch 64
# the same without CUDA graphs (a profile that turns them off), to measure what the graphs give
sed 's/^untuned = "dlight"/untuned = "dlight"\ncuda_graph = false/' backends/h200.toml > "$work/h200-nograph.toml"
.venv/bin/nindsl compile specs/nin_cifar10.nin --target "$work/h200-nograph.toml" -o "$work/nin_cifar10-fp16-b64-nograph" \
  --precision fp16 --calibrate random --batch 64
build nin_imagenet-fp16 nin_imagenet --precision fp16 --calibrate random
# a build tuned through a kit (examples/gpu_tune_round.sh record writes runs/tuned-h200), timed beside the others
if [ -n "${TUNED:-}" ]; then
  cp -r "$TUNED" "$work/nin_$(basename "$TUNED")"
fi
.venv/bin/pip download -q "apache-tvm-ffi==$(.venv/bin/python -c 'import tvm_ffi; print(tvm_ffi.__version__)')" \
  --python-version "${PYTHON_VERSION:-3.12}" --only-binary=:all: --no-deps -d "$work/wheels"
.venv/bin/nindsl bundle "$work"/nin_* -o "$out" --python-wheel "$work"/wheels/*.whl
for folder in "$out"/artifacts/*/; do
  spec=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["network"])' "$folder/manifest.json")
  .venv/bin/nindsl compile "specs/$spec.nin" --target torch -o "$folder/twin.py"
done
cp examples/gpu_check.py "$out/"
du -sh "$out"
