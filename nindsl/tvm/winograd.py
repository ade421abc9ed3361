"""Winograd convolutions in untuned CPU float32 builds: fewer multiplications for stride-1 3×3
and 5×5 layers (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

F(m×m, r×r) computes each m×m tile of an r×r convolution from an α×α tile of its input,
α = m + r − 1, with α² multiplications per input and output channel instead of m²r²::

    V = Bᵀ d B   (each input tile, each input channel)
    U = G g Gᵀ   (each weight, once: a parameter transform, lifted out of ``main``)
    M[ξ, ν] = Σ_ci V[ξ, ν, ci] · U[ξ, ν, ci, co]   (α² matrix products over the channels)
    y = Aᵀ M A   (each output tile, each output channel)

A, B and G are the Cook–Toom matrices TVM's topi computes for (m, r) (through
:func:`nindsl.tvm.compat.winograd_matrices`); the weight transform runs in float64. The layer's
choice (:func:`tile`) is a rule on its shape; the convolution is put in by legalizing Relax's
``conv2d`` (:func:`legalize`, a ``LegalizeOps`` map that :func:`nindsl.tvm.build.build` hands
to :func:`nindsl.tvm.frontend.prepare`) and scheduled by :func:`schedule`: one image at a time (a few of a fixed batch),
each stage in parallel, the products in register blocks; the bias and ReLU that Relax fuses
into the kernel are applied as its output is stored. The input and output transforms run in
float32 (tests/test_winograd.py bounds the error against float64 per tile size).
"""

from __future__ import annotations

import numpy as np

# Output tiles per kernel size, the largest first: F(4×4, 3×3) (36 multiplications for 144),
# F(2×2, 3×3) (16 for 36), F(4×4, 5×5) (64 for 400), F(2×2, 5×5) (36 for 100).
TILES = {3: (4, 2), 5: (4, 2)}
MIN_CHANNELS = 16  # fewer channels leave the transforms, done per channel, too little work to amortise over
MIN_SAVING = 2.0  # multiplications direct ÷ Winograd (tiles at the map's edges included) that make it worth it
MIN_TILES = 16  # tiles per image: fewer leave the products too short to fill the register blocks
# Multiply-adds per image of the direct convolution: below this, the four stages the schedule runs
# per image (each a parallel region) cost more than the multiplications they save (nin_digits'
# 8×8 maps of 64 channels, 2.4 M: Winograd made its build twice as slow at batch 64).
MIN_MACS = 4_000_000
# The transformed weights (α²/r² times the weights) are read once per image, as the schedule does
# one image at a time: more bytes of them per tile than this, and reading them costs more than the
# multiplications saved (nin_imagenet's 13×13 3×3 layer, 14 MB for 16 tiles of F(4×4): no faster).
MAX_WEIGHT_BYTES_PER_TILE = 512 * 1024
# Tiles a step of the schedule transforms and multiplies together, from as many images as fit
# (nin_cifar10 at batch 64: 4 images of 16 tiles; its 3×3 layer ran in 0.76× the time of one image a step).
TILES_PER_STEP = 64


def tile(kernel: int, stride: int, height: int, width: int, channels: int, out_channels: int) -> int | None:
    """The output tile ``m`` a convolution takes in Winograd form, or None for a direct one: stride 1,
    a 3×3 or 5×5 kernel, at least :data:`MIN_CHANNELS` in and out and :data:`MIN_MACS` multiply-adds
    per image, and the largest tile that leaves
    :data:`MIN_TILES` tiles per image, saves :data:`MIN_SAVING` of the multiplications once the
    edge tiles (partly outside the map) are counted, and reads at most
    :data:`MAX_WEIGHT_BYTES_PER_TILE` of transformed weights per tile."""
    if stride != 1 or min(channels, out_channels) < MIN_CHANNELS:
        return None
    if height * width * kernel * kernel * channels * out_channels < MIN_MACS:
        return None
    for m in TILES.get(kernel, ()):
        tiles, alpha = -(-height // m) * -(-width // m), m + kernel - 1
        if (tiles >= MIN_TILES and saving(kernel, m, height, width) >= MIN_SAVING
                and alpha * alpha * channels * out_channels * 4 <= MAX_WEIGHT_BYTES_PER_TILE * tiles):
            return m
    return None


def saving(kernel: int, m: int, height: int, width: int) -> float:
    """Multiplications of the direct convolution ÷ those of F(m×m, kernel×kernel), for an
    output of ``height × width``."""
    alpha = m + kernel - 1
    return height * width * kernel * kernel / (-(-height // m) * -(-width // m) * alpha * alpha)


def multiplications(kernel: int, m: int | None, height: int, width: int, channels: int, out_channels: int) -> int:
    """The multiplications one image of a convolution does: direct (``m`` None) or Winograd's
    (their element-wise products only, not the transforms')."""
    if m is None:
        return height * width * kernel * kernel * channels * out_channels
    alpha = m + kernel - 1
    return -(-height // m) * -(-width // m) * alpha * alpha * channels * out_channels


def convolutions(network):
    """The convolutions of ``network`` (an ``ir.Network``): for each, its name (``conv2.0``: an
    mlpconv's k×k stage; a ``conv`` layer's label), its layer, its ``LayerShape`` and its shape as
    :func:`tile`'s arguments (kernel, stride, output height, output width, input channels, output
    channels)."""
    from ..language.layers import Conv, MlpConv

    for layer, shape in zip(network.layers, network.shapes):
        if isinstance(layer, MlpConv):
            name, out = f"{layer.label}.0", layer.channels[0]
        elif isinstance(layer, Conv):
            name, out = layer.label, layer.out
        else:
            continue
        height, width = (int(d) for d in shape.out_shape[2:4])
        yield name, layer, shape, (layer.kernel, layer.stride, height, width, int(shape.in_shape[1]), out)


def plan(network, rule=tile) -> dict[str, tuple[int, int, int]]:
    """The convolutions of ``network`` that ``rule`` (:func:`tile`, or a :func:`measured` one) puts
    in Winograd form, by name, each with its tile ``m``, kernel ``r``, and the multiplications per
    image it saves. The same rule on the same shapes as the build's :func:`choose`."""
    chosen = {}
    for name, _, _, (kernel, stride, height, width, channels, out) in convolutions(network):
        m = rule(kernel, stride, height, width, channels, out)
        if m is not None:
            saved = (multiplications(kernel, None, height, width, channels, out)
                     - multiplications(kernel, m, height, width, channels, out))
            chosen[name] = (m, kernel, saved)
    return chosen


def fraction(network, rule=tile) -> float:
    """The multiplications an untuned CPU build of ``network`` does with Winograd where
    :func:`plan` puts it, as a fraction of the spec's multiply-adds (direct)."""
    saved = sum(saved for _, _, saved in plan(network, rule).values())
    return 1 - saved / network.total_macs if network.total_macs else 1.0


def forms(kernel: int, stride: int, height: int, width: int, channels: int, out_channels: int) -> list[int | None]:
    """The forms a convolution can take, for measuring (``compile --tune``): direct (None) and each
    tile of :data:`TILES` for its kernel, where it is stride 1 with :data:`MIN_CHANNELS` in and out;
    ``[]`` where direct is the only form."""
    if stride != 1 or kernel not in TILES or min(channels, out_channels) < MIN_CHANNELS:
        return []
    return [None, *TILES[kernel]]


def measured(choices: dict):
    """:func:`tile`, but with the forms measured for the shapes in ``choices`` (keyed by
    :func:`tile`'s arguments)."""
    def rule(*shape):
        return choices[shape] if shape in choices else tile(*shape)
    return rule


def transform_weights(weight, m: int):
    """TE: ``weight`` ``[O, I, r, r]`` → ``U`` ``[α, α, I, O]`` = G g Gᵀ, summed in float64."""
    from tvm import te
    from tvm.topi.utils import const_matrix

    from .compat import winograd_matrices

    o, i, r, _ = (int(d) for d in weight.shape)
    alpha = m + r - 1
    _, _, g = winograd_matrices(m, r)
    g = const_matrix(g.astype("float64"), "G")
    kh = te.reduce_axis((0, r), "kh")
    kw = te.reduce_axis((0, r), "kw")
    wide = te.compute((alpha, alpha, i, o), lambda e, n, ci, co: te.sum(
        weight[co, ci, kh, kw].astype("float64") * g[e, kh] * g[n, kw], axis=[kh, kw]), name="winograd_weight64")
    return te.compute(wide.shape, lambda *ix: wide(*ix).astype(weight.dtype), name="winograd_weight")


def conv2d(data, u, m: int, kernel: int, pad: tuple[int, int, int, int]):
    """TE: an NHWC convolution of ``data`` by transformed weights ``u`` (:func:`transform_weights`),
    padded ``(top, left, bottom, right)``, stride 1. The intermediates are ``[N, α or m, α or m,
    tiles, channels]``, the tiles of an image in rows (``rows × columns``, one axis: a register
    block of tiles is a range of it), for each of the α² products."""
    from tvm import te
    from tvm.topi.nn import pad as pad_op
    from tvm.topi.utils import const_matrix

    from .compat import winograd_matrices

    n = data.shape[0]  # (may be symbolic: a build for any batch size)
    h, w, ci = (int(d) for d in data.shape[1:])
    alpha, r = int(u.shape[0]), kernel
    co = int(u.shape[3])
    top, left, bottom, right = pad
    oh, ow = h + top + bottom - r + 1, w + left + right - r + 1
    rows, cols = -(-oh // m), -(-ow // m)
    # padded to whole tiles: (tiles − 1)·m + α rows and columns
    padded = pad_op(data, (0, top, left, 0), (0, (rows - 1) * m + alpha - h - top, (cols - 1) * m + alpha - w - left, 0),
                    name="winograd_pad")
    a_np, b_np, _ = winograd_matrices(m, r)
    a, b = const_matrix(a_np.astype("float32"), "A"), const_matrix(b_np.astype("float32"), "B")
    ra = te.reduce_axis((0, alpha), "ra")
    # V = Bᵀ d B, one side at a time
    tiles = rows * cols
    half = te.compute((n, alpha, alpha, tiles, ci), lambda i, e, x, p, c: te.sum(
        padded[i, p // cols * m + ra, p % cols * m + x, c] * b[ra, e], axis=ra), name="winograd_input_rows")
    rb = te.reduce_axis((0, alpha), "rb")
    v = te.compute((n, alpha, alpha, tiles, ci), lambda i, e, nu, p, c: te.sum(
        half[i, e, rb, p, c] * b[rb, nu], axis=rb), name="winograd_input")
    rc = te.reduce_axis((0, ci), "rc")
    product = te.compute((n, alpha, alpha, tiles, co), lambda i, e, nu, p, f: te.sum(
        v[i, e, nu, p, rc] * u[e, nu, rc, f], axis=rc), name="winograd_bgemm")
    rd = te.reduce_axis((0, alpha), "rd")
    # y = Aᵀ M A, one side at a time
    out_half = te.compute((n, m, alpha, tiles, co), lambda i, y, nu, p, f: te.sum(
        product[i, rd, nu, p, f] * a[rd, y], axis=rd), name="winograd_output_rows")
    re_ = te.reduce_axis((0, alpha), "re")
    inverse = te.compute((n, m, m, tiles, co), lambda i, y, x, p, f: te.sum(
        out_half[i, y, re_, p, f] * a[re_, x], axis=re_), name="winograd_inverse")
    return te.compute((n, oh, ow, co), lambda i, y, x, f: inverse[i, y % m, x % m, y // m * cols + x // m, f],
                      name="winograd_output")


def legalize(enabled_for):
    """A ``LegalizeOps`` map that puts a Winograd convolution in place of each NHWC ``conv2d`` for
    which ``enabled_for(call) → m`` gives a tile, and legalizes the others as TVM does."""
    import tvm

    default = tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")

    def conv2d_legalize(bb, call):
        m = enabled_for(call)
        if m is None:
            return default(bb, call)
        data, weight = call.args
        kernel = int(weight.ty.shape[2])
        u = bb.emit_te(transform_weights, weight, m, primfunc_name_hint="winograd_weight")
        pad = tuple(int(p) for p in call.attrs.padding)
        return bb.call_te(conv2d, data, u, m, kernel, pad, primfunc_name_hint="winograd_conv2d")

    return {"relax.nn.conv2d": conv2d_legalize}


def choose(call, rule=tile) -> int | None:
    """``rule`` (:func:`tile`) for a Relax ``conv2d`` call: NHWC data, OIHW weights, no dilation or groups."""
    attrs = call.attrs
    if (attrs.data_layout, attrs.kernel_layout, int(attrs.groups)) != ("NHWC", "OIHW", 1):
        return None
    if any(int(d) != 1 for d in attrs.dilation) or len({int(s) for s in attrs.strides}) != 1:
        return None
    data, weight = (arg.ty.shape for arg in call.args)
    o, i, kh, kw = (int(d) for d in weight)
    if kh != kw:
        return None
    top, left, bottom, right = (int(p) for p in attrs.padding)
    height, width = int(data[1]) + top + bottom - kh + 1, int(data[2]) + left + right - kw + 1
    return rule(kh, int(attrs.strides[0]), height, width, i, o)


def images(func) -> int:
    """Images a step of :func:`schedule` takes together: the most that divide a fixed batch and
    together hold at most :data:`TILES_PER_STEP` tiles (each block of transformed weights is then
    read once for all of them); 1 for a build of any batch size."""
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(func)
    n, _, _, p, _, _ = (sch.get(loop).extent for loop in sch.get_loops(_block(sch, "winograd_bgemm")))
    if not isinstance(n, tirx.IntImm):
        return 1
    return max(d for d in range(1, int(n) + 1) if int(n) % d == 0 and d * int(p) <= max(TILES_PER_STEP, int(p)))


def applies(func) -> bool:
    """Whether ``func`` (a task's PrimFunc module) is a Winograd convolution."""
    return _block(func, "winograd_bgemm") is not None


def _block(sch_or_func, name: str):
    from tvm import s_tir

    from .schedules import named_block

    return named_block(sch_or_func if isinstance(sch_or_func, s_tir.Schedule) else s_tir.Schedule(sch_or_func), name)


def schedule(sch, lanes: int, accumulators: int, parallel: bool = True, images: int = 1) -> None:
    """One image at a time, each stage in parallel: its input tiles transformed (vectors along the
    input channels, tiles in parallel); the α² products (in parallel over the products and blocks
    of output channels) in register blocks of ``vectors × lanes`` output channels × ``columns``
    tiles summed over the input channels, a block's weights ``U[ξ, ν, :, block]`` reused by every
    tile of the image; then the output transform and the store with bias and activation. Without
    ``parallel``, every stage runs on one core (:func:`nindsl.tvm.schedules.in_parallel`). With
    ``images`` (a divisor of a fixed batch: :func:`images`), each step takes that many images, and
    a block's weights are reused by all their tiles."""
    from .schedules import channel_lanes, fold_epilogue

    for name in ("A", "B"):  # the transforms' constant matrices: entries inlined, folded once unrolled
        constant = _block(sch, name)
        if constant is not None:
            sch.compute_inline(constant)
    output = sch.get_sblock("winograd_output")
    fold_epilogue(sch, output)  # bias and activation, applied as the output is stored
    # Every stage under the output's image loop, each producer placed by what its consumer reads
    # (compute_at: bounds, where reverse_compute_at would have to invert the tiles' index arithmetic).
    image = sch.get_loops(output)[0]
    if images > 1:
        image, _ = sch.split(image, [None, images])
    for name in ("winograd_inverse", "winograd_output_rows", "winograd_bgemm", "winograd_input",
                 "winograd_input_rows"):
        sch.compute_at(sch.get_sblock(name), image, preserve_unit_loops=True)
    product = sch.get_sblock("winograd_bgemm")
    _, own, e, nu, p, f, rc = sch.get_loops(product)  # (the image loop, the product's own: ``images`` long)
    channels, tiles = int(sch.get(f).extent), int(sch.get(p).extent)
    lanes = channel_lanes(channels, lanes)
    vectors, columns = _block_size(channels // lanes, tiles, accumulators)
    po, pi = sch.split(p, [None, columns])
    fo, fv, fl = sch.split(f, [None, vectors, lanes])
    sch.reorder(e, nu, fo, own, po, rc, pi, fv, fl)
    store = sch.cache_write(product, 0, "local")
    sch.reverse_compute_at(store, po, preserve_unit_loops=True)
    sch.vectorize(fl)
    sch.unroll(fv)
    sch.unroll(pi)
    sch.vectorize(sch.get_loops(store)[-1])
    if parallel:
        sch.parallel(sch.fuse(e, nu, fo))
    sch.decompose_reduction(product, rc)
    for name in ("winograd_input_rows", "winograd_input", "winograd_output_rows", "winograd_inverse"):
        _schedule_transform(sch, sch.get_sblock(name), lanes, parallel)
    *_, y, x, f = sch.get_loops(output)
    fo, fl = sch.split(f, [None, channel_width(channels, lanes)])
    sch.vectorize(fl)
    if parallel:
        sch.parallel(sch.fuse(*sch.get_loops(output)[1:-4], y) if images > 1 else y)
    pad = _block(sch, "winograd_pad")
    if pad is not None:
        loops = sch.get_loops(pad)
        if parallel:
            sch.parallel(sch.fuse(*loops[:2]))
        sch.vectorize(loops[-1])


def _schedule_transform(sch, stage, lanes: int, parallel: bool) -> None:
    """A transform under the image loop: its tiles in parallel, its channel loop split into
    vectors, innermost, and its α-sized loops and reduction unrolled between (the matrices'
    entries become constants)."""
    own, *loops = sch.get_loops(stage)[1:]  # under the image loop: the stage's own image loop, its others
    kinds = [var.iter_type for var in sch.get(stage).iter_vars][1:]
    spatial = [loop for loop, kind in zip(loops, kinds) if kind == 0]  # α or m, α or m, tiles, channels
    reduction = [loop for loop, kind in zip(loops, kinds) if kind != 0]
    small, tile, channel = spatial[:2], spatial[2], spatial[3]
    co, cl = sch.split(channel, [None, channel_width(int(sch.get(channel).extent), lanes)])
    sch.reorder(tile, co, *small, *reduction, cl)
    for loop in (*small, *reduction):
        sch.unroll(loop)
    sch.vectorize(cl)
    if parallel:
        sch.parallel(sch.fuse(own, tile))


def channel_width(extent: int, lanes: int) -> int:
    """The widest power of two up to ``lanes`` that divides ``extent``."""
    while lanes > 1 and extent % lanes:
        lanes //= 2
    return lanes


def _block_size(vectors: int, tiles: int, accumulators: int) -> tuple[int, int]:
    """(channel vectors, tiles) of a product's register block: as the channels-last template's rule
    (2 to 6 vectors, the most sums; where no block of 3 or more tiles divides them, one whose last
    block is partly outside: 49 tiles on AVX2)."""
    from .schedules import nhwc_blocks, remainder_blocks

    fitting = nhwc_blocks(vectors, tiles, 1, accumulators)
    preferred = [b for b in fitting if 2 <= b[0] <= 6] or fitting
    if max(width for _, width in preferred) < 3:
        preferred = [b for b in remainder_blocks(vectors, tiles, 1, accumulators) if 2 <= b[0] <= 6] or preferred
    return max(preferred, key=lambda b: (b[0] * tiles / -(-tiles // b[1]), b[1]))
