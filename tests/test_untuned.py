"""Untuned float32 CPU builds: the channels-last template computes every convolution it is
given, at every register block, for maps no vector divides, strided layers and channel counts
no vector divides; its rule picks blocks that divide the work and fit the registers."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.tvm import schedules  # noqa: E402
from nindsl.tvm.frontend import prepare  # noqa: E402
from nindsl.tvm.profiles import load_profile, resolved_target  # noqa: E402

LLVM = load_profile("llvm")

# nin_imagenet's awkward shapes, small: an 11×11 stride-4 input layer onto a 13-wide map, a
# padded 3×3 on it, 1×1 layers, 20 outputs (no whole 16- or 8-lane vector), a 6-wide map.
ODD = ("network odd() {\n    input x: f32[N, 3, 55, 55]\n    conv(32, 11, stride = 4)\n"
       "    conv(48, 3, pad = 1)\n    maxpool(3, stride = 2, round = ceil)\n    conv(20, 1)\n    global_avgpool()\n}\n")


def _conv_funcs(network, batch):
    from nindsl.tvm.tune.search import extract

    target = tvm.target.Target(resolved_target(LLVM))
    module = prepare(network, LLVM, batch, channels_last=True)
    funcs = [t.extracted.dispatched[0] for t in extract(module, target, None)]
    return [f for f in funcs if schedules.nhwc_choice(f, target) is not None], target


def test_channel_lanes_are_the_widest_vector_that_divides_the_channels():
    assert schedules.channel_lanes(96, 16) == 16 and schedules.channel_lanes(1000, 16) == 8
    assert schedules.channel_lanes(10, 16) == 2 and schedules.channel_lanes(100, 8) == 4
    assert schedules.channel_lanes(7, 16) == 1


def test_register_blocks_divide_any_map_and_fit_the_registers():
    for channels, columns, lanes in ((256, 27, 16), (384, 13, 16), (1024, 6, 16), (96, 54, 8), (1000, 6, 8)):
        blocks = schedules.nhwc_blocks(channels, columns, lanes, 28)
        assert blocks and all(channels // lanes % v == 0 and columns % c == 0 and v * c <= 28 for v, c in blocks)
    assert (2, 9) in schedules.nhwc_blocks(256, 27, 16, 28) and (2, 13) in schedules.nhwc_blocks(384, 13, 16, 28)
    assert schedules.nhwc_blocks(32, 13, 16, 12) == [(1, 1), (2, 1)]  # 13 columns do not fit AVX2's 12 sums


def test_every_convolution_of_odd_shapes_takes_the_template_and_a_block_that_divides_it():
    funcs, target = _conv_funcs(nindsl.check(ODD), 1)
    assert len(funcs) == 3
    for func in funcs:
        lanes, vectors, columns = schedules.nhwc_choice(func, target)
        out = [int(d) for d in func["main"].params[-1].shape]  # N, H, W, C
        assert out[3] % (lanes * vectors) == 0 and out[2] % columns == 0, (out, lanes, vectors, columns)


def test_a_row_no_block_divides_takes_a_block_with_a_remainder_on_avx2():
    """13 wide (nin_imagenet's conv3 layers) on AVX2: 12 sums fit no block of 13 columns, and 13
    has no other divisor; a block of 3 to 6 columns, its last one partly outside the row, beats
    1-column blocks. On AVX-512 (28 sums) a 13-column block divides it."""
    network = nindsl.check("network r() {\n    input x: f32[N, 64, 13, 13]\n    conv(64, 3, pad = 1)\n    global_avgpool()\n}\n")
    (func,), avx512 = _conv_funcs(network, 1)
    haswell = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})
    lanes, vectors, columns = schedules.nhwc_choice(func, haswell)
    assert lanes == 8 and 3 <= columns <= 6 and 13 % columns and vectors * columns <= 12
    assert schedules.nhwc_choice(func, tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"}))[2] == 13
    assert schedules.remainder_blocks(64, 13, 16, 12) == [(1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (1, 8), (1, 9),
                                                          (1, 10), (1, 11), (1, 12), (2, 3), (2, 4), (2, 5), (2, 6),
                                                          (4, 3)]  # (4 vectors of 16: no block of 3)


@pytest.mark.slow
def test_every_block_of_the_channels_last_template_computes_the_convolution():
    """Every register block of each convolution, built and run against the same kernel
    unscheduled: strided, padded, 1×1, and outputs no 16-lane vector divides."""
    from tvm import s_tir

    network = nindsl.check(ODD)
    funcs, target = _conv_funcs(network, 2)
    rng = np.random.default_rng(0)
    checked = 0
    for func in funcs:
        lanes, _, _ = schedules.nhwc_choice(func, target)
        params = func["main"].params
        arrays = [rng.standard_normal([int(d) for d in p.shape]).astype(np.float32) for p in params]
        args = [tvm.runtime.tensor(a) for a in arrays]
        tvm.compile(func, target=target)(*args)
        expected = args[-1].numpy()
        out = [int(d) for d in params[-1].shape]
        remainder = schedules.remainder_blocks(out[3], out[2], lanes, 28)[:3]  # (rows no block divides)
        for vectors, columns in schedules.nhwc_blocks(out[3], out[2], lanes, 28) + remainder:
            candidate = s_tir.Schedule(func)
            schedules.nhwc_conv2d(candidate, lanes, vectors, columns)
            args = [tvm.runtime.tensor(a) for a in arrays[:-1]] + [tvm.runtime.tensor(np.zeros_like(arrays[-1]))]
            tvm.compile(candidate.mod, target=target)(*args)
            np.testing.assert_allclose(args[-1].numpy(), expected, rtol=1e-5, atol=1e-5,
                                       err_msg=f"lanes={lanes} vectors={vectors} columns={columns}")
            checked += 1
    assert checked > 10 and remainder


@pytest.mark.slow
def test_an_untuned_build_of_odd_shapes_equals_onnxruntime():
    """The whole pipeline (layout conversion, template, weights packed once): any batch size."""
    from nindsl.onnx.lower import to_onnx
    from nindsl.onnx.runtime import run as run_onnx
    from nindsl.tvm.build import build
    from nindsl.tvm.deploy.artifact import Runner

    from numerics import assert_agree, test_inputs, test_weights

    network = nindsl.check(ODD)
    weights = test_weights(network)
    runner = Runner.from_build(build(network, LLVM, weights, batch=None))
    for batch in (1, 3):
        x = test_inputs(network, batch, seed=batch)
        assert_agree(runner(x), run_onnx(to_onnx(network, weights), x), f"untuned vs ORT, batch {batch}")


def test_small_kernels_of_a_fixed_batch_run_on_one_core_and_any_batch_keeps_every_core():
    """Waking the other cores costs more than a few thousand vector steps save: most of nin_digits'
    8×8 kernels at batch 1 run on one core, its two largest convolutions on all; at batch 64, and
    for any batch size, every one runs in parallel. Steps are counted in the vectors a kernel
    takes (its 10 classes: 2 lanes). Read off the schedules an untuned
    build applies."""
    from nindsl.tvm import winograd
    from nindsl.tvm.untuned import default_database

    network = nindsl.load("specs/nin_digits.nin")
    target = tvm.target.Target(resolved_target(LLVM))

    def parallel(batch):
        """{kernel: (runs in parallel, vector steps)} for the convolutions."""
        module = prepare(network, LLVM, batch, channels_last=True, legalize=winograd.legalize(winograd.choose))
        kernels = {}
        for record in default_database(module, target).get_all_tuning_records():
            func = record.workload.mod
            choice = schedules.nhwc_choice(func, target)
            if choice is not None:
                steps = schedules.static_work(func)
                kernels[len(kernels)] = ("Parallel" in [inst.kind.name for inst in record.trace.insts],
                                         None if steps is None else steps // choice[0])
        return kernels

    small, large, symbolic = parallel(1), parallel(64), parallel(None)
    assert len(small) == len(large) == len(symbolic) == 8
    for fixed in (small, large):
        assert all(runs == (steps >= schedules.SERIAL_STEPS) for runs, steps in fixed.values())
    assert sum(runs for runs, _ in small.values()) == 2 and all(runs for runs, _ in large.values())
    assert all(runs and steps is None for runs, steps in symbolic.values())
    (first, *_), _ = _conv_funcs(network, 1)
    # the padded copy, the convolution, its bias and its ReLU
    assert schedules.static_work(first) == 10 * 10 * 1 + 8 * 8 * 32 * 9 + 2 * 8 * 8 * 32


# Pools of every kind an untuned build vectorizes along the channels: padded, ceil and floor
# rounding (ceil's last window partly outside the map), averages over the padded window and over
# the input alone, channels no 16-lane vector divides.
POOLS = ("network pools() {\n    input x: f32[N, 20, 15, 15]\n    conv(40, 3, pad = 1)\n"
         "    maxpool(3, stride = 2, round = ceil)\n    avgpool(3, stride = 2, pad = 1)\n"
         "    conv(10, 1)\n    avgpool(3, stride = 2, pad = 1, count_pad = false)\n    maxpool(2, pad = 1)\n"
         "    avgpool(2, round = ceil)\n    global_avgpool()\n}\n")


@pytest.mark.slow
def test_pools_take_the_channels_last_template_and_equal_onnxruntime():
    """Every pool of an untuned build is reduced in vectors along the channels, and the build's
    outputs equal ONNX Runtime's at batch 1 (kernels on one core) and 5 (in parallel)."""
    from tvm import s_tir

    from nindsl.onnx.lower import to_onnx
    from nindsl.onnx.runtime import run as run_onnx
    from nindsl.tvm.build import build
    from nindsl.tvm.deploy.artifact import Runner
    from nindsl.tvm.tune.search import extract

    from numerics import assert_agree, test_inputs, test_weights

    network = nindsl.check(POOLS)
    target = tvm.target.Target(resolved_target(LLVM))
    pools = [t.extracted.dispatched[0] for t in extract(prepare(network, LLVM, 5, channels_last=True), target, None)
             if "pool" in t.extracted.task_name]
    assert len(pools) == 5 and all(schedules.is_nhwc_pool(f) and schedules.nhwc_pool(s_tir.Schedule(f), 16)
                                   for f in pools)
    weights = test_weights(network)
    for batch in (1, 5):
        x = test_inputs(network, batch, seed=batch)
        runner = Runner.from_build(build(network, LLVM, weights, batch=batch))
        assert_agree(runner(x), run_onnx(to_onnx(network, weights), x), f"untuned vs ORT, batch {batch}")


@pytest.mark.slow
def test_the_kernel_times_example_lists_every_kernel_of_a_build():
    """examples/kernel_times.py, as docs/performance.md runs it: the whole build's median, then a
    row per kernel in call order."""
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "examples/kernel_times.py", "specs/nin_digits.nin", "--calls", "5"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if line.startswith("| fused_conv2d")]
    assert "whole build" in shown.stdout and len(rows) == 8  # nin_digits' eight distinct convolution kernels


def test_a_convolution_the_template_cannot_schedule_is_said_not_hidden(cli, tmp_path, monkeypatch):
    """Where a schedule primitive refuses a kernel, it keeps TVM's own (naive) loops: slow, so the
    compile warns, the manifest lists it and `inspect` shows it. (The refusal is forced here.)"""
    import json

    from nindsl.tvm import untuned

    schedule = untuned._schedule
    monkeypatch.setattr(untuned, "_schedule",
                        lambda func, target, name: None if "conv2d" in name else schedule(func, target, name))
    (tmp_path / "s.nin").write_text("network s() {\n    input x: f32[N, 8, 6, 6]\n    conv(16, 3, pad = 1)\n"
                                    "    global_avgpool()\n}\n")
    shown = cli("compile", tmp_path / "s.nin", "-t", "llvm", "--batch", "1", "-o", tmp_path / "a")
    assert shown.code == 0 and "warning: the template could not schedule 1 convolution kernel" in shown.err
    assert len(json.loads((tmp_path / "a" / "manifest.json").read_text())["unscheduled"]) == 1
    assert "unscheduled" in cli("inspect", tmp_path / "a").out
