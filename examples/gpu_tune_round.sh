#!/usr/bin/env bash
# One round of tuning for a GPU this machine does not have (issue 30), in three steps:
#
#   here:   bash examples/gpu_tune_round.sh kit [SPEC] [BATCH] [PRECISION]    # writes kits/round
#   there:  python3 kits/round/measure && cp kits/round/results.json "$OUT"/   # on the GPU machine (carry kits/round)
#   here:   bash examples/gpu_tune_round.sh record RESULTS.json [SPEC] [BATCH] # into tuning/, then builds
#
# Defaults: specs/nin_cifar10.nin, batch 64, fp16 (tensor cores), the h200 profile (sm_90, also
# right for an H100). The kit carries TVM's runtime with tvm_ffi's wheel for the GPU machine's Python
# (PYTHON_VERSION, default 3.12) and stays under the 48 MiB a kit may hold. Each round starts from
# the records of the rounds before (tuning/), so run it again for more. After `record`, the build in
# runs/tuned-h200 is what examples/gpu_check.sh can carry and time against PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?kit or record}
case $step in
  kit)
    spec=${2:-specs/nin_cifar10.nin} batch=${3:-64} precision=${4:-fp16}
    wheels=$(mktemp -d)
    trap 'rm -rf "$wheels"' EXIT
    .venv/bin/pip download -q "apache-tvm-ffi==$(.venv/bin/python -c 'import tvm_ffi; print(tvm_ffi.__version__)')" \
      --python-version "${PYTHON_VERSION:-3.12}" --only-binary=:all: --no-deps -d "$wheels"
    .venv/bin/nindsl tune "$spec" --target h200 --batch "$batch" --precision "$precision" --db tuning \
      --kit kits/round --candidates "${CANDIDATES:-16}" --python-wheel "$wheels"/*.whl
    du -sh kits/round ;;
  record)
    results=${2:?the results.json the GPU machine wrote} spec=${3:-specs/nin_cifar10.nin} batch=${4:-64}
    [ "$results" -ef kits/round/results.json ] || cp "$results" kits/round/results.json
    .venv/bin/nindsl tune "$spec" --target h200 --results kits/round/results.json --db tuning
    precision=$(.venv/bin/python -c 'import json; print(json.load(open("kits/round/kit.json"))["precision"])')
    .venv/bin/nindsl compile "$spec" --target h200 --batch "$batch" --precision "$precision" --db tuning \
      --calibrate random -o runs/tuned-h200 ;;
  *) echo "usage: $0 kit [SPEC] [BATCH] [PRECISION] | record RESULTS.json [SPEC] [BATCH]" >&2; exit 2 ;;
esac
