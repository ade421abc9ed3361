"""`nindsl bench`: every engine on the same inputs, in one run, against the machine's peak.

Every engine of every batch size is prepared first (tuning included), and only then timed,
so that no engine is timed while a tuning run's workers wind down (right after tuning in the
same process, ONNX Runtime and TVM both ran ~1.3× slower for a few seconds, measured here).
Engines are timed in interleaved rounds so that a noisy neighbour slows them alike: each
round gives every engine a few untimed calls and then a block of timed ones. Calls are not
interleaved one by one because thread pools spin after a call (ONNX Runtime's and TVM's
do): measured here on nin_cifar10, one-by-one interleaving made ORT 1.3× and TVM 1.6×
slower than either alone; blocks of twenty after five untimed calls came closest to each
engine alone; a sleep between engines made ORT 3× slower (an idle virtual CPU wakes
slowly). Blocks are sized by time, not count: a block lasts about ``BLOCK_SECONDS`` (at
most ``BLOCK`` calls, at least one), the untimed calls about ``WARM_SECONDS``, and an engine
that has spent ``ENGINE_SECONDS`` in timed calls sits out the remaining rounds once it has
``MIN_SAMPLES`` (untuned TVM takes 25 s per call at batch 64). The report gives the median
and the 10th–90th percentile spread, and each engine's ratio to ONNX Runtime with a 95 %
interval from a bootstrap over the rounds (a round is the unit that shares a moment's noise).
That interval covers this run's noise only: a new process can land differently (ONNX Runtime
alone on nin_cifar10 at batch 1 ran at 3.0 ms in some processes and 3.7 ms in others here).
Achieved GFLOP/s counts 2 FLOPs per multiply-add of the spec; the peak is a large float32
matrix multiply measured on the spot.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import ir
from .diagnostics import NindslError

ENGINES = ("onnxruntime", "torch", "tvm-untuned", "tvm-tuned")
BLOCK, WARM = 20, 5  # at most this many timed and untimed calls per engine per round
BLOCK_SECONDS, WARM_SECONDS = 0.06, 0.015  # about this long
ENGINE_SECONDS, MIN_SAMPLES = 60.0, 3  # an engine this slow is timed fewer rounds


@dataclass
class Record:
    engine: str
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    images_per_s: float
    gflops: float
    peak_fraction: float
    max_abs_diff: float | None  # against ONNX Runtime's outputs; None when it did not run
    note: str = ""
    vs_onnxruntime: float | None = None  # median_ms over ONNX Runtime's, with a 95 % interval
    vs_onnxruntime_low: float | None = None
    vs_onnxruntime_high: float | None = None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _matmul_seconds(multiply: Callable[[], object], repeats: int) -> float:
    multiply()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        multiply()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """GFLOP/s of a large float32 matrix multiply on this machine, now: the best of the
    BLAS libraries at hand (numpy's, PyTorch's, ONNX Runtime's MLAS), so that "of peak"
    is measured against the fastest multiply this machine actually runs. On a GPU:
    PyTorch's cuBLAS, without TF32."""
    if device == "cuda":
        return _cuda_matmul_peak(4 * size, repeats)
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    candidates: list[Callable[[], object]] = [lambda: a @ b]
    try:
        import torch

        torch.set_num_threads(cores())
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        candidates.append(lambda: ta @ tb)
    except ImportError:
        pass
    try:
        candidates.append(_onnxruntime_matmul(a, b))
    except ImportError:
        pass
    return max(2 * size**3 / _matmul_seconds(multiply, repeats) / 1e9 for multiply in candidates)


def _cuda_matmul_peak(size: int, repeats: int) -> float:
    import torch

    if not torch.cuda.is_available():
        raise NindslError.one("E0504", "this PyTorch sees no CUDA GPU", None,
                              "install a CUDA build of torch for GPU benchmarks, or leave out --target cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = (torch.randn(size, size, device="cuda") for _ in range(2))

    def multiply():
        a @ b
        torch.cuda.synchronize()

    return 2 * size**3 / _matmul_seconds(multiply, repeats) / 1e9


def _onnxruntime_matmul(a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = cores()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a, "b": b})


def _onnxruntime(network: ir.Network, weights, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    from .lower_onnx import serialize, to_onnx

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise NindslError.one("E0504", f"this ONNX Runtime has no {provider}", None,
                              "install onnxruntime-gpu for GPU benchmarks, or leave out --target cuda")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = cores()
    session = ort.InferenceSession(serialize(to_onnx(network, weights)), options, providers=[provider])
    name = network.input.name
    return lambda x: session.run(None, {name: x})[0]


def _torch(network: ir.Network, weights, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    from .twin import to_torch

    if device == "cuda" and not torch.cuda.is_available():
        raise NindslError.one("E0504", "this PyTorch sees no CUDA GPU", None,
                              "install a CUDA build of torch for GPU benchmarks, or leave out --target cuda")
    torch.set_num_threads(cores())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32
    module = to_torch(network, weights=weights).eval().to(device)

    def run(x: np.ndarray) -> np.ndarray:  # host to host, as for the other engines
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(device)).cpu().numpy()
    return run


def _tvm(network: ir.Network, weights, batch: int, profile, tuned: bool, trials, db, progress: bool, runner,
         max_minutes=None):
    import tvm

    from .build_tvm import Runner, build

    device = tvm.cuda(0) if profile.device == "cuda" else tvm.cpu(0)
    if not device.exist:  # before tuning, which would measure on it
        raise NindslError.one("E0504", f"profile `{profile.name}` runs on {profile.device}, and TVM sees no such "
                                       "device here", None, "benchmark a CPU target, e.g. --target llvm")
    module = None
    if tuned:
        from .tune import tune

        module, _ = tune(network, profile, batch=batch, trials=trials, db=db, weights=weights, progress=progress,
                         runner=runner, max_minutes=max_minutes)
    return Runner.from_build(build(network, profile, weights, batch=batch, tuned_module=module), device)


def _once(run: Callable, x: np.ndarray) -> float:
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


def _flat(blocks: list[list[float]]) -> list[float]:
    return [t for block in blocks for t in block]


def _time(runners: dict[str, Callable], x: np.ndarray, rounds: int) -> tuple[dict, dict]:
    """Seconds per call of each engine, one list per interleaved round it ran in (an engine
    that sits out late rounds has fewer), and each engine's largest difference from ONNX
    Runtime's outputs (None without ONNX Runtime)."""
    reference = runners["onnxruntime"](x) if "onnxruntime" in runners else None
    times: dict[str, list[list[float]]] = {engine: [] for engine in runners}
    differences, single = {}, {}
    for engine, run in runners.items():  # warm up, check the numbers, and size the blocks
        out = run(x)
        differences[engine] = float(np.abs(out - reference).max()) if reference is not None else None
        single[engine] = max(_once(run, x), 1e-9)
    for _ in range(rounds):
        for engine, run in runners.items():
            blocks = times[engine]
            if sum(map(len, blocks)) >= MIN_SAMPLES and sum(map(sum, blocks)) > ENGINE_SECONDS:
                continue
            for _ in range(min(WARM, int(WARM_SECONDS / single[engine]))):  # the previous engine's threads settle
                run(x)
            calls = max(1, min(BLOCK, round(BLOCK_SECONDS / single[engine])))
            times[engine].append([_once(run, x) for _ in range(calls)])
    return times, differences


def ratio_interval(engine: list[list[float]], reference: list[list[float]], draws: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """A 95 % interval for median(engine) / median(reference) from a bootstrap that resamples
    rounds, each round's two blocks together (they shared that moment's noise). Only the
    rounds both ran in count."""
    paired = list(zip(engine, reference))
    pick = np.random.default_rng(seed).integers(len(paired), size=(draws, len(paired)))
    ratios = [np.median(_flat([paired[i][0] for i in rounds])) / np.median(_flat([paired[i][1] for i in rounds]))
              for rounds in pick]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def bench(network: ir.Network, batches: list[int], engines: list[str], target: str = "llvm",
          rounds: int = 20, trials: int | None = None, db: str | None = None, seed: int = 0,
          progress: bool = True, runner="local", max_minutes: float | None = None) -> tuple[list[Record], float]:
    """Time each engine at each batch size in ``rounds`` interleaved rounds; returns the
    records and the measured peak."""
    from .weights import initial_weights

    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise NindslError.one("E0504", f"unknown engine `{unknown[0]}`", None, f"engines: {', '.join(ENGINES)}")
    weights = initial_weights(network, seed)
    from .profiles import load_profile

    profile = load_profile(target)  # its device is every engine's: cpu, or cuda for all four
    if any(e.startswith("tvm") for e in engines):
        from .build_tvm import require_tvm

        require_tvm()
    peak = matmul_peak(device=profile.device)
    inputs, prepared = {}, {}
    for batch in batches:  # every engine first, tuning included; then the timing
        inputs[batch] = np.random.default_rng(batch).standard_normal((batch, *network.input.shape[1:])).astype(np.float32)
        runners: dict[str, Callable] = {}
        for engine in engines:
            if progress:
                print(f"preparing {engine} for batch {batch} ...", file=sys.stderr)
            if engine == "onnxruntime":
                runners[engine] = _onnxruntime(network, weights, profile.device)
            elif engine == "torch":
                runners[engine] = _torch(network, weights, profile.device)
            else:
                runners[engine] = _tvm(network, weights, batch, profile, engine == "tvm-tuned", trials, db, progress,
                                       runner, max_minutes)
        prepared[batch] = runners
    records = []
    for batch in batches:
        if progress:
            print(f"timing batch {batch}: {rounds} interleaved rounds ...", file=sys.stderr)
        x, runners = inputs[batch], prepared.pop(batch)
        times, differences = _time(runners, x, rounds)
        flops = 2 * network.total_macs * batch
        medians = {engine: statistics.median(_flat(blocks)) for engine, blocks in times.items()}
        for engine, blocks in times.items():
            samples, median = _flat(blocks), medians[engine]
            deciles = statistics.quantiles(samples, n=10) if len(samples) > 1 else [median] * 9
            record = Record(engine, batch, median * 1e3, deciles[0] * 1e3, deciles[-1] * 1e3, batch / median,
                            flops / median / 1e9, flops / median / 1e9 / peak, differences[engine])
            if engine == "onnxruntime":
                record.vs_onnxruntime = record.vs_onnxruntime_low = record.vs_onnxruntime_high = 1.0
            elif "onnxruntime" in times:
                record.vs_onnxruntime = median / medians["onnxruntime"]
                record.vs_onnxruntime_low, record.vs_onnxruntime_high = ratio_interval(blocks, times["onnxruntime"])
            records.append(record)
    return records, peak


def print_table(records: list[Record], peak: float, network: ir.Network, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False)
    if not console.is_terminal:
        console.width = 132
    table = Table(title=f"{network.name}: {network.total_macs / 1e6:,.1f} M multiply-adds per image; "
                        f"peak {peak:,.0f} GFLOP/s (best float32 matmul here, {cores()} cores)", title_justify="left")
    for column in ("engine", "batch", "median ms", "p10–p90 ms", "images/s", "GFLOP/s", "of peak",
                   "× ORT (95 %)", "max |Δ| vs ORT"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for r in records:
        ratio = "" if r.vs_onnxruntime is None else f"{r.vs_onnxruntime:.2f}" if r.engine == "onnxruntime" else \
            f"{r.vs_onnxruntime:.2f} ({r.vs_onnxruntime_low:.2f}–{r.vs_onnxruntime_high:.2f})"
        table.add_row(r.engine, str(r.batch), f"{r.median_ms:.2f}", f"{r.p10_ms:.2f}–{r.p90_ms:.2f}",
                      f"{r.images_per_s:,.0f}", f"{r.gflops:,.1f}", f"{100 * r.peak_fraction:.0f}%", ratio,
                      "" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}")
    console.print(table)
    for r in records:
        if r.engine == "tvm-tuned" and r.vs_onnxruntime is not None:
            console.print(f"tvm-tuned at batch {r.batch}: {verdict(r)}")


def verdict(r: Record) -> str:
    """What a ratio's interval says about this run."""
    interval = f"{r.vs_onnxruntime:.2f}× ONNX Runtime (95 % interval {r.vs_onnxruntime_low:.2f}–{r.vs_onnxruntime_high:.2f})"
    if r.vs_onnxruntime_high < 1:
        return f"faster in this run: {interval}"
    if r.vs_onnxruntime_low > 1:
        return f"slower in this run: {interval}"
    return f"as fast, within this run's noise: {interval}"


def plot(records: list[Record], path: Path, title: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_write_bytes

    batches = sorted({r.batch for r in records})
    engines = [e for e in ENGINES if any(r.engine == e for r in records)]
    figure, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3.6), squeeze=False)
    for axis, batch in zip(axes[0], batches):
        values = [next((r.median_ms for r in records if r.engine == e and r.batch == batch), 0) for e in engines]
        bars = axis.bar(engines, values, color=["#4c72b0", "#dd8452", "#c44e52", "#55a868"][: len(engines)])
        axis.bar_label(bars, fmt="%.3g")
        axis.set_yscale("log")
        axis.set_title(f"batch {batch}")
        axis.set_ylabel("median latency (ms, log scale)")
        axis.tick_params(axis="x", rotation=20)
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def _batches(text: str) -> list[int]:
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise NindslError.one("E0504", f"--batch must be a comma-separated list of sizes, got `{text}`", None,
                              "for example --batch 1,64")
    return batches


def bench_command(args) -> int:
    import nindsl

    from .cli import _overrides
    from .io import atomic_write_text

    network = nindsl.load(args.spec, _overrides(args.set))
    engines = [e.strip() for e in args.engines.split(",")] if args.engines else list(ENGINES)
    from .build_tvm import measuring_runner, refuse_tuning_options

    if "tvm-tuned" not in engines:  # (--key alone is explained by measuring_runner)
        refuse_tuning_options(args, ("rpc", "trials", "max_minutes", "db"), "the tvm-tuned engine")
    runner = measuring_runner(args) if "tvm-tuned" in engines or args.key else "local"
    records, peak = bench(network, _batches(args.batch), engines, args.target, args.rounds, args.trials, args.db,
                          progress=not args.quiet, runner=runner, max_minutes=args.max_minutes)
    print_table(records, peak, network)
    if args.json:
        payload = [{**asdict(r), "network": network.name, "spec_hash": network.spec_hash, "peak_gflops": peak,
                    "cores": cores()} for r in records]
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    if args.plot:
        plot(records, Path(args.plot), f"{network.name} on {cores()} cores")
    return 0
