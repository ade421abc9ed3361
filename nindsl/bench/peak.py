"""The machine's float32 peak, measured: a loop of independent fused multiply-adds held in
vector registers on every core, which nothing but the FMA units' rate limits.

It is the best of a few runs (a noisy neighbour can only slow a run down), built for the
target and run on this machine: the target must be this machine's (``"host"``).
"""

from __future__ import annotations

import time

import numpy as np

CHAINS = 10  # independent accumulators per core: more than the multiply-add latency × units
STEPS = 400_000  # per run: a few milliseconds


def _best_seconds(function, args, runs: int = 5) -> float:
    function(*args)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - start)
    return best


def fp32_peak(target, cores: int) -> float:
    """GFLOP/s of float32 fused multiply-adds on ``cores`` cores."""
    import tvm
    from tvm.script import tirx as T
    from tvm.target import codegen

    from ..tvm.compat import tvmscript_frames

    lanes = 16 if codegen.llvm_cpu_has_features("avx512f", target) else 8
    with tvmscript_frames():
        @T.prim_func(s_tir=True)
        def loop(a: T.Buffer((cores, CHAINS, lanes), "float32"), out: T.Buffer((cores, CHAINS, lanes), "float32")):
            for p in T.parallel(cores):
                acc = T.sblock_alloc_buffer((CHAINS, lanes), "float32", scope="local")
                for c in T.unroll(CHAINS):
                    for lane in T.vectorized(lanes):
                        acc[c, lane] = a[p, c, lane]
                for _ in range(STEPS):
                    for c in T.unroll(CHAINS):
                        for lane in T.vectorized(lanes):
                            acc[c, lane] = acc[c, lane] * T.float32(0.999) + T.float32(0.001)
                for c in T.unroll(CHAINS):
                    for lane in T.vectorized(lanes):
                        out[p, c, lane] = acc[c, lane]
    function = tvm.compile(tvm.IRModule({"main": loop}), target=target)["main"]
    args = [tvm.runtime.tensor(np.ones((cores, CHAINS, lanes), np.float32)),
            tvm.runtime.empty((cores, CHAINS, lanes), "float32")]
    return 2 * cores * CHAINS * lanes * STEPS / _best_seconds(function, args) / 1e9
