"""bfloat16 kernels for bf16 builds on CPUs: a direct convolution over bf16 activations and
weights that sums in float32, adds the bias, applies the ReLU and rounds to bf16 as it stores;
and the dot-product step it is made of.

A bf16 number is the top half of a float32: stored here as its 16 bits (``uint16``), it becomes
a float32 by a 16-bit shift, and a float32 becomes one by rounding its low half away (to
nearest even). Activations are NHWC blocks as in int8 builds (``[N, H, W, C/b, b]``); weights
are packed ``[O/lanes, K, KW, C/2, 1, lanes, 2]`` (:func:`nindsl.tvm.narrow.kernels.int8.weight_shape`
with two channels per 32-bit broadcast), so that one step's weights are ``2 × lanes`` adjacent
numbers. The schedule is the int8 one (:func:`nindsl.tvm.narrow.kernels.int8.schedule_conv`).

The step: ``lanes`` float32 sums, each plus the dot product of 2 input channels (one 32-bit
broadcast) with 2 weights. On a CPU with AVX512-BF16 that is one ``vdpbf16ps`` for 16 sums.
TVM 0.27 cannot emit it: its TIR pipeline rewrites bfloat16 into float32 and uint16 before
LLVM sees it, and its LLVM code generator fails on bfloat vectors. So the step is a small
function of LLVM IR (:func:`step_ir`), on ``<32 x bfloat>`` where the instruction needs them,
linked into each kernel (TVM's ``pragma_import_llvm``) and inlined there: TVM sees 16-bit
integers, float32 sums and a call. The same function written with float32 FMAs
(:data:`EMULATED`) computes the same sums, in the same order, on any x86-64 CPU: the
tests run the bf16 layouts and schedules with it, and a bf16 build for a CPU this machine is
not is judged with it.
"""
from __future__ import annotations

from .int8 import ConvShape, Isa, padded_input, weight_shape

# AVX512-BF16 (Cooper Lake, Sapphire Rapids and later Xeons; AMD Zen 4 and later): 16 sums per step.
AVX512BF16 = Isa("avx512bf16", 16, False, group=2, width=2)
# AMX (Sapphire Rapids and later Xeons): convolutions that fit take tile kernels
# (nindsl.tvm.narrow.kernels.amx), the rest AVX512-BF16's, which every AMX CPU has.
AMX = Isa("amx-bf16", 16, False, group=2, width=2, untiled=AVX512BF16)
# The same step as two float32 FMAs per pair (LLVM picks the vector width from the target):
# never chosen for a build that is to be fast. EMULATED_AMX: the tile kernels on memory.
EMULATED = Isa("bf16-emulated", 16, False, group=2, width=2)
EMULATED_AMX = Isa("amx-emulated", 16, False, group=2, width=2, untiled=EMULATED, emulated=True)
ISAS = (AMX, AVX512BF16)  # the best first


def bf16_isa(target) -> Isa | None:
    """The bf16 instructions of ``target``'s CPU, or None when it has none."""
    from tvm.target import codegen

    if not codegen.llvm_cpu_has_features("avx512bf16", target):
        return None
    return next(isa for isa in ISAS if codegen.llvm_cpu_has_features(isa.name, target))



def step_function(isa: Isa) -> str:
    """The name of :func:`step_ir`'s function."""
    return f"nindsl_dpbf16_{isa.lanes}_{isa.name.replace('-', '_')}"


def step_ir(isa: Isa) -> str:
    """LLVM IR of one step: ``acc[i] + a[1]·w[i, 1] + a[0]·w[i, 0]`` for ``i < lanes``, where ``a``
    is the 32-bit pair of bf16 inputs and ``w`` the ``2 × lanes`` bf16 weights. The products of
    two bf16 numbers are exact in float32, so the emulation (two FMAs, the odd channel first, as
    ``vdpbf16ps`` adds them) gives the instruction's sums; it differs only on subnormal numbers,
    which the instruction flushes to zero."""
    n, name = isa.lanes, step_function(isa)
    if isa.name == "avx512bf16":
        dot = f"llvm.x86.avx512bf16.dpbf16ps.{32 * n}"
        return f"""
declare <{n} x float> @{dot}(<{n} x float>, <{2 * n} x bfloat>, <{2 * n} x bfloat>)
define <{n} x float> @{name}(<{n} x float> %acc, i32 %a, <{2 * n} x i16> %w) alwaysinline {{
  %one = insertelement <{n} x i32> poison, i32 %a, i32 0
  %all = shufflevector <{n} x i32> %one, <{n} x i32> poison, <{n} x i32> zeroinitializer
  %pairs = bitcast <{n} x i32> %all to <{2 * n} x bfloat>
  %weights = bitcast <{2 * n} x i16> %w to <{2 * n} x bfloat>
  %sum = call <{n} x float> @{dot}(<{n} x float> %acc, <{2 * n} x bfloat> %pairs, <{2 * n} x bfloat> %weights)
  ret <{n} x float> %sum
}}
"""
    return f"""
declare <{n} x float> @llvm.fma.v{n}f32(<{n} x float>, <{n} x float>, <{n} x float>)
define <{n} x float> @{name}(<{n} x float> %acc, i32 %a, <{2 * n} x i16> %w) alwaysinline {{
  %a0 = shl i32 %a, 16
  %a1 = and i32 %a, -65536
  %f0 = bitcast i32 %a0 to float
  %f1 = bitcast i32 %a1 to float
  %v0 = insertelement <{n} x float> poison, float %f0, i32 0
  %b0 = shufflevector <{n} x float> %v0, <{n} x float> poison, <{n} x i32> zeroinitializer
  %v1 = insertelement <{n} x float> poison, float %f1, i32 0
  %b1 = shufflevector <{n} x float> %v1, <{n} x float> poison, <{n} x i32> zeroinitializer
  %wi = bitcast <{2 * n} x i16> %w to <{n} x i32>
  %w0 = shl <{n} x i32> %wi, splat (i32 16)
  %w1 = and <{n} x i32> %wi, splat (i32 -65536)
  %g0 = bitcast <{n} x i32> %w0 to <{n} x float>
  %g1 = bitcast <{n} x i32> %w1 to <{n} x float>
  %t = call <{n} x float> @llvm.fma.v{n}f32(<{n} x float> %b1, <{n} x float> %g1, <{n} x float> %acc)
  %sum = call <{n} x float> @llvm.fma.v{n}f32(<{n} x float> %b0, <{n} x float> %g0, <{n} x float> %t)
  ret <{n} x float> %sum
}}
"""


def to_bf16(x):
    """float32 numbers (numpy) rounded to the nearest bf16 (ties to even), as their 16 bits."""
    import numpy as np

    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits):
    """bf16 numbers (numpy, their 16 bits) as float32."""
    import numpy as np

    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def widen(value):
    """A bf16 number (its 16 bits) as the float32 it is."""
    from tvm import tirx

    return tirx.reinterpret("float32", tirx.shift_left(value.astype("uint32"), tirx.const(16, "uint32")))


def narrow(value):
    """A float32 rounded to the nearest bf16 (ties to even), as its 16 bits."""
    from tvm import tirx

    bits = tirx.reinterpret("uint32", value)
    odd = tirx.bitwise_and(tirx.shift_right(bits, tirx.const(16, "uint32")), tirx.const(1, "uint32"))
    return tirx.shift_right(bits + tirx.const(0x7FFF, "uint32") + odd, tirx.const(16, "uint32")).astype("uint16")


_registered: set[str] = set()  # intrinsics registered with TVM, for the life of the process (TVM keeps them so)


def register_intrinsic(isa: Isa) -> None:
    """Register ``isa``'s step as a tensor intrinsic, once per process."""
    if isa.name in _registered:
        return
    from tvm.s_tir import TensorIntrin

    from ...compat import tvmscript_frames

    with tvmscript_frames():
        TensorIntrin.register(isa.intrinsic(isa.group), *_step_functions(isa))
    _registered.add(isa.name)


def _step_functions(isa: Isa):
    """The (description, implementation) of one step; the weights are ``[1, lanes, 2]``."""
    from tvm.script import tirx as T

    lanes, name = isa.lanes, step_function(isa)

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((2,), "uint16", offset_factor=1),
             b: T.Buffer((1, lanes, 2), "uint16", offset_factor=1),
             c: T.Buffer((lanes,), "float32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:2], b[0:1, 0:lanes, 0:2])
            T.writes(c[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + widen(a[vk]) * widen(b[vk // 2, vi, vk % 2])

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((2,), "uint16", offset_factor=1),
             b: T.Buffer((1, lanes, 2), "uint16", offset_factor=1),
             c: T.Buffer((lanes,), "float32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:2], b[0:1, 0:lanes, 0:2])
            T.writes(c[0:lanes])
            c[T.ramp(T.int32(0), 1, lanes)] = T.call_extern(
                f"float32x{lanes}", name, c.vload([0], dtype=f"float32x{lanes}"),
                T.reinterpret(a.vload([0], "uint16x2"), dtype="int32"), b.vload([0, 0, 0], dtype=f"uint16x{2 * lanes}"))

    return desc, impl


def conv_func(shape: ConvShape, isa: Isa, relu: bool):
    """The PrimFunc of ``shape``: ``x`` bf16 ``[N, H, W, C/b, b]``, ``w`` bf16 packed, ``bias``
    float32 per output channel → bf16 ``[N, OH, OW, O/lanes, lanes]``, ``bf16(max(Σ x·w + bias, 0))``
    (without the max when ``relu`` is False); padding is zero."""
    from tvm import te, tirx

    s, lanes, b = shape, isa.lanes, shape.in_block
    blocks_in = -(-s.channels // 2)
    blocks_out = -(-s.out_channels // lanes)
    oh, ow = s.out_size
    x = te.placeholder((s.batch, s.height, s.width, -(-s.channels // b), b), "uint16", name="x")
    w = te.placeholder(weight_shape(s, isa), "uint16", name="w")
    bias = te.placeholder((blocks_out * lanes,), "float32", name="bias")
    padded = padded_input(x, s, tirx.const(0, "uint16"))
    rc = te.reduce_axis((0, blocks_in), name="rc")
    ry = te.reduce_axis((0, s.kernel), name="ry")
    rx = te.reduce_axis((0, s.kw), name="rx")
    ri = te.reduce_axis((0, 2), name="ri")
    group = b // 2  # pairs per input block

    def dot(n, i, j, f, lane):
        block, at = (rc, ri) if group == 1 else (rc // group, (rc % group) * 2 + ri)
        value = padded[n, i * s.stride + ry, j * s.sw + rx, block, at]
        return te.sum(widen(value) * widen(w[f, ry, rx, rc, ri // 2, lane, ri % 2]), axis=[ry, rx, rc, ri])

    acc = te.compute((s.batch, oh, ow, blocks_out, lanes), dot, name="conv")

    def store(n, i, j, f, lane):
        value = acc[n, i, j, f, lane] + bias[f * lanes + lane]
        return narrow(tirx.max(value, tirx.const(0.0, "float32")) if relu else value)

    out = te.compute(acc.shape, store, name="store")
    return te.create_prim_func([x, w, bias, out])


def with_step(func, isa: Isa):
    """``func`` (a scheduled convolution) with its step's LLVM IR linked in."""
    from tvm import ir, tirx

    return func.with_body(tirx.AttrStmt(tirx.const(0, "int32"), "pragma_import_llvm", ir.StringImm(step_ir(isa)),
                                        func.body))


def schedule_conv(func, shape: ConvShape, isa: Isa, block: tuple[int, int] | None = None):
    """The int8 schedule (:func:`nindsl.tvm.narrow.kernels.int8.schedule_conv`) with ``isa``'s step."""
    from .int8 import schedule_conv as schedule

    register_intrinsic(isa)
    return with_step(schedule(func, shape, isa, block), isa)
