"""Benchmark: parse + check time for nin_imagenet and generated specs of growing size.

    python examples/bench_check.py

Prints the median of several runs, per spec and per layer. Cost should grow linearly
with the number of layers (the per-layer column stays flat).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import nindsl
from nindsl.language.parser import grammar, parse

SPECS = Path(__file__).resolve().parent.parent / "specs"


def generated(layers: int) -> str:
    """A valid spec of `layers` statements: 1×1 mlpconvs, ReLUs and 3×3 stride-1 pools."""
    body = []
    for index in range(layers - 1):
        body.append(["mlpconv([16, 16], kernel = 1)", "relu()",
                     "maxpool(3, stride = 1, pad = 1, round = ceil)"][index % 3])
    body.append("global_avgpool()")
    lines = "\n".join(f"    l{i}: {stmt}" for i, stmt in enumerate(body))
    return f"network big() {{\n    input x: f32[N, 16, 32, 32]\n{lines}\n}}\n"


def timed(text: str, path: str, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        nindsl.check(parse(text, path))
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    grammar()  # start-up: building the LALR tables is paid once per process
    imagenet = (SPECS / "nin_imagenet.nin").read_text()
    cases = [("nin_imagenet", imagenet, len(nindsl.load(SPECS / "nin_imagenet.nin").layers))]
    cases += [(f"generated-{n}", generated(n), n) for n in (10, 100, 1_000, 10_000)]
    print(f"{'spec':<16}{'layers':>8}{'ms/spec':>12}{'µs/layer':>12}")
    for name, text, layers in cases:
        seconds = timed(text, name, repeats=21 if layers <= 1000 else 5)
        print(f"{name:<16}{layers:>8}{seconds * 1e3:>12.2f}{seconds * 1e6 / layers:>12.1f}")


if __name__ == "__main__":
    main()
