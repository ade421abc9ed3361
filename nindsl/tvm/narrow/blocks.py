"""The narrow builds' tuning: each convolution's register or tile block, measured here.

Each convolution offers a few blocks (:class:`~nindsl.tvm.narrow.chain.ConvChoice`); under
``--tune`` they are compiled and timed alone in interleaved rounds, and the fastest is kept
where it beats the default clearly. Choices are cached beside the float32 tuning database
(:data:`BLOCKS_FILE`), keyed by precision, instructions and shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...kernel.io import atomic_write_text, ensure_folder, read_json_object
from ...kernel.progress import SILENT, Progress
from ...language import ir
from ...onnx.quantize import Plan
from ..profiles import Profile, resolved_target
from ..tune.search import database_dir
from .chain import Chain, Kernel, block_json, compiled, kernels
from .kernels.int8 import Isa

BLOCKS_FILE = "narrow_blocks.json"  # measured int8 and bf16 blocks, in the tuning database folder


MARGIN = 0.03  # a measured block replaces the default only when at least this much faster


def _interleaved_ms(functions: dict, args, rounds: int = 5, calls: int = 3) -> dict:
    """Each function's median milliseconds over ``rounds`` interleaved rounds of ``calls``
    (after one untimed call each round): a noisy moment slows every candidate alike, instead
    of whichever one it fell on."""
    import time

    samples = {key: [] for key in functions}
    for _ in range(rounds):
        for key, function in functions.items():
            function(*args)
            for _ in range(calls):
                start = time.perf_counter()
                function(*args)
                samples[key].append(time.perf_counter() - start)
    return {key: 1e3 * float(np.median(times)) for key, times in samples.items()}


def _median_ms(function, args, repeats: int) -> float:
    return _interleaved_ms({"": function}, args, rounds=1, calls=repeats)[""]


def choose_block(timings: dict, default):
    """The fastest measured block, unless the default (measured too) is within :data:`MARGIN`
    of it: a tuned build is never slower than an untuned one by the noise of one measurement."""
    best = min(timings, key=timings.get)
    if default in timings and timings[best] > timings[default] * (1 - MARGIN):
        return default
    return best


def _arguments(call: Kernel, weights: dict, shape, dtype, device) -> list:
    import tvm

    # zeros in (bf16 bits of uninitialised memory could be NaNs or subnormals, slower to compute)
    return [tvm.runtime.tensor(np.zeros(shape, dtype), device),
            *(tvm.runtime.tensor(weights[n], device) for n in call.weights),
            tvm.runtime.empty(call.shape, call.dtype, device)]


def _with_inputs(network: ir.Network, calls: list[Kernel], batch):
    """Each call with the shape and dtype of the tensor it reads (the previous call's output)."""
    _, c, h, w = network.input.shape
    shape, dtype = (batch, c, h, w), "float32"
    for call in calls:
        yield call, shape, dtype
        shape, dtype = call.shape, call.dtype


def time_kernels(network: ir.Network, quantized: Plan, profile: Profile, batch: int, blocks: dict | None = None,
                 repeats: int = 10, *, make: type[Chain]) -> list[tuple[str, float]]:
    """Each kernel's median milliseconds, run alone on zeros: where a build's time goes."""
    import tvm

    target, isa = make.isa_for(profile)
    calls, weights, _ = kernels(network, quantized, batch, isa, blocks, make=make)
    device = tvm.cpu(0)
    return [(call.name, _median_ms(compiled(call.func, target), _arguments(call, weights, shape, dtype, device),
                                   repeats))
            for call, shape, dtype in _with_inputs(network, calls, batch)]


def search_blocks(network: ir.Network, quantized: Plan, profile: Profile, batch: int, candidates: int = 8,
                  progress: Progress = SILENT, cache: Path | None = None, *, make: type[Chain],
                  isa: Isa | None = None) -> dict:
    """Tuning for int8 and bf16 (``make``: :class:`Int8Kernels` or a subclass): each
    convolution's block, measured. Up to ``candidates`` blocks per convolution (the register
    blocks nearest the default's size first, or the AMX tile blocks) are compiled and timed alone
    on this machine at ``batch``, in interleaved rounds; the fastest is kept where it beats the
    default clearly (:func:`choose_block`). ``cache`` (a JSON file beside the float32 tuning
    database) keeps each choice by precision, instructions and convolution shape: a rebuild
    measures nothing. ``isa``: other instructions than the target's (the tests' emulations)."""
    import tvm

    target, isa = (tvm.target.Target(resolved_target(profile)), isa) if isa else make.isa_for(profile)
    known = read_json_object(cache) if cache else {}
    device = tvm.cpu(0)
    calls, weights, _ = kernels(network, quantized, batch, isa, None, make=make)
    chosen = {}
    for call, shape, dtype in _with_inputs(network, calls, batch):
        choice = call.choice
        if choice is None or len(choice.options) < 2:
            continue
        key = f"{make.precision}|{choice.instructions}|{call.conv}"
        cached = next((b for b in choice.options if block_json(b) == known.get(key)), None)
        if cached is not None:
            chosen[call.output] = cached
            continue
        functions = {block: compiled(choice.make(block), target) for block in choice.options[:candidates]}
        timings = _interleaved_ms(functions, _arguments(call, weights, shape, dtype, device))
        best = chosen[call.output] = choose_block(timings, choice.default)
        if cache:
            known[key] = block_json(best)
            ensure_folder(cache.parent, "a tuning database folder")
            atomic_write_text(cache, json.dumps(known, indent=1, sort_keys=True) + "\n")
        progress.note(f"{make.precision} {call.output}: block {best} {timings[best]:.2f} ms "
                      f"(default {choice.default}: {timings.get(choice.default, float('nan')):.2f} ms, "
                      f"{len(timings)} measured)")
    return chosen


def measured_blocks(network: ir.Network, plan: Plan, profile: Profile, batch: int | None, db: str | None,
                    progress: Progress = SILENT, *, make: type[Chain]) -> dict:
    """The blocks :func:`search_blocks` measures, cached in the tuning database folder ``db``
    (None: the default one)."""
    return search_blocks(network, plan, profile, batch or 1, progress=progress,
                         cache=database_dir(profile, db) / BLOCKS_FILE, make=make)
