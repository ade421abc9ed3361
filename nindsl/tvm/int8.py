"""An int8 build: a quantized network (:class:`nindsl.onnx.quantize.Plan`) as a Relax module
of integer kernels, each scheduled here, compiled for a CPU target.

The network runs as a chain of kernels over a blocked NHWC layout (``[N, H, W, C/b, b]``:
channels padded to whole blocks of ``b``, 4 for the input, the vector lanes after a
convolution):

    quantize the input → [convolution + requantize | max pool | average pool]… → head

Convolutions are :mod:`nindsl.tvm.int8_kernels`' direct kernel; pooling works on the
integers (max) or on their dequantized values (average, requantized to the same scale); the
head (global average pooling, softmax) is float32. The weights are packed once, at build
time, and passed to the library at run time as for float32 builds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path

import numpy as np

from ..kernel.diagnostics import NindslError
from ..kernel.progress import SILENT, Progress
from ..language import ir
from ..onnx.quantize import LEVELS, Agreement, Calibration, Plan, Quant
from .build import Build
from .compat import noalias_single_buffer_functions
from . import amx_kernels
from .int8_kernels import (PORTABLE, ConvShape, Isa, conv_func, int8_isa, pack_weights, register_block,
                           register_blocks, schedule_conv, weight_shape)
from .profiles import Profile, host_profile, resolved_target, runs_here

FOLD_BLOCK = 8  # a folded input's (tap, channel) pairs come in 8s: whole paired steps
BLOCKS_FILE = "narrow_blocks.json"  # measured int8 and bf16 blocks, in the tuning database folder


def _requantize(value, quant: Quant):
    from tvm import tirx

    q = tirx.nearbyint(value / float(quant.scale)) + float(quant.zero)
    return tirx.max(tirx.min(q, float(LEVELS)), 0.0).astype("uint8")


def _dequantize(q, quant: Quant):
    return (q.astype("float32") - float(quant.zero)) * float(quant.scale)


def _parallel(func):
    """A simple schedule for a small memory-bound kernel (quantizing the input, the head):
    producers inlined, the two outer loops of what remains run in parallel where they are not
    a reduction's; LLVM vectorises the rest."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    for block in _blocks(sch)[:-1]:
        try:
            sch.compute_inline(block)
        except Exception:  # noqa: BLE001 - a reduction or a multi-consumer block stays
            pass
    for block in _blocks(sch):
        loops = sch.get_loops(block)
        try:
            sch.parallel(sch.fuse(*loops[:2]) if len(loops) >= 2 else loops[0])
        except Exception:  # noqa: BLE001 - a reduction over the outer loops (the head's): serial
            pass
    return sch.mod["main"]


def _schedule_pool(func):
    """Pooling: rows in parallel, each pixel's channels as vectors of up to 32 bytes."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    pool = sch.get_sblock("pool")
    b, i, j, g, k = sch.get_loops(pool)
    channels = sch.fuse(g, k)
    extent = int(sch.get(channels).extent)
    width = next(v for v in (32, 16, 8, 4, 1) if extent % v == 0)
    _, vector = sch.split(channels, [None, width])
    sch.vectorize(vector)
    sch.parallel(sch.fuse(b, i))
    return sch.mod["main"]


def _blocks(sch):
    """The blocks of a PrimFunc made by ``te.create_prim_func``, in program order."""
    return list(sch.get_child_blocks(sch.get_sblock("root")))


@dataclass(frozen=True)
class ConvChoice:
    """How one convolution may be built: ``make(block)`` is its scheduled PrimFunc for any of
    ``options`` (the blocks a search may measure, the ``default`` first): register blocks
    ``(vectors, columns)`` of a vector kernel, nearest the default's size first, or
    :class:`~nindsl.tvm.amx_kernels.TileBlock` of a tile kernel, on the instructions named
    ``instructions``."""

    instructions: str
    default: object
    options: tuple
    make: Callable = field(compare=False, repr=False)

    def func(self, block=None):
        """The PrimFunc with ``block`` where it is one of :attr:`options` (a cached or passed
        block may be for other instructions), else with the default."""
        return self.make(block if block in self.options else self.default)


def block_json(block) -> list[int]:
    """A register or tile block as the cache and the manifest write it."""
    return list(block) if isinstance(block, tuple) else list(astuple(block))


class Int8Kernels:
    """Builds the kernels of one plan, and the Relax module calling them. The numbers between
    kernels are int8 codes here; :class:`nindsl.tvm.bf16.Bf16Kernels` overrides the methods
    from :attr:`dtype` to :meth:`conv_kernel` for bf16 ones."""

    precision = "int8"
    dtype = "uint8"  # the activations' storage
    fold_block = FOLD_BLOCK

    @staticmethod
    def isa_for(profile: Profile):
        """The target of ``profile`` and the instructions these kernels take there."""
        return isa_of(profile)

    def __init__(self, quantized: Plan, network: ir.Network, batch, isa: Isa, blocks: dict | None = None):
        self.plan, self.network, self.batch, self.isa = quantized, network, batch, isa
        self.blocks = blocks or {}  # convolution output → its block (ConvChoice.options), from a measured search
        self.weights: dict[str, np.ndarray] = {}
        self.order: list[str] = []

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

    def choice(self, conv: ConvShape, numbers, tiles: Callable, vector: Callable) -> tuple[ConvChoice, ConvShape]:
        """How ``conv`` may be built, from its tile kernel (``tiles(block)``) or its vector kernel
        (``vector(block)``), and the layout its weights are packed for: AMX tiles where the target
        has them and they fit, else the vector kernel. Where the vector kernel reads the same
        packed weights (the input's channels in whole blocks), its register blocks are options of
        a tiled convolution too, its default second: a search may find it faster (a folded input
        layer's narrow tiles do a quarter of a full tile's work)."""
        isa = self.isa.vector
        default = register_block(conv, isa)
        size = default[0] * default[1]
        registers = tuple(sorted(register_blocks(conv, isa), key=lambda b: (abs(b[0] * b[1] - size), b != default)))
        if not (self.isa.tiles and amx_kernels.tile_block(conv, numbers)):
            return ConvChoice(isa.name, default, registers, vector), conv
        layout = amx_kernels.weight_layout(conv)
        if weight_shape(layout, isa) != weight_shape(conv, isa):
            registers = ()
        blocks = amx_kernels.tile_blocks(conv, numbers)
        options = (blocks[0], *registers[:1], *blocks[1:], *registers[1:])

        def make(block):
            return tiles(block) if isinstance(block, amx_kernels.TileBlock) else vector(block)
        return ConvChoice(self.isa.name, blocks[0], options, make), layout

    def weight(self, name: str, value: np.ndarray) -> str:
        self.weights[name] = np.ascontiguousarray(value)
        self.order.append(name)
        return name

    def quantize_input(self, shape):
        from tvm import te, tirx

        n, c, h, w = shape
        name = self.plan.input
        x = te.placeholder((n, c, h, w), "float32", name="x")
        block = self.isa.group
        blocks = -(-c // block)
        out = te.compute((n, h, w, blocks, block), lambda b, i, j, g, k: te.if_then_else(
            g * block + k < c, self.encode(x[b, te.min(g * block + k, c - 1), i, j], name),
            tirx.const(self.zero(name), self.dtype)), name="quantize")
        return _parallel(te.create_prim_func([x, out])), (n, h, w, blocks, block)

    def quantize_folded(self, shape, step):
        """The input quantized with the first convolution's column taps folded into its channels:
        ``[N, H + 2p, OW, T/8, 8]``, where output column ``j`` holds tap ``kx`` of channel ``ch``
        at ``kx·C + ch`` (``T = KW·C`` padded to whole 8s) and the zero point where the window
        reaches the padding. The convolution then runs as ``K × 1`` over whole paired steps;
        unfolded, 3 channels in 4-channel blocks wasted a quarter of every step, unpaired.
        The input is quantized once (``[N, H, W, C]``), then gathered, each pixel's ``T`` bytes
        unrolled so that every tap and channel is a constant."""
        from tvm import s_tir, te, tirx

        n, c, h, w = shape
        k, stride, pad = _square(step)
        width = (w + 2 * pad - k) // stride + 1
        taps = k * c
        name = self.plan.input
        x = te.placeholder(shape, "float32", name="x")
        q = te.compute((n, h, w, c), lambda b, i, j, ch: self.encode(x[b, ch, i, j], name), name="quantize")

        def gather(b, i, j, g, e):
            t = g * self.fold_block + e
            row, column = i - pad, j * stride + tirx.floordiv(t, c) - pad
            inside = tirx.all(t < taps, row >= 0, row < h, column >= 0, column < w)
            read = q[b, tirx.min(tirx.max(row, 0), h - 1), tirx.min(tirx.max(column, 0), w - 1), tirx.floormod(t, c)]
            return te.if_then_else(inside, read, tirx.const(self.zero(name), self.dtype))

        folded = (n, h + 2 * pad, width, -(-taps // self.fold_block), self.fold_block)
        out = te.compute(folded, gather, name="fold")
        sch = s_tir.Schedule(te.create_prim_func([x, out]))
        for name in ("quantize", "fold"):  # rows of images in parallel
            b, i, *_ = sch.get_loops(sch.get_sblock(name))
            sch.parallel(sch.fuse(b, i))
        _, _, g, e = sch.get_loops(sch.get_sblock("fold"))
        sch.unroll(sch.fuse(g, e))  # a pixel's taps: each its own constant column and channel
        return sch.mod["main"], folded

    def conv(self, step, shape, in_block: int, folded: bool = False):
        """One convolution and its requantize step, on ``shape`` (``folded``: the input layer
        reading :meth:`quantize_folded`'s layout)."""
        n, h, w, _, _ = shape
        o, c, k, _ = step.weight.shape
        _, stride, pad = _square(step)
        zero_in, zero_out = self.zero(step.input), self.zero(step.output)
        weight = step.weight
        if folded:  # [O, C, K, KW] → [O, KW·C, K, 1], as the folded input's channels are ordered
            weight = step.weight.transpose(0, 3, 1, 2).reshape(o, k * c, k, 1)
            conv = ConvShape(n, k * c, h, w, o, k, stride, 0, in_block, zero_in, zero_out,
                             zero_out if step.relu else 0, kernel_width=1, stride_width=1)
        else:
            conv = ConvShape(n, c, h, w, o, k, stride, pad, in_block, zero_in, zero_out, zero_out if step.relu else 0)
        choice, parts = self.conv_kernel(step, conv, weight)
        names = [self.weight(f"{step.output}.{part}", value) for part, value in parts]
        oh, ow = conv.out_size
        return choice, names, (n, oh, ow, -(-o // self.isa.lanes), self.isa.lanes), conv

    def pool(self, step, shape, block: int):
        """Max or average pooling over the blocked NHWC layout, with ONNX's (and Caffe's)
        windows: ``ceil_mode`` rounding, and an average divided by the window clipped to the
        padded input (``count_include_pad``) or to the input."""
        from tvm import te, tirx

        a = step.attributes
        n, h, w, groups, _ = shape
        (kh, kw), (sh, sw) = a["kernel_shape"], a.get("strides", [1, 1])
        top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
        rounding = (lambda v: -(-v // 1)) if a.get("ceil_mode", 0) else (lambda v: v)
        oh = int(rounding((h + top + bottom - kh) / sh)) + 1
        ow = int(rounding((w + left + right - kw) / sw)) + 1
        if a.get("ceil_mode", 0):  # a last window must start inside the input or its top/left padding
            oh -= (oh - 1) * sh >= h + top
            ow -= (ow - 1) * sw >= w + left
        x = te.placeholder(shape, self.dtype, name="x")
        taps = [(ry, rx) for ry in range(kh) for rx in range(kw)]  # unrolled: no reduction, one vector per pixel

        def tap(b, i, j, g, k, ry, rx):
            """The tap's value, read at the nearest input pixel, and whether it is inside the input."""
            row, column = i * sh - top + ry, j * sw - left + rx
            value = x[b, tirx.min(tirx.max(row, 0), h - 1), tirx.min(tirx.max(column, 0), w - 1), g, k]
            return value, tirx.all(row >= 0, row < h, column >= 0, column < w)

        def extent(start, size: int, end: int):
            return tirx.min(start + size, end) - tirx.max(start, 0)

        if step.op == "maxpool":
            def pool(b, i, j, g, k):
                # a tap outside the input reads the nearest pixel, which is in the same window
                # (every window starts inside the input or its padding): the maximum is unchanged
                values = [tap(b, i, j, g, k, ry, rx)[0] for ry, rx in taps]
                result = values[0]
                for value in values[1:]:
                    result = self.larger(result, value)
                return result
            out = te.compute((n, oh, ow, groups, block), pool, name="pool")
        else:
            def average(b, i, j, g, k):
                values, valid = zip(*(tap(b, i, j, g, k, ry, rx) for ry, rx in taps))
                inside = extent(i * sh - top, kh, h) * extent(j * sw - left, kw, w)  # taps in the input
                if a.get("count_include_pad", 0):  # divided by the window clipped to the padded input
                    count = (tirx.min(i * sh - top + kh, h + bottom) - (i * sh - top)) * \
                        (tirx.min(j * sw - left + kw, w + right) - (j * sw - left))
                else:
                    count = inside
                return self.average(list(values), list(valid), inside, count, step.input)
            out = te.compute((n, oh, ow, groups, block), average, name="pool")
        return _schedule_pool(te.create_prim_func([x, out])), (n, oh, ow, groups, block)

    def head(self, shape, block: int, classes: int):
        from tvm import te, topi

        n, h, w, _, _ = shape
        tensor = self.plan.steps[-1].input
        x = te.placeholder(shape, self.dtype, name="x")
        i = te.reduce_axis((0, h), name="i")
        j = te.reduce_axis((0, w), name="j")
        total = te.compute((n, classes), lambda b, c: te.sum(
            self.summand(x[b, i, j, c // block, c % block]), axis=[i, j]), name="sum")
        mean = te.compute((n, classes), lambda b, c: self.real_mean(total[b, c], h * w, tensor), name="mean")
        out = topi.nn.softmax(mean, axis=1) if self.plan.softmax else mean
        return _parallel(te.create_prim_func([x, out])), (n, classes)


def _square(step) -> tuple[int, int, int]:
    """A convolution's kernel, stride and padding, each the same on every side; an E0504
    error for any other convolution."""
    attributes = step.attributes
    pads = list(attributes.get("pads", [0, 0, 0, 0]))
    strides = list(attributes.get("strides", [1, 1]))
    if len(set(pads)) != 1 or len(set(strides)) != 1 or any(d != 1 for d in attributes.get("dilations", [1])) \
            or attributes.get("group", 1) != 1 or step.weight.shape[2] != step.weight.shape[3]:
        raise NindslError.one("E0504", f"int8 builds take square, symmetric convolutions; `{step.output}` "
                                       f"has pads {pads}, strides {strides}", None,
                              "build this network with --precision fp32")
    return step.weight.shape[2], strides[0], pads[0]


def folds(network: ir.Network, quantized: Plan) -> bool:
    """Whether the input layer reads a folded input (:meth:`Int8Kernels.quantize_folded`): a
    convolution wider than one tap over fewer input channels than one paired step."""
    first = quantized.steps[0] if quantized.steps else None
    return (first is not None and first.op == "conv" and first.input == quantized.input
            and network.input.shape[1] < FOLD_BLOCK and first.weight.shape[3] > 1)


@dataclass(frozen=True)
class Kernel:
    """One call of the int8 network: a scheduled PrimFunc, the weights it takes after its
    input, and its output."""

    name: str
    func: object  # tvm.tirx.PrimFunc
    weights: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    conv: ConvShape | None = None  # a convolution's sizes
    output: str = ""  # the tensor it computes, as the plan names it
    choice: ConvChoice | None = None  # a convolution's blocks, which the search measures


def kernels(network: ir.Network, quantized: Plan, batch, isa: Isa,
            blocks: dict | None = None, make=Int8Kernels) -> tuple[list[Kernel], dict, list[str]]:
    """The kernels of ``quantized`` in order, and the packed weights (by name, and in the
    order the library takes them); ``batch`` is a number or a symbolic ``tirx.Var``; ``make``
    is :class:`Int8Kernels` or a subclass for other numbers."""
    maker = make(quantized, network, batch, isa, blocks)
    _, c, h, w = network.input.shape
    folded = folds(network, quantized)
    if folded:
        func, shape = maker.quantize_folded((batch, c, h, w), quantized.steps[0])
    else:
        func, shape = maker.quantize_input((batch, c, h, w))
    dtype = maker.dtype
    calls = [Kernel("quantize_input", func, (), shape, dtype)]
    block = maker.fold_block if folded else isa.group
    classes = int(network.output.shape[-1])
    for k, step in enumerate(quantized.steps):
        if step.op == "conv":
            choice, names, shape, conv = maker.conv(step, shape, block, folded and k == 0)
            calls.append(Kernel(f"conv{k}_{_label(step.output)}", choice.func(maker.blocks.get(step.output)),
                                tuple(names), shape, dtype, conv, step.output, choice))
            block = isa.lanes
        elif step.op in ("maxpool", "avgpool"):
            func, shape = maker.pool(step, shape, block)
            calls.append(Kernel(f"{step.op}{k}", func, (), shape, dtype))
        else:
            func, shape = maker.head(shape, block, classes)
            calls.append(Kernel("head", func, (), shape, "float32"))
    return calls, maker.weights, maker.order


def _label(tensor: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in tensor)


def isa_of(profile: Profile):
    """The target of ``profile`` and its int8 instructions; a clear error without AVX2. AMX on
    this machine is used where :func:`nindsl.tvm.amx_kernels.works_here` says it computes
    what it should, else VNNI."""
    import tvm

    target = tvm.target.Target(resolved_target(profile))
    isa = int8_isa(target)
    if isa is not None and isa.tiles and runs_here(target) and not amx_kernels.works_here(amx_kernels.INT8, target):
        isa = isa.vector
    if isa is None:
        cpu = target.attrs.get("mcpu") or "the host"
        raise NindslError.one("E0504", f"`{cpu}` (target `{profile.name}`) has no AVX2: int8 would not be faster than "
                                       "float32 there", None, "build with --precision fp32")
    return target, isa


def check_precision(precision: str, profile: Profile, tuned: bool = False) -> None:
    """Refuse a precision the target's CPU cannot run fast, saying what it can run instead, and
    ``tuned`` builds for a CPU this machine cannot measure (:func:`check_tunable`)."""
    if profile.device != "cpu":
        raise NindslError.one("E0504", f"--precision {precision} builds are for CPU targets; `{profile.name}` runs on "
                                       f"{profile.device}", None, "on a GPU use --precision fp16 (tensor cores) or "
                                                                  "fp32; or build for --target llvm")
    if precision == "int8":
        target, isa = isa_of(profile)  # (refuses a CPU without AVX2)
        check_tunable(target, isa.name, tuned, precision)
        return
    import tvm
    from tvm.target import codegen

    from .bf16_kernels import bf16_isa

    target = tvm.target.Target(resolved_target(profile))
    cpu = target.attrs.get("mcpu", "the host")
    has = [f for f in ("avx512bf16", "amx-bf16") if codegen.llvm_cpu_has_features(f, target)]
    try:
        alternative = f"int8 ({isa_of(profile)[1].name}) or fp32"
    except NindslError:
        alternative = "fp32"
    if not has:
        raise NindslError.one("E0504", f"`{cpu}` has no bfloat16 instructions (AVX512-BF16 or AMX): bf16 would run "
                                       f"slower than float32 there", None,
                              f"this CPU runs --precision {alternative}")
    if "avx512bf16" not in has:
        raise NindslError.one("E0504", f"`{cpu}` has AMX but not AVX512-BF16, which nindsl's bf16 kernels use",
                              None, f"use --precision {alternative}")
    check_tunable(target, bf16_isa(target).name, tuned, precision)


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
    calls, weights, order = kernels(network, quantized, size, isa, blocks)
    return Build(compile_chain(network, quantized.input, calls, weights, order, size, target), qdq_model, weights,
                 order, target, False, batch)


def compile_chain(network: ir.Network, input_name: str, calls: list[Kernel], weights: dict, order: list[str], size,
                  target):
    """The Relax module calling ``calls`` one after another on the float32 input (``size``
    images: a number or a symbolic ``tirx.Var``), compiled for ``target``."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic.pipeline import dataflow_lower_passes, finalize_passes

    _, c, h, w = network.input.shape
    x = relax.Var(input_name, relax.TensorType((size, c, h, w), "float32"))
    params = {name: relax.Var(_label(name), relax.TensorType(weights[name].shape, str(weights[name].dtype)))
              for name in order}
    bb = relax.BlockBuilder()
    with bb.function("main", [x, *params.values()]):
        with bb.dataflow():
            value = x
            for call in calls:
                gv = bb.add_func(call.func.with_attr("global_symbol", call.name), call.name)
                value = bb.emit(relax.call_tir(gv, [value, *(params[n] for n in call.weights)],
                                               relax.TensorType(call.shape, call.dtype)))
            out = bb.emit_output(value)
        bb.emit_func_output(out)
    # The kernels are scheduled: lower the calls as they are (no fusion, no default schedules).
    pipeline = tvm.transform.Sequential(dataflow_lower_passes(target) + finalize_passes(target)
                                        + [noalias_single_buffer_functions()])
    return tvm.compile(bb.get(), target=target, relax_pipeline=pipeline)


def _compiled(func, target):
    """One scheduled PrimFunc, compiled alone, as a callable."""
    import tvm

    return tvm.compile(tvm.IRModule({"main": func}), target=target)["main"]


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
                 repeats: int = 10, make=Int8Kernels) -> list[tuple[str, float]]:
    """Each kernel's median milliseconds, run alone on zeros: where a build's time goes."""
    import tvm

    target, isa = make.isa_for(profile)
    calls, weights, _ = kernels(network, quantized, batch, isa, blocks, make)
    device = tvm.cpu(0)
    return [(call.name, _median_ms(_compiled(call.func, target), _arguments(call, weights, shape, dtype, device),
                                   repeats))
            for call, shape, dtype in _with_inputs(network, calls, batch)]


def search_blocks(network: ir.Network, quantized: Plan, profile: Profile, batch: int, candidates: int = 8,
                  progress: Progress = SILENT, cache: Path | None = None, make=Int8Kernels,
                  isa: Isa | None = None) -> dict:
    """Tuning for int8 and bf16 (``make``: :class:`Int8Kernels` or a subclass): each
    convolution's block, measured. Up to ``candidates`` blocks per convolution (the register
    blocks nearest the default's size first, or the AMX tile blocks) are compiled and timed alone
    on this machine at ``batch``, in interleaved rounds; the fastest is kept where it beats the
    default clearly (:func:`choose_block`). ``cache`` (a JSON file beside the float32 tuning
    database) keeps each choice by precision, instructions and convolution shape: a rebuild
    measures nothing. ``isa``: other instructions than the target's (the tests' emulations)."""
    import tvm

    from ..kernel.io import atomic_write_text, ensure_folder, read_json_object

    target, isa = (tvm.target.Target(resolved_target(profile)), isa) if isa else make.isa_for(profile)
    known = read_json_object(cache) if cache else {}
    device = tvm.cpu(0)
    calls, weights, _ = kernels(network, quantized, batch, isa, None, make)
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
        functions = {block: _compiled(choice.make(block), target) for block in choice.options[:candidates]}
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


def check_tunable(target, instructions: str, tuned: bool, precision: str) -> None:
    """Refuse a ``tuned`` build where this machine cannot run ``target``: the search measures
    the kernels here."""
    if tuned and not runs_here(target):
        raise NindslError.one("E0504", f"--tune measures the {precision} kernels on this machine, which cannot run "
                                       f"{instructions} (the target's instructions)", None,
                              "compile without --tune, or tune on a machine with the target's CPU")


def measured_blocks(network: ir.Network, plan: Plan, profile: Profile, batch: int | None, db: str | None,
                    progress: Progress = SILENT, make=Int8Kernels) -> dict:
    """The blocks :func:`search_blocks` measures, cached in the tuning database folder ``db``
    (None: the default one)."""
    from .tune import database_dir

    return search_blocks(network, plan, profile, batch or 1, progress=progress,
                         cache=database_dir(profile, db) / BLOCKS_FILE, make=make)


@dataclass(frozen=True)
class QuantizedBuild:
    """An int8 (or bf16) build, the plan it runs, and how it compares with float32."""

    built: Build
    plan: Plan
    isa: Isa
    agreement: Agreement
    blocks: dict


def run_batched(run, images: np.ndarray, batch: int | None, step: int = 64) -> np.ndarray:
    """Outputs of ``images`` through a build of a fixed ``batch`` (the last chunk padded), or of
    any batch size, ``step`` images at a time."""
    step = batch or step
    outputs = []
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        if batch is not None and len(chunk) < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outputs.append(run(np.ascontiguousarray(chunk, np.float32))[:len(images) - start])
    return np.concatenate(outputs)


def build_quantized(network: ir.Network, profile: Profile, weights, seed: int, batch: int | None,
                    calibration: Calibration, load, tuning=None, progress: Progress = SILENT) -> QuantizedBuild:
    """Calibrate, quantize and compile ``network`` for int8, then compare it with float32
    (ONNX Runtime) on the calibration's held-out images, run through ``load(build)``
    (:meth:`nindsl.tvm.artifact.Runner.from_build`). With ``tuning`` (TuneOptions), each
    convolution's register or tile block is measured (:func:`search_blocks`), cached in its database.
    A target whose instructions this CPU lacks is judged by the same plan built for this CPU:
    the kernels' integers are exact, whichever instructions compute them."""
    import tvm

    from ..onnx.lower import to_onnx
    from ..onnx.quantize import agreement, images_per_batch, in_batches, quantize, to_qdq
    from ..onnx.runtime import runner
    from ..weights import resolve

    target, isa = isa_of(profile)
    check_tunable(target, isa.name, tuning is not None, "int8")
    model = to_onnx(network, resolve(network, weights, seed))
    progress.note(f"calibrating int8 ({isa.name}) on {len(calibration.images):,} images from {calibration.source} ...")
    quantized = quantize(model, calibration.images, isa.weight_levels)
    blocks = measured_blocks(network, quantized, profile, batch, tuning.db, progress) if tuning else {}
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
