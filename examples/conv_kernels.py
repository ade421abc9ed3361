"""One convolution of a spec, kernel by kernel: as an untuned build compiles it in NCHW (the
template before issue 33), channels-last direct, and in Winograd form where the rule takes it;
each kernel compiled alone (weights packed as the build packs them), timed in interleaved
rounds on random data, medians. A markdown table on stdout.

    python examples/conv_kernels.py specs/nin_cifar10.nin --conv 3 --batch 1 --rounds 7
    TVM_NUM_THREADS=1 python examples/conv_kernels.py specs/nin_cifar10.nin --conv 3 --batch 64

``--conv N``: the N-th convolution of the network, from 0 (nin_cifar10's conv2.0 is 3).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def kernels(network, profile, batch: int, channels_last: bool, winograd: bool):
    """The convolution kernels of an untuned build, in call order, and the target."""
    import tvm

    from nindsl.tvm import winograd as wino
    from nindsl.tvm.frontend import apply_database, prepare
    from nindsl.tvm.profiles import resolved_target
    from nindsl.tvm.untuned import default_database

    target = tvm.target.Target(resolved_target(profile))
    module = prepare(network, profile, batch, channels_last=channels_last,
                     legalize=wino.legalize(wino.choose) if winograd else None)
    module = apply_database(module, default_database(module, target), profile, target)
    calls = []
    tvm.relax.analysis.post_order_visit(module["main"].body, lambda e: calls.append(e.args[0].name_hint) if (
        isinstance(e, tvm.relax.Call) and getattr(e.op, "name", "") == "relax.call_tir") else None)
    return [(name, module[name]) for name in calls if "conv2d" in name], target


def compiled(func, target):
    import tvm

    library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.random([int(d) for d in p.ty.shape]).astype(str(p.ty.dtype))) for p in func.params]
    return library["main"], args


def main() -> None:
    import nindsl
    from nindsl.tvm.profiles import load_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--conv", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    network, profile = nindsl.load(args.spec), load_profile("llvm")
    o, c, kh, kw = [w.shape for w in network.weights if w.role == "weight" and len(w.shape) == 4][args.conv]
    variants = {}
    for label, channels_last, winograd in (("NCHW template", False, False), ("NHWC direct", True, False),
                                           ("Winograd", True, True)):
        found, target = kernels(network, profile, args.batch, channels_last, winograd)
        name, func = found[args.conv]
        if label == "Winograd" and "winograd" not in name:
            continue  # the rule keeps this layer direct
        variants[label] = (name, *compiled(func, target))
    times = {label: [] for label in variants}
    for _ in range(args.rounds):
        for label, (_, function, arguments) in variants.items():
            function(*arguments)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.1:
                function(*arguments)
                calls += 1
            times[label].append((time.perf_counter() - start) / calls * 1e3)
    first = np.array(next(iter(times.values())))
    threads = os.environ.get("TVM_NUM_THREADS", "all")
    print("| kernel | batch | threads | median ms | GFLOP/s as direct | × NCHW template | TVM function |")
    print("|---|---|---|---|---|---|---|")
    for label, (name, _, _) in variants.items():
        ms = float(np.median(times[label]))
        _, h, w, _ = variants["NHWC direct"][2][-1].shape  # the output, NHWC
        flops = 2 * args.batch * h * w * o * c * kh * kw
        print(f"| {label} | {args.batch} | {threads} | {ms:.3f} | {flops / ms / 1e6:.0f} | "
              f"{float(np.median(np.array(times[label]) / first)):.2f} | `{name}` |")


if __name__ == "__main__":
    main()
