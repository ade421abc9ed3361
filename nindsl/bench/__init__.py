"""``nindsl bench``: every engine on the same inputs, in one run, against the machine's peak.

Every engine of every batch size is prepared first (tuning included), and only then timed,
so that no engine is timed while a tuning run's workers wind down. Engines are timed in
interleaved rounds so that a noisy neighbour slows them alike. Before its turn in a round,
an engine waits until the previous engine's thread pool stops spinning (:func:`_settle`:
they spin at a whole core for up to a quarter of a second after their calls, which on 2 cores
halved the next engine's share of the machine), then makes a few untimed calls (an idle
virtual CPU wakes slowly, and its own pool spins up) and a block of timed ones. Calls are not
interleaved one by one, because thread pools spin after a call (docs/performance.md has the
measurements behind each choice). Blocks are sized by time: a block lasts about
``BLOCK_SECONDS`` (at most ``BLOCK`` calls, at least one), the untimed calls about
``WARM_SECONDS`` (at least one), and an engine that has spent ``ENGINE_SECONDS`` in timed calls
sits out the remaining rounds once it has ``MIN_SAMPLES``. The report gives the median and
the 10th–90th percentile spread, and each engine's ratio to ONNX Runtime with a 95 %
interval from a bootstrap over the rounds (a round is the unit that shares a moment's
noise). That interval covers this run's noise only: a new process can land differently.
Achieved GFLOP/s counts 2 FLOPs per multiply-add of the spec; the peak is the best of a large
float32 matrix multiply measured on the spot by every BLAS at hand and of every engine's rate,
so no engine is shown above 100 % of it.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..kernel.diagnostics import NindslError
from ..kernel.machine import usable_cpus
from ..kernel.progress import SILENT, Progress
from ..language import ir
from ..language.ir import values_per_example

ENGINES = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-fp32", "openvino-int8", "torch", "tvm-untuned",
           "tvm-tuned", "tvm-int8")
MORE_ENGINES = ("tvm-int8-tuned", "tvm-bf16", "tvm-bf16-tuned", "tvm-fp16", "torch-fp16")  # on request: --engines
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
    peak_source: str = ""  # how the peak was found
    peer: str = ""  # the fastest engine a user would pick instead at this precision (PEERS), if one ran
    vs_peer: float | None = None  # median_ms over the peer's, with a 95 % interval from the same rounds
    vs_peer_low: float | None = None
    vs_peer_high: float | None = None
    multiplications: float = 1.0  # those the engine does, as a fraction of the spec's multiply-adds (Winograd: fewer)


# Like for like: each narrow-precision build against the engines a user would pick instead at
# the same precision, the fastest of them in each run (ratios against float32 ONNX Runtime say
# nothing about that choice).
INT8_PEERS = ("onnxruntime-int8", "openvino-int8")
PEERS = {"tvm-int8": INT8_PEERS, "tvm-int8-tuned": INT8_PEERS, "tvm-bf16": ("openvino",),
         "tvm-bf16-tuned": ("openvino",)}


def fastest_peer(engine: str, medians: dict[str, float]) -> str | None:
    """The fastest of ``engine``'s :data:`PEERS` that ran (``medians``: each engine's median), or None."""
    ran = [peer for peer in PEERS.get(engine, ()) if peer in medians]
    return min(ran, key=medians.__getitem__) if ran else None


def _matmul_seconds(multiply: Callable[[], object], repeats: int) -> float:
    multiply()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        multiply()
        times.append(time.perf_counter() - start)
    return min(times)


# Engines whose arithmetic a float32 peak does not bound: int8, bf16, fp16, and OpenVINO's
# default (bf16 on CPUs with AMX or AVX512-BF16).
NARROW_ENGINES = ("onnxruntime-int8", "openvino-int8", "tvm-int8", "tvm-int8-tuned", "tvm-bf16", "tvm-bf16-tuned",
                  "tvm-fp16", "torch-fp16", "openvino")


def _peak(profile) -> tuple[float, str]:
    """The float32 peak and how it was found: FMA loops on every core where TVM can build
    them for this CPU, else the best float32 matrix multiply at hand (or cuBLAS's)."""
    if profile.device == "cpu":
        try:
            from ..tvm.env import require_tvm
            from .peak import fp32_peak

            require_tvm()
            return fp32_peak(_host_target(), usable_cpus()), "float32 FMA loops on every core, measured"
        except ImportError:
            pass
    return matmul_peak(device=profile.device), "the best float32 matrix multiply at hand, measured"


def _host_target():
    import tvm
    from tvm.target import codegen

    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


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

        torch.set_num_threads(usable_cpus())
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
    from onnx import TensorProto, helper

    from ..onnx.runtime import session

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    opened = session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    return lambda: opened.run(None, {"a": a, "b": b})


def _once(run: Callable, x: np.ndarray) -> float:
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


SETTLE_WINDOW, SETTLE_LIMIT, SETTLE_BUSY = 0.01, 1.0, 0.1  # seconds, seconds, a fraction of one core


def _settle(window: float = SETTLE_WINDOW, limit: float = SETTLE_LIMIT, busy: float = SETTLE_BUSY) -> float:
    """Wait, up to ``limit`` seconds, until this process's threads stop spinning: until a
    ``window`` of sleep costs the process less than ``busy`` of one core. A thread pool spins
    after its engine's calls (on 2 cores, measured: ONNX Runtime's about 60 ms, TVM's about
    250 ms, at a whole core), and the next engine timed would share a core with it. Returns
    the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(window)
        if time.process_time() - cpu < busy * (time.perf_counter() - wall):
            break
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
            _settle()  # the previous engine's threads stop spinning
            for _ in range(max(1, min(WARM, int(WARM_SECONDS / single[engine])))):  # this one's wake up
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


def _check_memory(network: ir.Network, batches) -> None:
    """Refuse, with the figure, a batch whose input and two largest live activations (float32)
    would not fit in this machine's memory: found before anything is allocated."""
    largest = max(values_per_example(shape) for shape in (network.input.shape, *(s.out_shape for s in network.shapes)))
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    for batch in batches:
        needed = 3 * 4 * batch * largest
        if needed > memory:
            raise NindslError.one("E0401", f"batch {batch:,} needs about {needed / 2**30:,.1f} GiB for its input and "
                                           f"activations; this machine has {memory / 2**30:,.1f} GiB", None,
                                  "time smaller batches")


@dataclass(frozen=True)
class BenchOptions:
    """What to time: engines (of :data:`ENGINES`) at each batch size, in ``rounds`` rounds."""

    batches: tuple[int, ...] = (1, 64)
    engines: tuple[str, ...] = ENGINES
    target: str = "llvm"  # the TVM profile; its device is every engine's
    rounds: int = 20
    tuning: object = None  # nindsl.tvm.tune.search.TuneOptions for tvm-tuned (None: the profile's defaults)
    seed: int = 0  # of the weights drawn from the spec's init


def bench(network: ir.Network, options: BenchOptions = BenchOptions(),
          progress: Progress = SILENT) -> tuple[list[Record], float]:
    """Time each engine at each batch size in interleaved rounds; returns the records and
    the peak (the best measured rate: the matmul's or an engine's)."""
    from ..engines import Unavailable, prepare
    from ..onnx.lower import lower
    from ..tvm.profiles import load_profile

    unknown = [e for e in options.engines if e not in (*ENGINES, *MORE_ENGINES)]
    if unknown:
        raise NindslError.one("E0504", f"unknown engine `{unknown[0]}`", None,
                              f"engines: {', '.join((*ENGINES, *MORE_ENGINES))}")
    _check_memory(network, options.batches)
    weights = lower(network, None, options.seed)  # once, for every engine and batch size
    profile = load_profile(options.target)  # its device is every engine's: cpu, or cuda for all four
    if any(e.startswith("tvm") for e in options.engines):
        from ..tvm.env import require_tvm

        require_tvm()
    tuning = options.tuning
    if tuning is None and "tvm-tuned" in options.engines:
        from ..tvm.tune.search import TuneOptions

        tuning = TuneOptions()
    peak, peak_source = _peak(profile)
    inputs, prepared, unavailable = {}, {}, {}
    for batch in options.batches:  # every engine first, tuning included; then the timing
        inputs[batch] = np.random.default_rng(batch).standard_normal((batch, *network.input.shape[1:])).astype(np.float32)
        runners: dict[str, Callable] = {}
        for engine in options.engines:
            if engine in unavailable:
                continue
            progress.note(f"preparing {engine} for batch {batch} ...")
            try:
                runners[engine] = prepare(engine, network, weights, profile.device, profile=profile, batch=batch,
                                          tuning=tuning, progress=progress)
            except Unavailable as why:
                unavailable[engine] = str(why)
                progress.note(f"{engine} cannot run here: {why}")
        prepared[batch] = runners
    records, done = [], winograd_multiplications(network, profile, options.engines)
    for batch in options.batches:
        progress.note(f"timing batch {batch}: {options.rounds} interleaved rounds ...")
        x, runners = inputs[batch], prepared.pop(batch)
        times, differences = _time(runners, x, options.rounds)
        flops = 2 * network.total_macs * batch
        medians = {engine: statistics.median(_flat(blocks)) for engine, blocks in times.items()}
        for engine, blocks in times.items():
            samples, median = _flat(blocks), medians[engine]
            deciles = statistics.quantiles(samples, n=10) if len(samples) > 1 else [median] * 9
            record = Record(engine, batch, median * 1e3, deciles[0] * 1e3, deciles[-1] * 1e3, batch / median,
                            flops / median / 1e9, flops / median / 1e9 / peak, differences[engine],
                            multiplications=done.get(engine, 1.0))
            if engine == "onnxruntime":
                record.vs_onnxruntime = record.vs_onnxruntime_low = record.vs_onnxruntime_high = 1.0
            elif "onnxruntime" in times:
                record.vs_onnxruntime = median / medians["onnxruntime"]
                record.vs_onnxruntime_low, record.vs_onnxruntime_high = ratio_interval(blocks, times["onnxruntime"])
            peer = fastest_peer(engine, medians)
            if peer is not None:
                record.peer, record.vs_peer = peer, median / medians[peer]
                record.vs_peer_low, record.vs_peer_high = ratio_interval(blocks, times[peer])
            records.append(record)
    # "of peak" must stay a fraction: where a float32 engine beat the measured peak (a noisy
    # moment during the measurement), the peak is that engine's rate. Narrower arithmetic
    # (NARROW_ENGINES) is not bounded by a float32 peak: those engines have no "of peak".
    # (an engine that does fewer multiplications, Winograd's, is held to the peak by those it does)
    best = max([peak, *(r.gflops * r.multiplications for r in records if r.engine not in NARROW_ENGINES)])
    if best > peak:
        peak_source = "the best float32 engine here, above the measured peak"
    for record in records:
        record.peak_fraction = (record.gflops * record.multiplications / best if record.engine not in NARROW_ENGINES
                                else float("nan"))
        record.peak_source = peak_source
    nan = float("nan")
    records += [Record(engine, batch, nan, nan, nan, nan, nan, nan, None, note=f"cannot run here: {why}")
                for engine, why in unavailable.items() for batch in options.batches]
    return records, best


def winograd_multiplications(network: ir.Network, profile, engines) -> dict[str, float]:
    """The engines that do fewer multiplications than the spec's multiply-adds (tvm-untuned on a
    CPU, with Winograd where its rule says), and the fraction they do."""
    if "tvm-untuned" not in engines:
        return {}
    from ..tvm.build import uses_winograd
    from ..tvm.winograd import fraction

    return {"tvm-untuned": fraction(network)} if uses_winograd(profile) else {}


def verdict(r: Record, peer: bool = False) -> str:
    """What a ratio's interval (to ONNX Runtime, or to the record's peer) says about this run."""
    ratio, low, high = (r.vs_peer, r.vs_peer_low, r.vs_peer_high) if peer else \
        (r.vs_onnxruntime, r.vs_onnxruntime_low, r.vs_onnxruntime_high)
    interval = f"{ratio:.2f}× {r.peer if peer else 'ONNX Runtime'} (95 % interval {low:.2f}–{high:.2f})"
    if high < 1:
        return f"faster in this run: {interval}"
    if low > 1:
        return f"slower in this run: {interval}"
    return f"as fast, within this run's noise: {interval}"


def chart(records: list[Record], title: str) -> bytes:
    """Median latency per engine, one panel per batch size, as PNG bytes."""
    from ..figures import figure_bytes, pyplot

    plt = pyplot()
    batches = sorted({r.batch for r in records})
    engines = list(dict.fromkeys(r.engine for r in records if r.median_ms == r.median_ms))  # (NaN: did not run)
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
    return figure_bytes(figure, "png", dpi=110)


