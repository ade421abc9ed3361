"""A schedule template for CPU convolutions, tuned by MetaSchedule in place of its generic space.

MetaSchedule's generic CPU search space finds good convolution schedules only after
hundreds of trials per kernel: most of its random tilings are far from the machine's
limit. The direct convolution below is the shape that reaches it (the same micro-kernel
as oneDNN's and ONNX Runtime's direct and im2col kernels): a block of ``height`` output
channels × ``rows`` output rows × ``width`` output columns is accumulated in vector
registers over every input channel and kernel tap, the input columns loaded as vectors
and each weight broadcast; bias and activation are applied as the block is stored;
weights are pre-packed (by MetaSchedule's layout rewrite) so that the ``height`` weights of
a tap are adjacent, and the input rows a block reads can be copied into a contiguous tile
first. Only the block sizes (from short lists that fit the registers) and the order of
the outer loops are left to tuning, so every trial is a plausible kernel and a few dozen
trials measure every candidate of a convolution.

Tuning searches it for stride-1 NCHW convolutions (every mlpconv after the first layer of the
shipped networks); other kernels keep MetaSchedule's generic space. Untuned builds run
channels-last and take the NHWC template at the end of this module (:func:`nhwc_conv2d`).
"""

from __future__ import annotations


ORDERS = ("channels", "rows", "packed")


def lanes_and_accumulators(target) -> tuple[int, int]:
    """float32 lanes per vector register, and how many registers may hold sums (the rest
    hold the loaded inputs and broadcast weights): AVX-512 has 32, AVX2 and SSE 16."""
    from tvm.target import codegen

    def has(feature: str) -> bool:
        return target is not None and bool(codegen.llvm_cpu_has_features(feature, target))

    if has("avx512f"):
        return 16, 28
    return (8, 12) if has("avx") else (4, 12)


def blocks(channels: int, columns: int, lanes: int, accumulators: int, rows: int = 1) -> tuple[list[int], list[int]]:
    """The register block sizes worth trying: output-channel blocks that divide ``channels``
    and column blocks of whole vectors that divide ``columns`` (or all of a narrow row),
    few enough that a block of the narrowest width, ``rows`` rows high, fits the
    accumulator registers."""
    widths = [w for w in range(lanes, 4 * lanes + 1, lanes) if columns % w == 0] or \
        [w for w in range(min(columns, 2 * lanes), 0, -1) if columns % w == 0][:1]
    narrowest = -(-min(widths) // lanes)  # vectors per column block
    heights = [h for h in range(2, 17) if channels % h == 0 and h * rows * narrowest <= accumulators] or [1]
    return heights, widths


def row_blocks(rows: int, columns: int, lanes: int) -> list[int]:
    """Output rows per register block. A row of one or two vectors gives a block too few
    columns to reuse each broadcast weight: two rows at a time double that reuse."""
    return [1, 2] if rows % 2 == 0 and columns <= 2 * lanes else [1]


def _conv_block(sch, strided: bool = False):
    """The block of a stride-1 NCHW convolution in ``sch`` (or, with ``strided``, of any
    stride), or None."""
    from tvm.s_tir.schedule import ScheduleError

    try:
        block = sch.get_sblock("conv2d_nchw")
    except (ScheduleError, ValueError, RuntimeError):  # the name is not in this function
        return None
    # no dilation: the input is read at [n, rc, yy * s + ry, xx * s + rx], `yy + ry` for stride 1
    rows, columns = (str(r.min) for r in sch.get(block).reads[0].region[2:])
    if (rows, columns) == ("v_yy + v_ry", "v_xx + v_rx"):
        return block
    strides = (rows.startswith("v_yy * ") and rows.endswith(" + v_ry"), columns.startswith("v_xx * ")
               and columns.endswith(" + v_rx"))
    return block if strided and all(strides) else None


def applies(func) -> bool:
    """Whether ``func`` (a task's PrimFunc module) is a stride-1 NCHW convolution."""
    from tvm import s_tir

    return _conv_block(s_tir.Schedule(func)) is not None


def _spaces(sch, block, target) -> list[tuple]:
    """Every design space of the template for ``block``: (loop order, rows per block, heights, widths)."""
    # (the batch loop may be symbolic: a build for any batch size)
    channels, rows, columns = (int(sch.get(loop).extent) for loop in sch.get_loops(block)[1:4])
    lanes, accumulators = lanes_and_accumulators(target)
    return [(order, block_rows, *blocks(channels, columns, lanes, accumulators, block_rows))
            for order in ORDERS for block_rows in row_blocks(rows, columns, lanes)]


def candidates(func, target) -> list[tuple[str, int, int, int]]:
    """Every candidate of the template for ``func``: (order, rows, height, width); none
    where the template does not apply."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    block = _conv_block(sch)
    if block is None:
        return []
    return [(order, rows, height, width) for order, rows, heights, widths in _spaces(sch, block, target)
            for height in heights for width in widths]


def space_size(func, target) -> int | None:
    """How many candidates the template has for ``func``; None where it does not apply."""
    return len(candidates(func, target)) or None


def default_choice(func, target) -> tuple[str, int, int, int] | None:
    """The candidate an untuned build takes, chosen from the target's registers, not measured.

    Register blocks fill the accumulator registers (a block of ``height`` channels × ``rows``
    rows × ``width`` columns uses height × rows × ⌈width / lanes⌉ of them; on AVX2 that is
    6 × 16, the shape of the usual hand-written float32 kernels), widest first. A k×k kernel
    sweeps the rows with one block of weights at a time (``channels``); a 1×1 kernel reads
    its input through a contiguous tile (``packed``), see :func:`design_spaces`.
    """
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    block = _conv_block(sch, strided=True)
    if block is None:
        return None
    kernel = int(sch.get(sch.get_loops(block)[-1]).extent)
    lanes, accumulators = lanes_and_accumulators(target)
    stride_1 = _conv_block(sch) is not None
    order = "packed" if kernel == 1 and stride_1 else "channels"  # (a packed tile assumes stride 1)

    def used(candidate) -> int:
        _, rows, height, width = candidate
        return height * rows * -(-width // lanes)

    spaces = _spaces(sch, block, target)
    every = [(o, rows, height, width) for o, rows, heights, widths in spaces for height in heights for width in widths]
    fitting = [c for c in every if c[0] == order and used(c) <= accumulators]
    return max(fitting, key=lambda c: (used(c), c[3]), default=None)


def design_spaces(sch, target=None) -> list:
    """The template's design spaces (loop order × rows per block), whose block sizes are tuned.

    - ``channels``: channel blocks outside rows keeps a block's weights in cache while it
      sweeps the rows (large kernels: 5×5 × 96 × 192 weights are 1.8 MB);
    - ``rows``: rows outside channel blocks keeps a row of the input in cache while every
      channel block reads it (1×1 kernels over large maps: the input outweighs the weights);
    - ``packed``: as ``rows``, but the input rows that a row of blocks reads are first
      copied into a contiguous tile. In NCHW the channels of one pixel lie a whole map
      apart (4 KB for a 32×32 map): a reduction over channels then reads addresses that
      all fall into the same few sets of the L1 cache, which holds only 8 of them per set.
      Whole rows, not one block's columns: each channel's run of the copy is then long
      enough for the prefetcher (docs/performance.md has the measurement).
    """
    result = []
    for order, rows, heights, widths in _spaces(sch, _conv_block(sch), target):
        space = sch.copy()
        direct_conv2d(space, order, rows, heights, widths)
        result.append(space)
    return result



def local_store(sch, block):
    """``block``'s output accumulated in a local buffer (registers), with the elementwise
    epilogue after it (bias, ReLU) folded into that buffer's store; returns the store's block."""
    store = sch.cache_write(block, 0, "local")
    fold_epilogue(sch, store)
    return store


def fold_epilogue(sch, block) -> None:
    """Inline the elementwise blocks that consume ``block`` alone (bias, ReLU) into its store."""
    while len(sch.get_consumers(block)) == 1:
        try:
            sch.reverse_compute_inline(sch.get_consumers(block)[0])
        except Exception:  # noqa: BLE001 - not elementwise: it stays a separate loop nest
            break

def direct_conv2d(sch, order: str, rows: int, heights: list[int], widths: list[int]) -> None:
    """The template: ``sch`` holds one fused convolution (+ bias, + activation) task; a
    register block is ``height`` output channels × ``rows`` rows × ``width`` columns.
    (Tuning searches it for stride-1 convolutions; untuned builds use it for any stride.)"""
    conv = _conv_block(sch, strided=True)
    n, f, y, x, rc, ry, rx = sch.get_loops(conv)
    height = sch.sample_categorical(heights, [1 / len(heights)] * len(heights))
    width = sch.sample_categorical(widths, [1 / len(widths)] * len(widths))
    fo, fi = sch.split(f, [None, height])
    yo, yi = sch.split(y, [None, rows])
    xo, xi = sch.split(x, [None, width])
    loops = {"channels": (n, fo, yo, xo), "rows": (n, yo, fo, xo), "packed": (n, yo, xo, fo)}[order]
    sch.reorder(*loops, rc, ry, rx, fi, yi, xi)
    outer = loops[:2] if order == "packed" else loops  # run in parallel; a packed tile is per row of blocks
    block = loops[-1]  # one register block's whole reduction runs under it
    store = local_store(sch, conv)
    sch.reverse_compute_at(store, block, preserve_unit_loops=True)  # a loop count that no decision changes
    sch.vectorize(xi)
    sch.unroll(yi)
    sch.unroll(fi)
    sch.vectorize(sch.get_loops(store)[-1])
    if order == "packed":
        # The input rows that every block of this row of blocks reads, padding included,
        # copied once into a buffer as small as the tile (TVM compacts it).
        tile = sch.cache_read(conv, 0, "global")
        for producer in sch.get_producers(tile):  # the padded copy of the input
            sch.compute_inline(producer)
        sch.compute_at(tile, yo, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(tile)[-1])
    else:
        for producer in sch.get_producers(conv):  # the padded copy of the input
            loops = sch.get_loops(producer)
            sch.parallel(sch.fuse(*loops[:2]))
            sch.vectorize(loops[-1])
    sch.parallel(sch.fuse(*outer))
    sch.decompose_reduction(conv, rc)


# Channels-last (NHWC) convolutions: what untuned builds take (frontend.prepare's `channels_last`).
#
# In NCHW the vectors run along a row of the map, so a map whose width is no whole number of
# vectors (nin_imagenet's 54, 27, 13 and 6) wastes most of each vector, and a strided layer reads
# its columns with gathers. In NHWC a pixel's channels are adjacent: the vectors run along the
# output channels, a row divides into register blocks of whole pixels (or, where no divisor of its
# width fits the accumulators, blocks whose last one is partly outside the row), and a strided
# layer reads one broadcast input per tap, as in its stride-1 neighbours.


L1_BYTES = 32 * 1024  # the L1 data cache of most x86-64 cores of the last decade (48 KiB on recent Intel ones)


# Vector steps (a kernel's iterations over the target's float32 lanes) below which it runs on one
# core: waking the others and joining them costs microseconds, more than they would save on
# so little work (nin_digits' 8×8 maps at batch 1; docs/performance.md).
SERIAL_STEPS = 1 << 16


def static_work(func) -> int | None:
    """The iterations of every block of ``func`` (a kernel before scheduling), summed; None where a
    loop has a symbolic extent (a build for any batch size)."""
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(func)
    total = 0
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        iterations = 1
        for loop in sch.get_loops(block):
            extent = sch.get(loop).extent
            if not isinstance(extent, tirx.IntImm):
                return None
            iterations *= int(extent)
        total += iterations
    return total


def in_parallel(func, lanes: int) -> bool:
    """Whether an untuned build spreads ``func`` over the cores: unless its batch is fixed and its
    work is under :data:`SERIAL_STEPS` vector steps."""
    work = static_work(func)
    return work is None or work // lanes >= SERIAL_STEPS


def channel_lanes(channels: int, lanes: int) -> int:
    """The vector width a convolution with ``channels`` outputs takes: the target's lanes, or the
    largest power of two below them that divides the channels (1000 classes: 8 of 16)."""
    while lanes > 1 and channels % lanes:
        lanes //= 2
    return lanes


def nhwc_blocks(channels: int, columns: int, lanes: int, accumulators: int) -> list[tuple[int, int]]:
    """Every register block of a channels-last convolution: (channel vectors, output columns)
    that divide the output's channels (in vectors of ``lanes``) and its width, and fit the
    accumulator registers."""
    vectors = channels // lanes
    return [(v, c) for v in range(1, accumulators + 1) for c in range(1, accumulators + 1)
            if vectors % v == 0 and columns % c == 0 and v * c <= accumulators]


def remainder_blocks(channels: int, columns: int, lanes: int, accumulators: int) -> list[tuple[int, int]]:
    """Register blocks of at least 3 columns that do not divide the row: its last block is partly
    outside it (a predicate skips those columns). For a row no block of several columns divides
    (13 wide on AVX2, whose 12 sums take 1-column blocks there)."""
    vectors = channels // lanes
    return [(v, c) for v in range(1, accumulators + 1) for c in range(3, min(columns, accumulators // v + 1))
            if vectors % v == 0 and columns % c]


def _used(block: tuple[int, int], columns: int) -> float:
    """Sums a block holds, on average over a row (its last block partly outside the row counts less)."""
    vectors, width = block
    return vectors * columns / -(-columns // width)


def _nhwc_block(sch):
    """The block of an NHWC convolution (any stride) in ``sch``, or None."""
    return named_block(sch, "conv2d_nhwc")


def named_block(sch, name: str):
    """The block called ``name`` in ``sch``, or None."""
    from tvm.s_tir.schedule import ScheduleError

    try:
        return sch.get_sblock(name)
    except (ScheduleError, ValueError, RuntimeError):  # the name is not in this function
        return None


def nhwc_choice(func, target) -> tuple[int, int, int] | None:
    """The block an untuned build takes for an NHWC convolution: (lanes, channel vectors,
    columns), chosen from the target's registers and the L1 cache, not measured; None where
    ``func`` is no NHWC convolution.

    Blocks of 2 to 6 channel vectors (one vector reuses each broadcast input too little; many
    vectors leave room for few columns, which reuse each weight vector), of whole pixels that
    divide the row, or of at least 3 columns that do not where no such block does
    (:func:`remainder_blocks`), those whose weights
    (every tap and input channel of their output channels) fit the L1 cache where some do
    (a 1×1 convolution's block then reads its weights from L1 over the whole map); the largest
    of them, the most columns among equals.
    """
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    block = _nhwc_block(sch)
    if block is None:
        return None
    # loops: n (maybe symbolic), y, x, f, ry, rx, rc
    columns, channels, *taps = (int(sch.get(loop).extent) for loop in sch.get_loops(block)[2:])
    lanes, accumulators = lanes_and_accumulators(target)
    lanes = channel_lanes(channels, lanes)
    fitting = nhwc_blocks(channels, columns, lanes, accumulators)
    preferred = [b for b in fitting if 2 <= b[0] <= 6] or fitting
    if max(width for _, width in preferred) < 3:  # no block of several columns divides the row
        remainder = [b for b in remainder_blocks(channels, columns, lanes, accumulators) if 2 <= b[0] <= 6]
        preferred = remainder or preferred
    weights_per_vector = lanes * taps[0] * taps[1] * taps[2] * 4  # bytes
    preferred = [b for b in preferred if b[0] * weights_per_vector <= L1_BYTES] or preferred
    vectors, width = max(preferred, key=lambda b: (_used(b, columns), b[1]))
    return lanes, vectors, width


def _copies(sch, block) -> bool:
    """Whether ``block`` writes a buffer of the shape it reads: a convolution's "padded" input
    with no padding, a copy that costs a pass over the whole input."""
    stmt = sch.get(block)
    return (len(stmt.reads) == 1 and len(stmt.writes) == 1
            and [str(d) for d in stmt.reads[0].source.shape] == [str(d) for d in stmt.writes[0].source.shape])


def nhwc_conv2d(sch, lanes: int, vectors: int, columns: int, parallel: bool = True) -> None:
    """The channels-last template: ``sch`` holds one fused convolution (+ bias, + activation); a
    register block of ``vectors × lanes`` output channels × ``columns`` output pixels of one row
    accumulates over every tap and input channel (the input broadcast, the weights loaded as
    vectors: pre-packed by MetaSchedule's layout rewrite so that a step's weights are adjacent),
    and bias and activation are applied as it is stored. Channel blocks are outside the rows,
    so that a block's weights stay in cache while it sweeps the map. Without ``parallel``, on one
    core (:func:`in_parallel`)."""
    conv = _nhwc_block(sch)
    n, y, x, f, ry, rx, rc = sch.get_loops(conv)
    fo, fv, fl = sch.split(f, [None, vectors, lanes])
    xo, xi = sch.split(x, [None, columns])
    sch.reorder(n, fo, y, xo, ry, rx, rc, xi, fv, fl)
    store = local_store(sch, conv)
    sch.reverse_compute_at(store, xo, preserve_unit_loops=True)
    sch.vectorize(fl)
    sch.unroll(fv)
    sch.unroll(xi)
    sch.vectorize(sch.get_loops(store)[-1])
    for producer in sch.get_producers(conv):  # the padded copy of the input
        if _copies(sch, producer):  # (no padding: read the input itself)
            sch.compute_inline(producer)
            continue
        loops = sch.get_loops(producer)
        if parallel:
            sch.parallel(sch.fuse(*loops[:2]))
        sch.vectorize(loops[-1])
    if parallel:
        sch.parallel(sch.fuse(n, fo, y))
    sch.decompose_reduction(conv, ry)


def _nhwc_pool_block(sch):
    """The reduction block of a channels-last pooling kernel in ``sch`` (``pool_max`` or
    ``pool_sum``, reading its input's channel as is), or None."""
    from tvm import tirx

    for name in ("pool_max", "pool_sum"):
        block = named_block(sch, name)
        if block is not None:
            read = sch.get(block).reads[0].region
            return block if len(read) == 4 and isinstance(read[-1].min, tirx.Var) else None
    return None


def is_nhwc_pool(func) -> bool:
    """Whether ``func`` (a kernel before scheduling) is a channels-last pool :func:`nhwc_pool` takes."""
    from tvm import s_tir

    return _nhwc_pool_block(s_tir.Schedule(func)) is not None


def nhwc_pool(sch, lanes: int, parallel: bool = True) -> bool:
    """The channels-last pooling template: each output pixel's window reduced in vectors along the
    channels (TVM's order puts the window innermost, which leaves nothing to vectorize), the
    padding read in place (no padded copy), an average divided as it is stored; pixels in
    parallel. False where ``sch`` holds no channels-last pool."""
    pool = _nhwc_pool_block(sch)
    if pool is None:
        return False
    for producer in sch.get_producers(pool):  # the padded input: read through a condition instead
        sch.compute_inline(producer)
    n, y, x, c, *window = sch.get_loops(pool)
    co, cl = sch.split(c, [None, channel_lanes(int(sch.get(c).extent), lanes)])
    sch.reorder(n, y, x, co, *window, cl)
    store = named_block(sch, "pool_avg")  # an average: the sums, in registers, divided as stored
    if store is None:
        store = sch.cache_write(pool, 0, "local")
    else:
        sch.set_scope(pool, 0, "local")
    sch.reverse_compute_at(store, co, preserve_unit_loops=True)
    for loop in window:
        sch.unroll(loop)
    sch.vectorize(cl)
    sch.vectorize(sch.get_loops(store)[-1])
    if parallel:
        sch.parallel(sch.fuse(n, y))
    sch.decompose_reduction(pool, window[0])
    return True
