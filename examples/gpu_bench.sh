#!/usr/bin/env bash
# nin_imagenet at batch 64 on an NVIDIA GPU, in one `nindsl bench` run: ONNX Runtime's CUDA
# provider, the PyTorch twin on CUDA (TF32 off, and in float16), TVM with DLight's default
# schedules (nindsl's pooling rule in front), TVM in fp16 on tensor cores, and TVM
# tuned with MetaSchedule for at most MINUTES minutes (default 5), shared among the tuning tasks
# by their trials, so that the whole script stays under ten minutes once the packages are in.
# (Measured on an H200, 16 cores: a CUDA tuning round of 16 candidates took about 1.5 minutes.)
# Needs the GPU builds of onnxruntime and torch (the default torch wheel on Linux is one).
#   bash examples/gpu_bench.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-5}"
python3 -m venv .venv && .venv/bin/pip install -q -e '.[all]'
.venv/bin/pip uninstall -q -y onnxruntime && .venv/bin/pip install -q onnxruntime-gpu
.venv/bin/python -c "import tvm; assert tvm.cuda(0).exist, 'no CUDA device visible to TVM'"
mkdir -p runs/gpu
timeout 540 .venv/bin/nindsl bench specs/nin_imagenet.nin --target h100 --batch 64 --rounds 20 \
  --engines onnxruntime,torch,torch-fp16,tvm-untuned,tvm-fp16,tvm-tuned \
  --max-minutes "$minutes" --db runs/gpu/tuning --json runs/gpu/bench.json --plot runs/gpu/bench.png
