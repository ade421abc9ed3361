#!/usr/bin/env bash
# The narrow-precision check, for a machine whose CPU has AVX-512 VNNI, AVX512-BF16 or AMX
# (issue 18's bars have never been measured on one):
#
#   bash examples/narrow_check.sh [OUT]        # OUT/report.txt, OUT/bench.json
#
# It records the CPU, the instructions nindsl picks for it, whether the AMX tile kernels compute
# what their emulation does here (run directly, so that a refused instruction or a wrong result
# shows instead of the quiet fall back to VNNI / AVX512-BF16 that builds take), the int8 and bf16
# tests (which run the real kernels on such a CPU), and the bench of issue 18. Run it on a quiet
# machine: nothing else running.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/narrow_check}"
mkdir -p "$out"
report="$out/report.txt"
{
  date -u
  lscpu | grep -E "^Model name|^Flags"
  TVM_NUM_THREADS=1 .venv/bin/python - <<'EOF'
import subprocess
import sys

import tvm

from nindsl.tvm.narrow import bf16, int8
from nindsl.tvm.narrow.kernels.bf16 import bf16_isa
from nindsl.tvm.narrow.kernels.int8 import int8_isa
from nindsl.tvm.profiles import load_profile, resolved_target

profile = load_profile("llvm")
target = tvm.target.Target(resolved_target(profile))
print("host target:", target)
for name, module, best in (("int8", int8, int8_isa), ("bf16", bf16, bf16_isa)):
    try:
        print(f"{name} instructions a build takes here:", module.isa_of(profile)[1].name)
    except Exception as error:  # noqa: BLE001 - a CPU without them says why
        print(f"{name}: {error}")
    if not getattr(best(target), "tiles", False):
        print(f"{name}: this CPU has no AMX for it")
        continue
    probe = (f"from nindsl.tvm.narrow.kernels.amx_probe import _probe; "
             f"raise SystemExit(_probe({name!r}, {str(target)!r}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    print(f"{name} AMX tile probe: exit {done.returncode} (0: tiles compute what the emulation does; "
          f"1: they differ; negative: killed by that signal)")
    if done.returncode not in (0, 1):
        print(done.stderr[-2000:])
EOF
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_int8.py tests/test_bf16.py 2>&1 | tail -15
} 2>&1 | tee "$report"
.venv/bin/nindsl bench specs/nin_cifar10.nin --batch 1,64 \
  --engines onnxruntime,onnxruntime-int8,openvino,openvino-fp32,openvino-int8,tvm-int8,tvm-bf16 --rounds 20 \
  --json "$out/bench.json" 2>&1 | tee -a "$report"
