"""The chain every narrow CPU build is: a quantized plan (:class:`nindsl.onnx.quantize.Plan`) as
kernels over a blocked NHWC layout (``[N, H, W, C/b, b]``: channels padded to whole blocks of
``b``, 4 for the input, the vector lanes after a convolution), called one after another by one
Relax function:

    quantize the input → [convolution + requantize | max pool | average pool]… → head

:class:`Chain` builds the kernels from number methods that a precision gives
(:class:`nindsl.tvm.narrow.int8.Int8Kernels`, :class:`nindsl.tvm.narrow.bf16.Bf16Kernels`);
:func:`kernels` lists them, :func:`compile_chain` compiles them. The weights are packed once,
at build time, and passed to the library at run time as for float32 builds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass, field

import numpy as np

from ...kernel.diagnostics import NindslError
from ...language import ir
from ...onnx.quantize import Plan
from ..compat import cpu_lowering_passes, noalias_single_buffer_functions
from ..profiles import runs_here
from .kernels import amx as amx_kernels
from .kernels.int8 import ConvShape, Isa, register_block, register_blocks, weight_shape

FOLD_BLOCK = 8  # a folded input's (tap, channel) pairs come in 8s: whole paired steps


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
    :class:`~nindsl.tvm.narrow.kernels.amx.TileBlock` of a tile kernel, on the instructions named
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


class Chain:
    """Builds the kernels of one plan, and the Relax module calling them, from the number
    methods a precision defines: :attr:`precision`, :attr:`dtype` (the activations' storage),
    :meth:`isa_for`, :meth:`encode`, :meth:`zero`, :meth:`larger`, :meth:`average`,
    :meth:`summand`, :meth:`real_mean` and :meth:`conv_kernel`
    (:class:`nindsl.tvm.narrow.int8.Int8Kernels` has them all, for int8 codes)."""

    precision: str
    dtype: str
    fold_block = FOLD_BLOCK

    def __init__(self, quantized: Plan, network: ir.Network, batch, isa: Isa, blocks: dict | None = None):
        self.plan, self.network, self.batch, self.isa = quantized, network, batch, isa
        self.blocks = blocks or {}  # convolution output → its block (ConvChoice.options), from a measured search
        self.weights: dict[str, np.ndarray] = {}
        self.order: list[str] = []

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
            blocks: dict | None = None, *, make: type[Chain]) -> tuple[list[Kernel], dict, list[str]]:
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


def compile_chain(network: ir.Network, input_name: str, calls: list[Kernel], weights: dict, order: list[str], size,
                  target):
    """The Relax module calling ``calls`` one after another on the float32 input (``size``
    images: a number or a symbolic ``tirx.Var``), compiled for ``target``."""
    import tvm
    from tvm import relax

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
    pipeline = tvm.transform.Sequential(cpu_lowering_passes(target) + [noalias_single_buffer_functions()])
    return tvm.compile(bb.get(), target=target, relax_pipeline=pipeline)


def compiled(func, target):
    """One scheduled PrimFunc, compiled alone, as a callable."""
    import tvm

    return tvm.compile(tvm.IRModule({"main": func}), target=target)["main"]


def check_tunable(target, instructions: str, tuned: bool, precision: str) -> None:
    """Refuse a ``tuned`` build where this machine cannot run ``target``: the search measures
    the kernels here."""
    if tuned and not runs_here(target):
        raise NindslError.one("E0504", f"--tune measures the {precision} kernels on this machine, which cannot run "
                                       f"{instructions} (the target's instructions)", None,
                              "compile without --tune, or tune on a machine with the target's CPU")
