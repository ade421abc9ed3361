"""Integer kernels for int8 builds on CPUs: a quantized convolution with its requantize step,
and the tensor intrinsics its inner loop is made of.

Activations are unsigned 8-bit numbers in NHWC blocks (``[N, H, W, C/b, b]``: a pixel's
channels adjacent); weights are signed 8-bit, packed ``[O/lanes, K, KW, C/step, step/4, lanes, 4]``
(:func:`weight_shape`) so that the weights one step multiplies are 32 (or 64) adjacent bytes per
4 input channels. The inner step is a dot product of 4 input channels (one 32-bit broadcast),
or 8, with ``lanes`` output channels, added to ``lanes`` 32-bit sums in a vector register:

- AVX-512 VNNI: ``vpdpbusd`` (one instruction, 16 lanes); AVX-VNNI: the same on 8 lanes;
- AVX-512BW: ``vpmaddubsw`` + ``vpmaddwd`` (16 lanes);
- AVX2: ``vpmaddubsw`` + ``vpmaddwd`` (8 lanes), the fallback every x86-64 CPU of the last
  decade has. TVM ships no intrinsic for it.

``vpmaddubsw`` adds two products into a signed 16-bit number with saturation; activations are
quantized to 0..127 (7 bits) and weights to -127..127, so a pair sums to at most
2 × 127 × 127 = 32258 and never saturates. Where 8 channels make one step, two such sums are
added in 16 bits before one ``vpmaddwd`` widens them, exact with weights within ±63
(:attr:`Isa.steps`). The instruction set is read from the target's features
(``mattr``/``mcpu``), never from the machine that compiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ACTIVATION_MAX = 127  # 7-bit activations: vpmaddubsw never saturates (see the module's docstring)


@dataclass(frozen=True)
class Isa:
    """The int8 dot-product instructions a target has: the vector lanes of 32-bit sums, and
    whether its multiply-add saturates in 16 bits (``vpmaddubsw``: every x86 int8 path but VNNI).
    A tile ISA (AMX) names the vector instructions its convolutions that tiles do not fit take
    (``untiled``)."""

    name: str
    lanes: int
    saturates: bool
    group: int = 4  # input channels in one 32-bit broadcast: 4 bytes (int8), 2 bfloat16 numbers
    width: int = 1  # bytes per number
    untiled: "Isa | None" = None
    emulated: bool = False  # tile operations emulated in memory (runs anywhere; tests only)
    fallback: str = field(default="", compare=False)  # why these replaced the instructions the target meant

    @property
    def tiles(self) -> bool:
        """Whether convolutions that fit take AMX tile kernels (:mod:`nindsl.tvm.narrow.kernels.amx`)."""
        return self.untiled is not None

    @property
    def vector(self) -> "Isa":
        """The vector instructions: this ISA's, or a tile ISA's for the convolutions tiles do not fit."""
        return self.untiled or self

    def intrinsic(self, step: int) -> str:
        """The tensor intrinsic of one ``lanes × step`` dot product (``step`` input channels)."""
        return f"nindsl_dot_{self.lanes}x{step}_{self.name}"

    @property
    def steps(self) -> tuple[int, ...]:
        """The input channels one intrinsic call can take: 8 adds two 4-channel products in
        16 bits before widening them (one ``vpmaddwd`` for two ``vpmaddubsw``), exact only
        with weights within ±63 (:data:`WEIGHT_LEVELS`)."""
        return (2 * self.group, self.group) if self.saturates else (self.group,)

    @property
    def weight_levels(self) -> int:
        """The largest weight magnitude: 63 where two 16-bit products are added, else 127."""
        return PAIRED_WEIGHT_LEVELS if self.saturates else ACTIVATION_MAX


from ....onnx.quantize import PAIRED_WEIGHT_LEVELS  # noqa: E402  2 × (2 × 127 × 63) = 32004 < 32767: two vpmaddubsw sums add without overflow

VECTOR_ISAS = (Isa("avx512vnni", 16, False), Isa("avx512bw", 16, True), Isa("avxvnni", 8, False),
               Isa("avx2", 8, True))
# AMX (Sapphire Rapids and later Xeons): convolutions that fit take tile kernels
# (nindsl.tvm.narrow.kernels.amx' tdpbusd), the rest AVX512-VNNI's, which every AMX CPU has.
AMX = Isa("amx-int8", 16, False, untiled=VECTOR_ISAS[0])
ISAS = (AMX, *VECTOR_ISAS)  # the best first
# Plain loops at 16 lanes, which LLVM compiles for any CPU: tests run the 16-lane layouts with
# it on machines without AVX-512 (never chosen for a build). EMULATED_AMX: the tile kernels on
# memory, the rest portable.
PORTABLE = Isa("portable", 16, False)
EMULATED_AMX = Isa("amx-int8-emulated", 16, False, untiled=PORTABLE, emulated=True)


def int8_isa(target) -> Isa | None:
    """The best int8 instructions of ``target``'s CPU, or None when it has no AVX2."""
    from tvm.target import codegen

    register_intrinsics()
    for isa in ISAS:
        if codegen.llvm_cpu_has_features(isa.name, target):
            return isa
    return None



_registered = False  # whether the intrinsics are registered with TVM: once per process, as TVM keeps them


def register_intrinsics() -> None:
    """Register the dot-product intrinsics once per process. TVM 0.27 ships VNNI and
    AVX-512BW ones whose sums live in global memory; these keep them in registers (a
    ``local`` buffer), and add AVX2 and the paired steps."""
    global _registered
    if _registered:
        return
    from tvm.s_tir import TensorIntrin

    from ...compat import tvmscript_frames

    with tvmscript_frames():
        for isa in (*VECTOR_ISAS, PORTABLE):
            for step in isa.steps:
                TensorIntrin.register(isa.intrinsic(step), *_dot_functions(isa, step))
    _registered = True


def _dot_functions(isa: Isa, step: int):
    """The (description, implementation) of one ``lanes × step`` uint8·int8 → int32 dot product;
    the weights are ``[step / 4, lanes, 4]``."""
    from tvm.script import tirx as T

    lanes, width, halves = isa.lanes, isa.lanes * 4, step // 4
    wide, pairs, sums, bytes_ = f"int8x{width}", f"int16x{2 * lanes}", f"int32x{lanes}", f"uint8x{width}"

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((step,), "uint8", offset_factor=1),
             b: T.Buffer((halves, lanes, 4), "int8", offset_factor=1),
             c: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:step], b[0:halves, 0:lanes, 0:4])
            T.writes(c[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, step):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vk // 4, vi, vk % 4], "int32")

    if isa is PORTABLE:
        return desc, desc
    if isa.name in ("avx512vnni", "avxvnni"):
        from tvm.target import codegen

        # LLVM 20 takes the two byte operands of vpdpbusd as <64 x i8>; older LLVMs, as <16 x i32>
        operands = bytes_ if codegen.llvm_version_major() >= 20 else sums
        signed = wide if codegen.llvm_version_major() >= 20 else sums
        dot = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"  # (.256 is AVX-VNNI's too)

        @T.prim_func(s_tir=True)
        def impl(a: T.Buffer((step,), "uint8", offset_factor=1),
                 b: T.Buffer((halves, lanes, 4), "int8", offset_factor=1),
                 c: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")) -> None:
            with T.sblock("root"):
                T.reads(c[0:lanes], a[0:step], b[0:halves, 0:lanes, 0:4])
                T.writes(c[0:lanes])
                a32 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
                c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(dot), c.vload([0], dtype=sums),
                    T.reinterpret(T.broadcast(a32, lanes), dtype=operands),
                    T.reinterpret(b.vload([0, 0, 0], dtype=wide), dtype=signed), dtype=sums)
        return desc, impl

    madd_bytes = "llvm.x86.avx512.pmaddubs.w.512" if lanes == 16 else "llvm.x86.avx2.pmadd.ub.sw"
    madd_words = "llvm.x86.avx512.pmaddw.d.512" if lanes == 16 else "llvm.x86.avx2.pmadd.wd"

    if step == 4:
        @T.prim_func(s_tir=True)
        def impl(a: T.Buffer((step,), "uint8", offset_factor=1),
                 b: T.Buffer((halves, lanes, 4), "int8", offset_factor=1),
                 c: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")) -> None:
            with T.sblock("root"):
                T.reads(c[0:lanes], a[0:step], b[0:halves, 0:lanes, 0:4])
                T.writes(c[0:lanes])
                a32 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
                products = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(madd_bytes), T.reinterpret(T.broadcast(a32, lanes), dtype=bytes_),
                    b.vload([0, 0, 0], dtype=wide), dtype=pairs)
                c[T.ramp(T.int32(0), 1, lanes)] += T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(madd_words), products, T.broadcast(T.int16(1), 2 * lanes), dtype=sums)
        return desc, impl

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((step,), "uint8", offset_factor=1),
             b: T.Buffer((halves, lanes, 4), "int8", offset_factor=1),
             c: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:step], b[0:halves, 0:lanes, 0:4])
            T.writes(c[0:lanes])
            low = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            high = T.reinterpret(a.vload([4], "uint8x4"), dtype="int32")
            first = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(madd_bytes), T.reinterpret(T.broadcast(low, lanes), dtype=bytes_),
                b.vload([0, 0, 0], dtype=wide), dtype=pairs)
            second = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(madd_bytes), T.reinterpret(T.broadcast(high, lanes), dtype=bytes_),
                b.vload([1, 0, 0], dtype=wide), dtype=pairs)
            c[T.ramp(T.int32(0), 1, lanes)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(madd_words), first + second, T.broadcast(T.int16(1), 2 * lanes),
                dtype=sums)
    return desc, impl


@dataclass(frozen=True)
class ConvShape:
    """One quantized convolution: sizes, and the integer zero points of its input and output."""

    batch: int
    channels: int  # input channels (before padding to whole blocks)
    height: int
    width: int
    out_channels: int
    kernel: int
    stride: int
    pad: int
    in_block: int  # channels per block of the input layout (4, or the lanes)
    zero_in: int  # the input's zero point: the value padding takes
    zero_out: int
    low: int  # the smallest output value: the zero point after a ReLU, else 0
    kernel_width: int = 0  # where it differs from ``kernel`` (a folded input layer's is 1)
    stride_width: int = 0

    @property
    def kw(self) -> int:
        return self.kernel_width or self.kernel

    @property
    def sw(self) -> int:
        return self.stride_width or self.stride

    @property
    def out_size(self) -> tuple[int, int]:
        return ((self.height + 2 * self.pad - self.kernel) // self.stride + 1,
                (self.width + 2 * self.pad - self.kw) // self.sw + 1)


def conv_func(shape: ConvShape, isa: Isa):
    """The PrimFunc of ``shape``: ``x`` uint8 ``[N, H, W, C/b, b]``, ``w`` int8 packed,
    ``bias`` int32 and ``scale`` float32 per output channel → uint8 ``[N, OH, OW, O/lanes, lanes]``.

    Both layouts are NHWC in memory (channels padded to whole blocks): the channels a pixel's
    dot products read are adjacent, so a reduction over channels walks memory in order.
    ``out = clip(round((Σ x·w + bias) · scale) + zero_out, low, 127)``: the bias holds the
    input zero point's correction (−zero_in · Σw), rounding is to nearest even, as in ONNX's
    QLinearConv."""
    from tvm import te, tirx

    s, lanes, b = shape, isa.lanes, shape.in_block
    step = conv_step(s, isa)
    blocks_in = -(-s.channels // step)  # step-channel groups of the reduction
    blocks_out = -(-s.out_channels // lanes)
    oh, ow = s.out_size
    x = te.placeholder((s.batch, s.height, s.width, -(-s.channels // b), b), "uint8", name="x")
    w = te.placeholder(weight_shape(s, isa), "int8", name="w")
    bias = te.placeholder((blocks_out * lanes,), "int32", name="bias")
    scale = te.placeholder((blocks_out * lanes,), "float32", name="scale")
    padded = padded_input(x, s, tirx.const(s.zero_in, "uint8"))
    rc = te.reduce_axis((0, blocks_in), name="rc")
    ry = te.reduce_axis((0, s.kernel), name="ry")
    rx = te.reduce_axis((0, s.kw), name="rx")
    ri = te.reduce_axis((0, step), name="ri")
    group = b // step  # step-channel groups per input block

    def dot(n, i, j, f, lane):
        block, at = (rc, ri) if group == 1 else (rc // group, (rc % group) * step + ri)
        value = padded[n, i * s.stride + ry, j * s.sw + rx, block, at]
        weight = w[f, ry, rx, rc, ri // 4, lane, ri % 4]
        return te.sum(value.astype("int32") * weight.astype("int32"), axis=[ry, rx, rc, ri])

    acc = te.compute((s.batch, oh, ow, blocks_out, lanes), dot, name="conv")

    def requantize(n, i, j, f, lane):
        o = f * lanes + lane
        value = tirx.nearbyint((acc[n, i, j, f, lane] + bias[o]).astype("float32") * scale[o])
        value = tirx.max(tirx.min(value + float(s.zero_out), float(ACTIVATION_MAX)), float(s.low))
        return value.astype("uint8")

    out = te.compute(acc.shape, requantize, name="requantize")
    return te.create_prim_func([x, w, bias, scale, out])


def padded_input(x, shape: ConvShape, fill):
    """``x`` (``[N, H, W, C/b, b]``) padded by ``shape.pad`` pixels of ``fill`` (the code of 0.0)
    on every side: the block ``pad`` that :func:`schedule_conv` schedules; ``x`` without padding."""
    from tvm import te, tirx

    p, s = shape.pad, shape
    if not p:
        return x
    return te.compute((s.batch, s.height + 2 * p, s.width + 2 * p, *x.shape[3:]),
                      lambda n, i, j, c, k: tirx.if_then_else(
                          tirx.all(i >= p, i < s.height + p, j >= p, j < s.width + p), x[n, i - p, j - p, c, k], fill),
                      name="pad")


def conv_step(shape: ConvShape, isa: Isa) -> int:
    """Input channels per intrinsic call: 8 where the ISA pairs products and the input's
    blocks hold whole groups of 8, else one broadcast's (4 int8, 2 bf16)."""
    return next(step for step in isa.steps if shape.in_block % step == 0 or step == isa.group)


def weight_shape(shape: ConvShape, isa: Isa) -> tuple[int, ...]:
    """Packed weights: ``[O/lanes, K, KW, C/step, step/g, lanes, g]`` (``g``: :attr:`Isa.group`):
    one call's weights adjacent, a tap's input channels next."""
    step, g = conv_step(shape, isa), isa.group
    return (-(-shape.out_channels // isa.lanes), shape.kernel, shape.kw, -(-shape.channels // step), step // g,
            isa.lanes, g)


def pack_weights(weight, shape: ConvShape, isa: Isa):
    """``[O, C, K, KW]`` (int8, or bf16 as uint16) → :func:`weight_shape`'s layout, zero-padded
    to whole blocks."""
    import numpy as np

    o, c, k, kw = weight.shape
    blocks_out, _, _, blocks_in, halves, lanes, g = weight_shape(shape, isa)
    padded = np.zeros((blocks_out * lanes, blocks_in * halves * g, k, kw), weight.dtype)
    padded[:o, :c] = weight
    packed = padded.reshape(blocks_out, lanes, blocks_in, halves, g, k, kw).transpose(0, 5, 6, 2, 3, 1, 4)
    return np.ascontiguousarray(packed)


# Register blocks an untuned build takes, the first that fits: one output column and several
# channel vectors was fastest on AVX2 (weights streamed from L1 as memory operands, the input
# broadcast reused across the vectors); 1×1 convolutions take more vectors still.
PREFERRED_BLOCKS = ((6, 1), (5, 1), (4, 1), (3, 2), (2, 4), (2, 2), (3, 1), (2, 1), (1, 4), (1, 2))
PREFERRED_POINTWISE = ((12, 1), (10, 1), (8, 1), *PREFERRED_BLOCKS)


def register_blocks(shape: ConvShape, isa: Isa) -> list[tuple[int, int]]:
    """Every register block worth measuring: (output-channel vectors, output columns) that
    divide the output evenly, with at most 12 sums (AVX2 has 16 vector registers, AVX-512 32:
    24 sums there), the rest holding weights, broadcasts and the constant ones."""
    accumulators = 24 if isa.lanes == 16 else 12
    _, width = shape.out_size
    blocks_out = -(-shape.out_channels // isa.lanes)
    return [(v, c) for v in range(1, accumulators + 1) for c in range(1, accumulators + 1)
            if blocks_out % v == 0 and width % c == 0 and v * c <= accumulators]


def register_block(shape: ConvShape, isa: Isa) -> tuple[int, int]:
    """The register block an untuned build takes: the first preferred one that fits (measured
    on nin_cifar10's layers on AVX2, docs/performance.md), else the largest that does."""
    fitting = register_blocks(shape, isa)
    preferred = PREFERRED_POINTWISE if shape.kw == 1 else PREFERRED_BLOCKS  # (and a folded K × 1 layer)
    return next((b for b in preferred if b in fitting), max(fitting, key=lambda b: (b[0] * b[1], b[1])))


# Input-channel steps the inner loop does per iteration (where they divide the channels): two
# let LLVM interleave one step's multiplies with the next's loads and halve the loop's own
# instructions (docs/performance.md, session 14).
UNROLL_CHANNELS = 2
L1_WEIGHTS = 16 * 1024  # half a 32 KiB L1 data cache (Intel cores since Sandy Bridge, AMD's since Zen)


def by_rows(shape: ConvShape, isa: Isa, vectors: int) -> bool:
    """Whether a register block's weights (every tap and input channel of its output
    channels) overflow the L1 cache: then the kernel row ``ry`` goes outside the output columns,
    so that one row of taps' weights stays in L1 while every column of the output row
    uses it, and the sums of the row wait in a row-sized buffer between kernel rows."""
    step = conv_step(shape, isa)
    channels = -(-shape.channels // step) * step
    return vectors * isa.lanes * shape.kernel * shape.kw * channels * isa.width > L1_WEIGHTS and shape.kernel > 1


def schedule_conv(func, shape: ConvShape, isa: Isa, block: tuple[int, int] | None = None):
    """The direct convolution schedule: a register block of ``vectors × lanes`` output channels
    × ``columns`` output pixels accumulates over every input channel and tap through the
    tensor intrinsic; the requantize step stores it. Where the block's weights overflow L1
    (:func:`by_rows`), the block's sums are kept for a whole output row across the kernel's rows."""
    from tvm import s_tir

    register_intrinsics()
    vectors, columns = block or register_block(shape, isa)
    rows = by_rows(shape, isa, vectors)
    sch = s_tir.Schedule(func)
    conv = sch.get_sblock("conv")
    n, i, j, f, lane, ry, rx, rc, ri = sch.get_loops(conv)
    fo, fi = sch.split(f, [None, vectors])
    jo, ji = sch.split(j, [None, columns])
    sch.reorder(n, fo, i, *((ry, jo) if rows else (jo, ry)), rx, rc, fi, ji, lane, ri)
    local = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_inline(sch.get_consumers(local)[0])  # requantize (or round) as the block is stored
    sch.reverse_compute_at(local, i if rows else jo, preserve_unit_loops=True)
    sch.vectorize(sch.get_loops(local)[-1])
    sch.parallel(sch.fuse(n, fo, i))
    init = sch.decompose_reduction(conv, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(fi)
    sch.unroll(ji)
    if UNROLL_CHANNELS > 1 and _extent(sch, rc) % UNROLL_CHANNELS == 0:
        sch.unroll(sch.split(rc, [None, UNROLL_CHANNELS])[1])
    sch.tensorize(lane, isa.intrinsic(conv_step(shape, isa)))
    if shape.pad:
        pad = sch.get_sblock("pad")
        loops = sch.get_loops(pad)
        sch.parallel(sch.fuse(*loops[:2]))
        sch.vectorize(loops[-1])
    return sch.mod["main"]


def _extent(sch, loop) -> int:
    """The number of iterations of ``loop`` (a constant in these kernels)."""
    return int(sch.get(loop).extent)
