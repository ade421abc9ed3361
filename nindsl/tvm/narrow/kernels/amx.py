"""AMX tile kernels for int8 and bf16 convolutions (Sapphire Rapids and later Xeons).

One AMX instruction adds to a tile ``C`` of ``rows × 16`` sums the products of ``A`` (``rows``
output pixels × 64 bytes of input channels: 64 int8 or 32 bf16) and ``B`` (those channels × 16
output channels, in groups of 4 int8 or 2 bf16 channels): ``tdpbusd`` (unsigned × signed bytes,
int32 sums) does 16 × 64 × rows multiply-adds, where ``vpdpbusd`` does 64; ``tdpbf16ps``
(float32 sums) 16 × 32 × rows, where ``vdpbf16ps`` does 32. The layouts are already those of
the vector kernels (:mod:`nindsl.tvm.narrow.kernels.int8` for VNNI, :mod:`nindsl.tvm.narrow.kernels.bf16`):

- ``A``: a row is 64 bytes of one input pixel's channels; the rows of a tile are the pixels
  under ``rows`` consecutive output columns at one kernel tap, ``width stride × pixel bytes``
  apart in the (padded) NHWC input: one strided tile load.
- ``B``: the packed weights ``[O/16, K, KW, C/g, 1, 16, g]`` hold each tap's channels for 16
  output channels as 1 KiB in a row: one tile load.
- ``C``: ``rows`` pixels × 16 output channels, stored to the output row's buffer of sums; the
  vector kernel's store step follows (requantize; or bias, ReLU and rounding to bf16).

Where an input's channels come in 32- or 16-byte steps only (96 int8 channels; a folded input
layer's taps, :meth:`nindsl.tvm.narrow.int8.Int8Kernels.quantize_folded`: 16 int8 or 32 bf16 bytes
in nin_cifar10), tiles take 32 or 16 bytes (:attr:`TileBlock.depth`). A block is
``across × rows`` output pixels of one row × ``deep × 16`` output channels: up to 4 sum tiles (0–3), ``across`` input tiles (4, 5) and
``deep`` weight tiles (6, 7), loaded once per tap and input-channel tile. As with bf16's vector
step, TVM cannot emit tile instructions: each operation is a small function of LLVM IR
(:func:`tile_ir`, tile numbers constant after unrolling) linked into the kernel, named after
its tile configuration (:func:`tile_prefix`). The first
block a process runs asks Linux for the tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)``), which Linux requires before the first tile instruction.
:func:`emulated_tile_ir` does the same operations on 8 KiB of memory with scalar
multiply-adds, so that the tests run the addresses and layouts on any CPU; and
:func:`works_here` checks, before a build for this machine uses tiles, that its AMX computes
what the emulation does.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .int8 import ConvShape

TILE_BYTES = 1024  # 16 rows of 64 bytes
INPUTS, WEIGHTS = 4, 6  # the first input and weight tiles (sums: 0 to 3)


@dataclass(frozen=True)
class Numbers:
    """What one tile instruction multiplies: ``width``-byte numbers, up to 64 bytes of a pixel's
    channels per input row, a weight row of 16 output channels × ``4 / width`` input channels."""

    name: str
    width: int  # bytes per number
    instruction: str  # the tile instruction
    sums: str  # the sums' type
    storage: str  # how activations and weights are stored (bf16 as its bits)


BF16 = Numbers("bf16", 2, "tdpbf16ps", "float32", "uint16")
INT8 = Numbers("int8", 1, "tdpbusd", "int32", "uint8")  # unsigned activations × signed weights


@dataclass(frozen=True)
class TileBlock:
    """The output block of one kernel call: ``across`` input tiles of ``rows`` pixels, ``deep``
    weight tiles of 16 output channels; ``depth`` bytes of input channels per tile (64, or 32 or
    16 where a pixel's channels come in such steps only: a weight tile then has depth / 4 rows)."""

    rows: int
    across: int
    deep: int
    depth: int = 64


def pixel_numbers(shape: ConvShape) -> int:
    """The numbers of one input pixel in its layout: the channels padded to whole blocks."""
    return -(-shape.channels // shape.in_block) * shape.in_block


def tile_block(shape: ConvShape, numbers: Numbers = BF16) -> TileBlock | None:
    """The block a convolution takes, or None where the tile kernel does not fit it: a pixel's
    channels (in their blocks: 16, or a folded input layer's taps) must make whole tiles of 64,
    32 or 16 bytes, and an output row must split into whole tiles of 8 to 16 pixels (one or two
    per block)."""
    _, width = shape.out_size
    channel_bytes = pixel_numbers(shape) * numbers.width
    depth = next((d for d in (64, 32, 16) if channel_bytes % d == 0), None)
    rows = next((r for r in range(16, 7, -1) if width % r == 0), None)
    if depth is None or rows is None:
        return None
    blocks_out = -(-shape.out_channels // 16)
    return TileBlock(rows, 2 if width % (2 * rows) == 0 else 1, 2 if blocks_out % 2 == 0 else 1, depth)


def tile_blocks(shape: ConvShape, numbers: Numbers = BF16) -> list[TileBlock]:
    """Every block a search may measure where :func:`tile_block` fits ``shape`` (none where it
    does not), that block first: rows of 8 to 16 pixels that divide the output row, one or two
    input tiles across it, one or two weight tiles of output channels (four sum tiles at most)."""
    default = tile_block(shape, numbers)
    if default is None:
        return []
    _, width = shape.out_size
    blocks_out = -(-shape.out_channels // 16)
    others = [TileBlock(rows, across, deep, default.depth)
              for rows in range(16, 7, -1) if width % rows == 0
              for across in (2, 1) if width % (across * rows) == 0
              for deep in (2, 1) if blocks_out % deep == 0]
    return [default, *(b for b in others if b != default)]


def weight_layout(shape: ConvShape) -> ConvShape:
    """``shape`` with its input channels padded to whole blocks, as the input holds them: the
    tile kernel reads every channel of a tile, so the packed weights have them all."""
    return replace(shape, channels=pixel_numbers(shape))


def _switch(cases: list[str]) -> str:
    """IR that runs ``cases[i]`` for ``%index = i``: constant after inlining, so one remains."""
    labels = " ".join(f"i32 {i}, label %case{i}" for i in range(len(cases) - 1))
    body = "".join(f"case{i}:\n  {case}\n  ret void\n" for i, case in enumerate(cases))
    return f"  switch i32 %index, label %case{len(cases) - 1} [ {labels} ]\n{body}"


def tile_prefix(block: TileBlock, numbers: Numbers, emulated: bool) -> str:
    """The names of one tile configuration's operations: TVM links every kernel's IR into one
    module, where a name defined twice keeps its first definition, so kernels of different
    tile shapes need different names."""
    return f"nindsl_tiles_{numbers.name}_{block.rows}x{block.depth}" + ("_emulated" if emulated else "")


def tile_ir(block: TileBlock, numbers: Numbers = BF16) -> str:
    """The tile operations of one block shape, in LLVM IR for AMX. Every function takes the
    emulation's tile memory first (unused here): one kernel serves both."""
    prefix = tile_prefix(block, numbers, False)
    rows = [block.rows] * 6 + [block.depth // 4] * 2  # sums, inputs: the block's pixels; weights: depth / 4
    columns = [64] * 4 + [block.depth] * 2 + [64] * 2  # bytes per row: 16 sums; depth; 16 × 4 bytes
    config = "\n".join(
        f"  %cols{t} = getelementptr i8, ptr %config, i64 {16 + 2 * t}\n  store i16 {columns[t]}, ptr %cols{t}\n"
        f"  %rows{t} = getelementptr i8, ptr %config, i64 {48 + t}\n  store i8 {rows[t]}, ptr %rows{t}"
        for t in range(8))
    load = "call void @llvm.x86.tileloadd64(i8 {}, ptr %from, i64 %stride)"
    return f"""
declare void @llvm.x86.ldtilecfg(ptr)
declare void @llvm.x86.tilerelease()
declare void @llvm.x86.tilezero(i8 immarg)
declare void @llvm.x86.tileloadd64(i8 immarg, ptr, i64)
declare void @llvm.x86.tilestored64(i8 immarg, ptr, i64)
declare void @llvm.x86.{numbers.instruction}(i8 immarg, i8 immarg, i8 immarg)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1 immarg)
declare i64 @syscall(i64, ...)
@permitted = internal global i32 0

define void @{prefix}_begin(ptr %memory) alwaysinline {{
entry:
  %config = alloca [64 x i8], align 64
  %done = load atomic i32, ptr @permitted monotonic, align 4
  %asked = icmp ne i32 %done, 0
  br i1 %asked, label %configure, label %ask
ask:
  %granted = call i64 (i64, ...) @syscall(i64 158, i64 4131, i64 18)  ; arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)
  store atomic i32 1, ptr @permitted monotonic, align 4
  br label %configure
configure:
  call void @llvm.memset.p0.i64(ptr %config, i8 0, i64 64, i1 false)
  store i8 1, ptr %config  ; palette 1
{config}
  call void @llvm.x86.ldtilecfg(ptr %config)
  call void @llvm.x86.tilezero(i8 0)
  call void @llvm.x86.tilezero(i8 1)
  call void @llvm.x86.tilezero(i8 2)
  call void @llvm.x86.tilezero(i8 3)
  ret void
}}

define void @{prefix}_end(ptr %memory) alwaysinline {{
  call void @llvm.x86.tilerelease()
  ret void
}}

define void @{prefix}_load(ptr %memory, i32 %index, ptr %from, i64 %stride) alwaysinline {{
entry:
{_switch([load.format(t) for t in range(INPUTS, 8)])}}}

define void @{prefix}_dot(ptr %memory, i32 %index) alwaysinline {{
entry:
{_switch([f"call void @llvm.x86.{numbers.instruction}(i8 {2 * a + b}, i8 {INPUTS + a}, i8 {WEIGHTS + b})"
                 for a in range(2) for b in range(2)])}}}

define void @{prefix}_store(ptr %memory, i32 %index, ptr %to, i64 %stride) alwaysinline {{
entry:
{_switch([f"call void @llvm.x86.tilestored64(i8 {t}, ptr %to, i64 %stride)" for t in range(4)])}}}
"""


def emulated_tile_ir(block: TileBlock, numbers: Numbers = BF16) -> str:
    """:func:`tile_ir`'s operations on 8 tiles of 1 KiB at ``%memory``: what the instruction
    adds, in its order (bf16: the even channel of a pair first, float32 FMAs; int8: four
    products in int32)."""
    group = 4 // numbers.width  # input channels per 32-bit element
    steps = []
    for i in range(group):  # the running sum: %sum, %s1, ..., %next
        before, after = "%sum" if i == 0 else f"%s{i}", "%next" if i == group - 1 else f"%s{i + 1}"
        steps.append(f"  %a{i} = add i64 %a_at, {i}\n  %b{i} = add i64 %b_at, {i}")
        if numbers is BF16:
            steps.append(f"  %x{i} = call float @bf16(ptr %inputs, i64 %a{i})\n"
                         f"  %y{i} = call float @bf16(ptr %weights, i64 %b{i})\n"
                         f"  {after} = call float @llvm.fma.f32(float %x{i}, float %y{i}, float {before})")
        else:
            steps.append(f"  %pa{i} = getelementptr i8, ptr %inputs, i64 %a{i}\n"
                         f"  %pb{i} = getelementptr i8, ptr %weights, i64 %b{i}\n"
                         f"  %u{i} = load i8, ptr %pa{i}\n  %v{i} = load i8, ptr %pb{i}\n"
                         f"  %x{i} = zext i8 %u{i} to i32\n  %y{i} = sext i8 %v{i} to i32\n"
                         f"  %p{i} = mul i32 %x{i}, %y{i}\n  {after} = add i32 {before}, %p{i}")
    sum_type, helpers = ("float", _BF16_HELPER) if numbers is BF16 else ("i32", "")
    products = "\n".join(steps)
    return _EMULATED.format(prefix=tile_prefix(block, numbers, True), inputs=INPUTS, weights=WEIGHTS, rows=block.rows,
                            tile=TILE_BYTES, zeroed=4 * TILE_BYTES,
                            sum=sum_type, per_row=64 // numbers.width, group=group, products=products,
                            helpers=helpers, depth=block.depth, weight_rows=block.depth // 4)


_BF16_HELPER = """
define internal float @bf16(ptr %base, i64 %index) {
  %p = getelementptr i16, ptr %base, i64 %index
  %bits = load i16, ptr %p
  %wide = zext i16 %bits to i32
  %high = shl i32 %wide, 16
  %value = bitcast i32 %high to float
  ret float %value
}
"""

_EMULATED = """
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1 immarg)
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1 immarg)
declare float @llvm.fma.f32(float, float, float)

define void @{prefix}_begin(ptr %memory) alwaysinline {{
  call void @llvm.memset.p0.i64(ptr %memory, i8 0, i64 {zeroed}, i1 false)
  ret void
}}

define void @{prefix}_end(ptr %memory) alwaysinline {{
  ret void
}}

define internal void @rows(ptr %to, i64 %to_stride, ptr %from, i64 %from_stride, i64 %count, i64 %bytes) {{
entry:
  br label %loop
loop:
  %r = phi i64 [ 0, %entry ], [ %next, %loop ]
  %to_offset = mul i64 %r, %to_stride
  %from_offset = mul i64 %r, %from_stride
  %t = getelementptr i8, ptr %to, i64 %to_offset
  %f = getelementptr i8, ptr %from, i64 %from_offset
  call void @llvm.memcpy.p0.p0.i64(ptr %t, ptr %f, i64 %bytes, i1 false)
  %next = add i64 %r, 1
  %more = icmp ult i64 %next, %count
  br i1 %more, label %loop, label %done
done:
  ret void
}}

define internal ptr @tile(ptr %memory, i32 %index) {{
  %i = zext i32 %index to i64
  %offset = mul i64 %i, {tile}
  %p = getelementptr i8, ptr %memory, i64 %offset
  ret ptr %p
}}

define void @{prefix}_load(ptr %memory, i32 %index, ptr %from, i64 %stride) alwaysinline {{
  %t = add i32 %index, {inputs}
  %to = call ptr @tile(ptr %memory, i32 %t)
  %weights = icmp uge i32 %t, {weights}
  %count = select i1 %weights, i64 {weight_rows}, i64 {rows}
  %bytes = select i1 %weights, i64 64, i64 {depth}
  call void @rows(ptr %to, i64 64, ptr %from, i64 %stride, i64 %count, i64 %bytes)
  ret void
}}

define void @{prefix}_store(ptr %memory, i32 %index, ptr %to, i64 %stride) alwaysinline {{
  %from = call ptr @tile(ptr %memory, i32 %index)
  call void @rows(ptr %to, i64 %stride, ptr %from, i64 64, i64 {rows}, i64 64)
  ret void
}}

{helpers}
define void @{prefix}_dot(ptr %memory, i32 %index) alwaysinline {{
entry:
  %a = lshr i32 %index, 1
  %b = and i32 %index, 1
  %ta = add i32 %a, {inputs}
  %tb = add i32 %b, {weights}
  %sums = call ptr @tile(ptr %memory, i32 %index)
  %inputs = call ptr @tile(ptr %memory, i32 %ta)
  %weights = call ptr @tile(ptr %memory, i32 %tb)
  br label %row
row:
  %m = phi i64 [ 0, %entry ], [ %m_next, %row_end ]
  br label %column
column:
  %n = phi i64 [ 0, %row ], [ %n_next, %column_end ]
  %c_row = mul i64 %m, 16
  %c_index = add i64 %c_row, %n
  %c = getelementptr {sum}, ptr %sums, i64 %c_index
  %start = load {sum}, ptr %c
  br label %step
step:
  %k = phi i64 [ 0, %column ], [ %k_next, %step ]
  %sum = phi {sum} [ %start, %column ], [ %next, %step ]
  %a_row = mul i64 %m, {per_row}
  %k_at = mul i64 %k, {group}
  %a_at = add i64 %a_row, %k_at
  %b_row = mul i64 %k, {per_row}
  %n_at = mul i64 %n, {group}
  %b_at = add i64 %b_row, %n_at
{products}
  %k_next = add i64 %k, 1
  %k_more = icmp ult i64 %k_next, {weight_rows}
  br i1 %k_more, label %step, label %column_end
column_end:
  store {sum} %next, ptr %c
  %n_next = add i64 %n, 1
  %n_more = icmp ult i64 %n_next, 16
  br i1 %n_more, label %column, label %row_end
row_end:
  %m_next = add i64 %m, 1
  %m_more = icmp ult i64 %m_next, {rows}
  br i1 %m_more, label %row, label %done
done:
  ret void
}}
"""


@dataclass(frozen=True)
class _Tiling:
    """The sizes and names a tile kernel's loops and pointers use (see :func:`conv_func`)."""

    block: TileBlock
    operations: tuple[str, ...]  # the tile operations' symbols: begin, load, dot, store, end
    out: tuple[int, int]  # output rows, columns
    blocks: tuple[int, int]  # input channel blocks, output blocks of 16
    pixel: int  # numbers per input pixel
    per_tap: int  # weights per 16 output channels and tap: 16 × the input's channels
    channels: int  # input channels per tile
    per_tile: int  # a weight tile: depth / 4 rows of 64 bytes
    memory: int  # bytes of tile memory: 8 tiles emulated, 1 (a placeholder) with AMX's registers
    dtypes: tuple[str, str, str]  # activations, sums, weights


def _tiling(shape: ConvShape, numbers: Numbers, block: TileBlock, emulated: bool) -> _Tiling:
    pixel = pixel_numbers(shape)
    return _Tiling(
        block, tuple(f"{tile_prefix(block, numbers, emulated)}_{op}" for op in ("begin", "load", "dot", "store", "end")),
        shape.out_size, (-(-shape.channels // shape.in_block), -(-shape.out_channels // 16)), pixel, pixel * 16,
        block.depth // numbers.width, block.depth * 16 // numbers.width, 8 * TILE_BYTES if emulated else 1,
        (numbers.storage, numbers.sums, "int8" if numbers is INT8 else numbers.storage))


def _row_sums(shape: ConvShape, numbers: Numbers, tiling: _Tiling):
    """The macro that puts every sum of one output row into ``sums`` ``[OW, O/16, 16]``, tile by
    tile; ``padded``: the input with its padding (the input itself without)."""
    from tvm.script import tirx as T

    rows, across, deep = tiling.block.rows, tiling.block.across, tiling.block.deep
    tile_begin, tile_load, tile_dot, tile_store, tile_end = tiling.operations
    oh, ow = tiling.out
    blocks_out = tiling.blocks[1]
    stride, across_stride, k, kw = shape.stride, shape.sw, shape.kernel, shape.kw
    height, width = shape.height + 2 * shape.pad, shape.width + 2 * shape.pad
    pixel, per_tap, channels, per_tile = tiling.pixel, tiling.per_tap, tiling.channels, tiling.per_tile
    memory, (dtype, sums_dtype, weight_dtype) = tiling.memory, tiling.dtypes

    def tiles(mem):
        return T.tvm_access_ptr(T.type_annotation("uint8"), mem.data, 0, memory, 3)

    @T.macro
    def row_sums(wt, padded, mem, sums, output_row):
        for jo, fo in T.grid(ow // (rows * across), blocks_out // deep):
            T.evaluate(T.call_extern("void", tile_begin, tiles(mem)))
            for ry, rx, t in T.grid(k, kw, pixel // channels):
                for a in T.unroll(across):
                    column = (jo * across + a) * rows * across_stride + rx
                    T.evaluate(T.call_extern(
                        "void", tile_load, tiles(mem), a,
                        T.tvm_access_ptr(T.type_annotation(dtype), padded.data,
                                         (((output_row // oh) * height + (output_row % oh) * stride + ry) * width
                                          + column) * pixel + t * channels,
                                         (rows - 1) * across_stride * pixel + channels, 1),
                        T.int64(across_stride * pixel * numbers.width)))
                for b in T.unroll(deep):
                    T.evaluate(T.call_extern(
                        "void", tile_load, tiles(mem), 2 + b,
                        T.tvm_access_ptr(T.type_annotation(weight_dtype), wt.data,
                                         (((fo * deep + b) * k + ry) * kw + rx) * per_tap + t * per_tile, per_tile, 1),
                        T.int64(64)))
                for a in T.unroll(across):
                    for b in T.unroll(deep):
                        T.evaluate(T.call_extern("void", tile_dot, tiles(mem), 2 * a + b))
            for a in T.unroll(across):
                for b in T.unroll(deep):
                    T.evaluate(T.call_extern(
                        "void", tile_store, tiles(mem), 2 * a + b,
                        T.tvm_access_ptr(T.type_annotation(sums_dtype), sums.data,
                                         ((jo * across + a) * rows * blocks_out + fo * deep + b) * 16,
                                         ((rows - 1) * blocks_out + 1) * 16, 2),
                        T.int64(blocks_out * 64)))
            T.evaluate(T.call_extern("void", tile_end, tiles(mem)))

    return row_sums


def _padding(shape: ConvShape, numbers: Numbers, t: _Tiling):
    """The macro that copies the input into its padded layout (a no-op without padding), and
    that layout's shape."""
    from tvm import tirx
    from tvm.script import tirx as T

    p, n, h, w, in_block = shape.pad, shape.batch, shape.height, shape.width, shape.in_block
    height, width = h + 2 * p, w + 2 * p
    blocks_in = t.blocks[0]
    fill = tirx.const(shape.zero_in if numbers is INT8 else 0, t.dtypes[0])  # what padding reads: 0.0

    @T.macro
    def pad(x, padded):
        for image_row in T.parallel(n * height):
            for j, c in T.grid(width, blocks_in):
                for lane in T.vectorized(in_block):
                    padded[image_row // height, image_row % height, j, c, lane] = T.if_then_else(
                        image_row % height >= p and image_row % height < h + p and j >= p and j < w + p,
                        x[image_row // height, T.max(image_row % height - p, 0), T.max(j - p, 0), c, lane], fill)

    @T.macro
    def no_padding(x, padded):
        T.evaluate(0)

    return (pad, (n, height, width, blocks_in, in_block)) if p else (no_padding, (1,))


def _stores(shape: ConvShape, relu: bool):
    """How a sum is stored: bf16's bias, ReLU and rounding; int8's requantize step."""
    from tvm.script import tirx as T

    from .bf16 import narrow
    from .int8 import ACTIVATION_MAX

    # (no lets in the vectorised stores: TVM 0.27 vectorised a let's value wrongly in them)
    def round_to_bf16(total, channel, parameters):
        (bias,) = parameters
        return narrow(T.max(total + bias[channel], T.float32(0)) if relu else total + bias[channel])

    def requantize(total, channel, parameters):
        bias, scale = parameters
        value = T.nearbyint(T.Cast("float32", total + bias[channel]) * scale[channel]) + T.float32(float(shape.zero_out))
        return T.Cast("uint8", T.max(T.min(value, T.float32(ACTIVATION_MAX)), T.float32(float(shape.low))))

    return round_to_bf16, requantize


def conv_func(shape: ConvShape, numbers: Numbers, relu: bool = False, emulated: bool = False,
              block: TileBlock | None = None):
    """The tile kernel of ``shape`` (:func:`tile_block` must fit it), in ``block`` (one of
    :func:`tile_blocks`; :func:`tile_block`'s by default), with the arguments and result of the
    vector kernel of the same numbers (:func:`nindsl.tvm.narrow.kernels.bf16.conv_func`,
    :func:`nindsl.tvm.narrow.kernels.int8.conv_func`: bf16's ``relu``, int8's zero points and
    ``low`` in ``shape``), the weights packed for :func:`weight_layout`. ``emulated``: the
    operations of :func:`emulated_tile_ir`, which run on any CPU.

    Each output row's sums go to a row buffer, tile by tile, and are then stored as the
    vector kernel stores them: bias, ReLU and rounding to bf16, or int8's requantize step."""
    from tvm import ir, tirx
    from tvm.script import tirx as T

    from .bf16 import AVX512BF16
    from .int8 import ISAS, weight_shape

    block = block or tile_block(shape, numbers)
    t = _tiling(shape, numbers, block, emulated)
    row_sums, (padding, padded_shape) = _row_sums(shape, numbers, t), _padding(shape, numbers, t)
    round_to_bf16, requantize = _stores(shape, relu)
    n, h, w, in_block, pad = shape.batch, shape.height, shape.width, shape.in_block, shape.pad
    (oh, ow), (blocks_in, blocks_out), memory = t.out, t.blocks, t.memory
    dtype, sums_dtype, _ = t.dtypes

    def source(x, padded):
        """What the tiles read: the input, or its padded copy."""
        return padded if pad else x

    @T.macro
    def kernel(x, wt, out, store, parameters):
        padded = T.decl_buffer(padded_shape, dtype)
        padding(x, padded)
        for output_row in T.parallel(n * oh):
            mem = T.decl_buffer((memory,), "uint8", scope="local")
            sums = T.decl_buffer((ow, blocks_out, 16), sums_dtype, scope="local")
            row_sums(wt, source(x, padded), mem, sums, output_row)
            for j, f in T.grid(ow, blocks_out):
                for lane in T.vectorized(16):
                    out[output_row // oh, output_row % oh, j, f, lane] = store(sums[j, f, lane], f * 16 + lane,
                                                                               parameters)

    vector = AVX512BF16 if numbers is BF16 else ISAS[0]  # the vector kernel whose weight layout tiles read
    weights = weight_shape(weight_layout(shape), vector)
    if numbers is BF16:
        @T.prim_func
        def main(x: T.Buffer((n, h, w, blocks_in, in_block), dtype), wt: T.Buffer(weights, dtype),
                 bias: T.Buffer((blocks_out * 16,), "float32"), out: T.Buffer((n, oh, ow, blocks_out, 16), dtype)):
            T.func_attr({"tirx.noalias": True})
            kernel(x, wt, out, round_to_bf16, (bias,))
    else:
        @T.prim_func
        def main(x: T.Buffer((n, h, w, blocks_in, in_block), dtype), wt: T.Buffer(weights, "int8"),
                 bias: T.Buffer((blocks_out * 16,), "int32"), scale: T.Buffer((blocks_out * 16,), "float32"),
                 out: T.Buffer((n, oh, ow, blocks_out, 16), dtype)):
            T.func_attr({"tirx.noalias": True})
            kernel(x, wt, out, requantize, (bias, scale))

    code = emulated_tile_ir(block, numbers) if emulated else tile_ir(block, numbers)
    return main.with_body(tirx.AttrStmt(tirx.const(0, "int32"), "pragma_import_llvm", ir.StringImm(code), main.body))
