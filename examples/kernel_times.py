"""Where an untuned CPU build spends its time: the whole build's median, then each kernel's
median time per call, in call order, timed by the Relax VM's instrument hook on this machine.
A markdown table on stdout. (The hook costs about a microsecond per call, so at batch 1 the
kernels' sum is above the whole build's time.)

    python examples/kernel_times.py specs/nin_cifar10.nin --batch 64
    python examples/kernel_times.py specs/nin_digits.nin --batch 1 --target '{"kind": "llvm", "mcpu": "haswell"}'
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def main() -> None:
    import tvm
    from tvm.runtime.vm import VirtualMachine

    import nindsl
    from nindsl.tvm.build import build
    from nindsl.tvm.profiles import load_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--batch", type=_positive, default=1)
    parser.add_argument("--target", default="llvm")
    parser.add_argument("--calls", type=_positive, help="timed calls (default: 200 at batch 1, else 10)")
    args = parser.parse_args()
    try:
        network = nindsl.load(args.spec)
        built = build(network, load_profile(args.target), batch=args.batch)
    except nindsl.NindslError as error:  # a missing or wrong spec, an unknown target: said, not a traceback
        raise SystemExit(f"{parser.prog}: {error}") from None
    device = tvm.cpu(0)
    weights = [tvm.runtime.tensor(built.weights[name], device) for name in built.order]
    vm = VirtualMachine(built.executable, device)
    if built.packs:
        weights = list(vm["main_transform_params"](weights))
    x = np.random.default_rng(0).standard_normal((args.batch, *network.input.shape[1:])).astype(np.float32)
    x = tvm.runtime.tensor(x, device)
    calls = args.calls or (200 if args.batch == 1 else 10)
    for _ in range(min(calls, 20)):  # warm up
        vm["main"](x, *weights)
    whole = []
    for _ in range(calls):
        start = time.perf_counter()
        vm["main"](x, *weights)
        whole.append(time.perf_counter() - start)

    times, started, order = defaultdict(list), {}, []

    def instrument(func, name, before, ret, *call_args):
        if before:
            started[name] = time.perf_counter()
        else:
            times[name].append(time.perf_counter() - started[name])
            if name not in order:
                order.append(name)
        return 0

    vm.set_instrument(instrument)
    for _ in range(calls):
        vm["main"](x, *weights)
    print(f"{network.name}, batch {args.batch}, target {args.target}: whole build {statistics.median(whole) * 1e3:.3f} ms"
          f" (median of {calls} calls)\n")
    print("| kernel | calls per run | median µs per call |")
    print("|---|---|---|")
    for name in order:
        if name.startswith("vm.builtin."):
            continue  # the VM's own bookkeeping: allocations, shape checks
        print(f"| {name} | {len(times[name]) // calls} | {statistics.median(times[name]) * 1e6:,.1f} |")


if __name__ == "__main__":
    main()
