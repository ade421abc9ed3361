"""An int8 build: a quantized network (:class:`nindsl.onnx.quantize.Plan`) as the chain of
:mod:`nindsl.tvm.narrow.chain` with int8 numbers between its kernels, compiled for a CPU target.

Activations are unsigned 8-bit codes (a scale and zero point per tensor), weights signed 8-bit.
Convolutions are :mod:`nindsl.tvm.narrow.kernels.int8`' direct kernel (or AMX tiles) with its
requantize step; pooling works on the integers (max) or on their dequantized values (average,
requantized to the same scale); the head (global average pooling, softmax) is float32.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...kernel.diagnostics import NindslError
from ...kernel.progress import SILENT, Progress
from ...language import ir
from ...onnx.quantize import LEVELS, Calibration, Plan, Quant
from ..checked import QuantizedBuild, run_batched
from ..frontend import Build
from ..profiles import Profile, host_profile, resolved_target, runs_here
from .blocks import measured_blocks
from .chain import Chain, ConvChoice, check_tunable, compile_chain, kernels
from .kernels import amx as amx_kernels
from .kernels import amx_probe
from .kernels.int8 import PORTABLE, ConvShape, Isa, conv_func, int8_isa, pack_weights, schedule_conv


def _requantize(value, quant: Quant):
    from tvm import tirx

    q = tirx.nearbyint(value / float(quant.scale)) + float(quant.zero)
    return tirx.max(tirx.min(q, float(LEVELS)), 0.0).astype("uint8")


class Int8Kernels(Chain):
    """The chain's numbers as int8 codes (:class:`nindsl.tvm.narrow.bf16.Bf16Kernels` has bf16
    ones)."""

    precision = "int8"
    dtype = "uint8"  # the activations' storage

    @staticmethod
    def isa_for(profile: Profile):
        """The target of ``profile`` and the instructions these kernels take there."""
        return isa_of(profile)

    def encode(self, real, tensor: str):
        """The code of a real value of ``tensor``."""
        return _requantize(real, self.plan.quants[tensor])

    def zero(self, tensor: str) -> int:
        """The code of 0.0 in ``tensor``: what padding reads."""
        return self.plan.quants[tensor].zero

    def larger(self, a, b):
        """The code of the larger of two codes (max pooling)."""
        from tvm import tirx

        return tirx.max(a, b)

    def average(self, values: list, valid: list, inside, count, tensor: str):
        """The code of the mean of the ``valid`` ``values`` of ``tensor`` over ``count`` taps, where
        ``inside`` of them are in the input: the integers are summed, then dequantized."""
        from tvm import tirx

        quant = self.plan.quants[tensor]
        total = tirx.const(0, "int32")
        for value, ok in zip(values, valid):
            total = total + tirx.if_then_else(ok, value.astype("int32"), 0)
        real = (total.astype("float32") - float(quant.zero) * inside.astype("float32")) \
            * float(quant.scale) / count.astype("float32")
        return _requantize(real, quant)

    def summand(self, code):
        """A code as the head sums it (an int32: exact)."""
        return code.astype("int32")

    def real_mean(self, total, size: int, tensor: str):
        """The real mean of ``size`` codes of ``tensor`` whose :meth:`summand` sum is ``total``."""
        quant = self.plan.quants[tensor]
        return (total.astype("float32") / float(size) - float(quant.zero)) * float(quant.scale)

    def conv_kernel(self, step, conv: ConvShape, weight: np.ndarray) -> tuple[ConvChoice, tuple]:
        """How one convolution may be built (:meth:`choice`), and the weights it takes, by part."""
        q_in, q_out = self.plan.quants[step.input], self.plan.quants[step.output]
        o = weight.shape[0]
        blocks_out = -(-o // self.isa.lanes)
        vector = self.isa.vector
        choice, layout = self.choice(conv, amx_kernels.INT8, lambda block: amx_kernels.conv_func(
            conv, amx_kernels.INT8, emulated=self.isa.emulated, block=block),
            lambda block: schedule_conv(conv_func(conv, vector), conv, vector, block))
        # the input zero point's share of every sum, folded into the bias: Σ (x - z)·w = Σ x·w - z·Σ w
        bias = np.zeros(blocks_out * self.isa.lanes, np.int64)
        bias[:o] = step.bias.astype(np.int64) - q_in.zero * step.weight.astype(np.int64).sum(axis=(1, 2, 3))
        scale = np.zeros(blocks_out * self.isa.lanes, np.float32)
        scale[:o] = np.float32(q_in.scale) * step.weight_scale / np.float32(q_out.scale)
        packed = pack_weights(weight, layout, vector)
        return choice, (("w", packed), ("bias", bias.astype(np.int32)), ("scale", scale))


def isa_of(profile: Profile):
    """The target of ``profile`` and its int8 instructions; a clear error without AVX2. AMX on
    this machine is used where :func:`nindsl.tvm.narrow.kernels.amx_probe.works_here` says it computes
    what it should, else VNNI."""
    import tvm

    target = tvm.target.Target(resolved_target(profile))
    isa = int8_isa(target)
    if isa is not None and isa.tiles and runs_here(target):
        problem = amx_probe.tile_problem(amx_kernels.INT8, target)
        if problem:  # said on the console and in the manifest (Isa.fallback)
            isa = replace(isa.vector, fallback=f"this CPU's AMX tiles {problem} in a probe: {isa.vector.name} instead")
    if isa is None:
        cpu = target.attrs.get("mcpu") or "the host"
        raise NindslError.one("E0504", f"`{cpu}` (target `{profile.name}`) has no AVX2: int8 would not be faster than "
                                       "float32 there", None, "build with --precision fp32")
    return target, isa


def build_int8(network: ir.Network, profile: Profile, quantized: Plan, qdq_model, batch: int | None,
               blocks: dict | None = None, isa: Isa | None = None) -> Build:
    """Compile ``quantized`` for ``profile``'s CPU, for any batch size (``batch`` None) or one,
    with the instructions its target has (or ``isa``)."""
    import tvm
    from tvm import tirx

    target, isa = (tvm.target.Target(resolved_target(profile)), isa) if isa else isa_of(profile)
    if quantized.weight_levels > isa.weight_levels:
        raise NindslError.one("E0504", f"these int8 weights reach ±{quantized.weight_levels}, and {isa.name} adds "
                                       f"products in 16 bits: ±{isa.weight_levels} at most", None,
                              "quantize for this target (nindsl does when it compiles)")
    size = tirx.Var("n", "int64") if batch is None else batch
    calls, weights, order = kernels(network, quantized, size, isa, blocks, make=Int8Kernels)
    return Build(compile_chain(network, quantized.input, calls, weights, order, size, target), qdq_model, weights,
                 order, target, False, batch)


def build_quantized(network: ir.Network, profile: Profile, weights, seed: int, batch: int | None,
                    calibration: Calibration, load, tuning=None, progress: Progress = SILENT) -> QuantizedBuild:
    """Calibrate, quantize and compile ``network`` for int8, then compare it with float32
    (ONNX Runtime) on the calibration's held-out images, run through ``load(build)``
    (:meth:`nindsl.tvm.deploy.artifact.Runner.from_build`). With ``tuning`` (TuneOptions), each
    convolution's register or tile block is measured (:func:`search_blocks`), cached in its database.
    A target whose instructions this CPU lacks is judged by the same plan built for this CPU:
    the kernels' integers are exact, whichever instructions compute them."""
    import tvm

    from ...onnx.lower import lower
    from ...onnx.quantize import agreement, images_per_batch, in_batches, quantize, to_qdq
    from ...onnx.runtime import runner

    target, isa = isa_of(profile)
    check_tunable(target, isa.name, tuning is not None, "int8")
    model = lower(network, weights, seed).model
    if isa.fallback:
        progress.note(f"warning: int8 {isa.fallback}")
    progress.note(f"calibrating int8 ({isa.name}) on {len(calibration.images):,} images from {calibration.source} ...")
    quantized = quantize(model, calibration.images, isa.weight_levels)
    blocks = measured_blocks(network, quantized, profile, batch, tuning.db, progress, make=Int8Kernels) if tuning else {}
    built = build_int8(network, profile, quantized, to_qdq(model, quantized), batch, blocks)
    judged = built
    if not runs_here(target):  # judged by the same integers from instructions this CPU has
        here = host_profile(profile)
        isa_here = int8_isa(tvm.target.Target(resolved_target(here)))
        if isa_here is None or isa_here.weight_levels < quantized.weight_levels:
            isa_here = PORTABLE
        progress.note(f"this CPU cannot run {isa.name}: comparing the same integer kernels built for {isa_here.name}")
        judged = build_int8(network, here, quantized, built.model, batch, None, isa_here)
    progress.note(f"comparing with float32 on {len(calibration.held_out):,} held-out images ...")
    held_out = calibration.held_out
    result = agreement(in_batches(runner(model), held_out, images_per_batch(model)),
                       run_batched(load(judged), held_out, batch, images_per_batch(model)),
                       calibration.labels)
    return QuantizedBuild(built, quantized, isa, result, blocks)
