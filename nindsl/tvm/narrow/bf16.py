"""A bf16 build: the network's weights and activations in bfloat16, its sums in float32, as a
Relax module of kernels scheduled here (:mod:`nindsl.tvm.narrow.kernels.bf16`' convolution; pooling,
the input's conversion and the head as in int8 builds, through :class:`Bf16Kernels`).

    bf16 input (columns folded, as int8's) → [convolution + bias + ReLU | max pool | average pool]… → head

Every value between kernels is a bf16 number, rounded to nearest even from the float32 it was
computed in: the convolution's sums, an average pool's mean. Max pooling picks one of its
inputs, exactly. The head (global average pooling, softmax) sums in float32.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...kernel.progress import SILENT, Progress
from ...language import ir
from ...onnx.quantize import Calibration, Plan, float_steps
from ..checked import QuantizedBuild, run_batched
from ..frontend import Build
from ..profiles import Profile, host_profile, resolved_target, runs_here
from .blocks import measured_blocks
from .chain import Chain, ConvChoice, check_tunable, compile_chain, kernels
from .kernels import amx as amx_kernels
from .kernels import amx_probe
from .kernels.bf16 import EMULATED, bf16_isa, conv_func, narrow, schedule_conv, to_bf16, widen
from .kernels.int8 import ConvShape, Isa, pack_weights
from .precision import check_precision


class Bf16Kernels(Chain):
    """The chain's numbers as bf16 (as the int8 chain, with bf16 numbers between its kernels)."""

    precision = "bf16"
    dtype = "uint16"
    fold_block = 2  # one bf16 step takes 2 channels: a folded input pads its taps to 2s

    @staticmethod
    def isa_for(profile: Profile):
        return isa_of(profile)

    def encode(self, real, tensor: str):
        return narrow(real)

    def zero(self, tensor: str) -> int:
        return 0

    def larger(self, a, b):
        from tvm import tirx

        return narrow(tirx.max(widen(a), widen(b)))  # (exact: the larger is a bf16 number)

    def average(self, values: list, valid: list, inside, count, tensor: str):
        from tvm import tirx

        total = tirx.const(0.0, "float32")
        for value, ok in zip(values, valid):
            total = total + tirx.if_then_else(ok, widen(value), tirx.const(0.0, "float32"))
        return narrow(total / count.astype("float32"))

    def summand(self, code):
        return widen(code)

    def real_mean(self, total, size: int, tensor: str):
        return total / float(size)

    def conv_kernel(self, step, conv: ConvShape, weight: np.ndarray) -> tuple[ConvChoice, tuple]:
        o, lanes = weight.shape[0], self.isa.lanes
        bias = np.zeros(-(-o // lanes) * lanes, np.float32)
        bias[:o] = step.bias
        vector = self.isa.vector
        choice, layout = self.choice(conv, amx_kernels.BF16, lambda block: amx_kernels.conv_func(
            conv, amx_kernels.BF16, step.relu, emulated=self.isa.emulated, block=block),
            lambda block: schedule_conv(conv_func(conv, vector, step.relu), conv, vector, block))
        return choice, (("w", pack_weights(to_bf16(weight), layout, vector)), ("bias", bias))


def bf16_plan(model) -> Plan:
    """The float32 ONNX model as the chain of steps a bf16 build runs (no quantization: the
    steps keep their float32 weights, rounded to bf16 when they are packed)."""
    steps, softmax = float_steps(model, "bf16")
    return Plan(steps, {}, model.graph.input[0].name, model.graph.output[0].name, softmax)


def isa_of(profile: Profile):
    """The target of ``profile`` and its bf16 instructions; E0504 where it has none. AMX on this
    machine is used where :func:`nindsl.tvm.narrow.kernels.amx_probe.works_here` passes, else AVX512-BF16."""
    import tvm

    target = tvm.target.Target(resolved_target(profile))
    isa = bf16_isa(target)
    if isa is None:
        check_precision("bf16", profile)  # (says what the CPU runs instead)
    if isa is not None and isa.tiles and runs_here(target):
        problem = amx_probe.tile_problem(amx_kernels.BF16, target)
        if problem:  # said on the console and in the manifest (Isa.fallback)
            isa = replace(isa.vector, fallback=f"this CPU's AMX tiles {problem} in a probe: {isa.vector.name} instead")
    return target, isa


def build_bf16(network: ir.Network, profile: Profile, plan: Plan, model, batch: int | None,
               isa: Isa | None = None, blocks: dict | None = None) -> Build:
    """Compile ``plan`` for ``profile``'s CPU, for any batch size (``batch`` None) or one, with
    its bf16 instructions (or ``isa``: :data:`~nindsl.tvm.narrow.kernels.bf16.EMULATED` runs anywhere),
    each convolution in its measured block where ``blocks`` has one (:func:`search_blocks`)."""
    import tvm
    from tvm import tirx

    target, isa = (tvm.target.Target(resolved_target(profile)), isa) if isa else isa_of(profile)
    size = tirx.Var("n", "int64") if batch is None else batch
    calls, weights, order = kernels(network, plan, size, isa, blocks, make=Bf16Kernels)
    return Build(compile_chain(network, plan.input, calls, weights, order, size, target), model, weights, order,
                 target, False, batch)


def build_checked(network: ir.Network, profile: Profile, weights, seed: int, batch: int | None,
                  calibration: Calibration, load, tuning=None, progress: Progress = SILENT) -> QuantizedBuild:
    """Build ``network`` in bf16 for ``profile`` and compare it with float32 (ONNX Runtime) on the
    held-out images of ``calibration``, run through ``load(build)``. With ``tuning``
    (TuneOptions), each convolution's block is measured, as for int8. A target whose
    instructions this CPU lacks is judged by the same sums computed here (:data:`EMULATED`)."""
    from ...onnx.lower import lower
    from ...onnx.quantize import agreement, images_per_batch, in_batches
    from ...onnx.runtime import runner

    target, isa = isa_of(profile)
    check_tunable(target, isa.name, tuning is not None, "bf16")
    model = lower(network, weights, seed).model
    plan = bf16_plan(model)
    blocks = measured_blocks(network, plan, profile, batch, tuning.db, progress, make=Bf16Kernels) if tuning else {}
    if isa.fallback:
        progress.note(f"warning: bf16 {isa.fallback}")
    progress.note(f"building bf16 ({isa.name}) ...")
    built = build_bf16(network, profile, plan, model, batch, isa, blocks)
    judged = built
    if not runs_here(target):
        progress.note(f"this CPU cannot run {isa.name}: comparing the same sums computed with float32 instructions")
        judged = build_bf16(network, host_profile(profile), plan, model, batch, EMULATED)
    progress.note(f"comparing with float32 on {len(calibration.held_out):,} held-out images ...")
    held_out = calibration.held_out
    result = agreement(in_batches(runner(model), held_out, images_per_batch(model)),
                       run_batched(load(judged), held_out, batch, images_per_batch(model)), calibration.labels)
    return QuantizedBuild(built, plan, isa, result, blocks)
