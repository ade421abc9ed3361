"""`nindsl draw`: a picture of a checked network, for papers and slides (matplotlib only).

Layers run left to right. Each is a block whose height grows with its spatial size; under it
stand its label, what it is, its output shape and its parameters. An mlpconv's convolutions
are drawn side by side inside one frame; the head (global pooling to the class scores, and
softmax) sits on a shaded band that says how many parameters it has. A legend under the
picture says what each colour in it is.

>>> import nindsl                                                         # doctest: +SKIP
>>> draw(nindsl.load("specs/nin_cifar10.nin"), "net.png")                 # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path

from .kernel import limits
from .kernel.diagnostics import NindslError
from .kernel.io import atomic_write_bytes
from .kernel.outputs import PICTURE
from .language import ir
from .language.layers import (BatchNorm, Conv, Dense, Dropout, Flatten, GlobalPool, MlpConv, Pool, Softmax, kind,
                               window_text)
from .language.summary import short_shape

FORMATS = ("png", "svg", "pdf")
COLOURS = {"conv": "#4C78A8", "one": "#72B7B2", "pool": "#F58518", "norm": "#B279A2", "dense": "#E45756",
           "head": "#54A24B", "other": "#9D9D9D"}
#: What each colour means, in the legend's order (the head's colour: see :func:`legend`).
MEANINGS = {"conv": "k×k convolution", "one": "1×1 convolution (mlpconv stage)", "pool": "pooling",
            "norm": "batch norm", "dense": "dense", "head": "softmax", "other": "dropout, flatten, ReLU"}


def _params(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.2f} M params"
    if count >= 1_000:
        return f"{count / 1e3:.1f} k params"
    return f"{count} params" if count else "no params"


def _head_start(network: ir.Network) -> int:
    """Index of the first head layer: global pooling (or a pool to 1×1) and what follows it."""
    for index in range(len(network.layers) - 1, -1, -1):
        layer, shape = network.layers[index], network.shapes[index]
        if isinstance(layer, GlobalPool) or isinstance(layer, Pool) and shape.out_shape[2:] == (1, 1):
            return index
    return len(network.layers)


def _blocks(network: ir.Network):
    """(label, [(title, colour, height, shape text)], description, params, in head) per layer."""
    head = _head_start(network)
    largest = max(_largest(network), 1)  # (once: per layer, it made drawing quadratic in the layers)
    out = []
    for index, (layer, shape) in enumerate(zip(network.layers, network.shapes)):
        spatial = shape.out_shape[2] if len(shape.out_shape) == 4 else 1
        height = 0.35 + 0.65 * math.log2(1 + spatial) / math.log2(1 + largest)
        if isinstance(layer, MlpConv):
            parts = []
            for stage, width in enumerate(layer.channels):
                title = f"{window_text(layer.kernel, layer.stride, layer.pad)} conv" if stage == 0 else "1×1 conv"
                parts.append((title, COLOURS["conv" if stage == 0 else "one"], height, f"{width}"))
            description = "mlpconv"
        else:
            colour = COLOURS["pool"] if isinstance(layer, (Pool, GlobalPool)) else \
                COLOURS["conv"] if isinstance(layer, Conv) else COLOURS["dense"] if isinstance(layer, Dense) else \
                COLOURS["norm"] if isinstance(layer, BatchNorm) else \
                COLOURS["head"] if isinstance(layer, Softmax) else COLOURS["other"]
            small = isinstance(layer, (Dropout, Flatten, Softmax, GlobalPool))
            parts = [(_title(layer), colour, 0.62 if small else height, "")]
            description = _detail(layer)
        out.append((layer.label, parts, description, short_shape(shape.out_shape), shape.params, index >= head))
    return out


def legend(network: ir.Network) -> list[tuple[str, str]]:
    """(colour, meaning) of each colour the picture of ``network`` uses, in :data:`MEANINGS`' order.
    The head's colour is a softmax's and the shaded band's behind the head."""
    blocks = _blocks(network)
    used = {colour for _, parts, *_ in blocks for _, colour, _, _ in parts}
    band = any(in_head for *_, in_head in blocks)
    meanings = {**MEANINGS, "head": "softmax (shaded: the head)" if COLOURS["head"] in used else "shaded: the head"}
    return [(COLOURS[key], meaning) for key, meaning in meanings.items()
            if COLOURS[key] in used or key == "head" and band]


def _title(layer: ir.Layer) -> str:
    """The few words written inside a layer's block."""
    if isinstance(layer, Pool):
        return f"{layer.mode} pool"
    if isinstance(layer, GlobalPool):
        return "global\navg pool" if layer.mode == "avg" else "global\nmax pool"
    if isinstance(layer, Conv):
        return f"{window_text(layer.kernel, layer.stride, layer.pad)} conv"
    return kind(layer).describe(layer).split(" ")[0]


def _detail(layer: ir.Layer) -> str:
    """What the caption adds: a pool's window and rounding, a dropout's rate."""
    if isinstance(layer, Pool):
        text = f"{window_text(layer.kernel, layer.stride, layer.pad)}, {'ceil' if layer.ceil else 'floor'}"
        return text + (", pad counted" if layer.pad and layer.mode == "avg" and layer.count_pad else "")
    if isinstance(layer, Dropout):
        return f"p = {layer.p:g}"
    if isinstance(layer, Conv):
        return f"→ {layer.out}"
    if isinstance(layer, Dense):
        return f"→ {layer.out}"
    return ""


def _largest(network: ir.Network) -> int:
    sizes = [s.out_shape[2] for s in network.shapes if len(s.out_shape) == 4]
    if len(network.input.shape) == 4:
        sizes.append(network.input.shape[2])
    return max(sizes, default=1)


GAP, STAGE_WIDTH, HEIGHT = 0.35, 0.42, 3.6  # between layers, of one convolution, of the figure (inches)


def _layout(blocks) -> tuple[list[float], list[float], float]:
    """Each layer's drawn and allotted width, and the picture's width (in axes units)."""
    drawn = [len(parts) * STAGE_WIDTH + (0.12 * (len(parts) - 1)) for _, parts, *_ in blocks]
    widths = [max(w, 0.95) for w in drawn]
    return drawn, widths, 1.2 + sum(widths) + GAP * len(blocks) + 0.6


def check_drawable(network: ir.Network, fmt: str = "png", dpi: int = 200) -> None:
    """Refuse, before drawing, a picture beyond the bounds of :mod:`nindsl.kernel.limits`:
    more than MAX_DRAW_BOXES boxes (a layer is one, an mlpconv one per convolution: matplotlib's
    time and memory grow with them, and 3,000 layers took 88 s and 3.6 GB), a resolution over
    MAX_DPI, or a PNG of more than MAX_DRAW_PIXELS."""
    boxes = sum(len(layer.channels) if isinstance(layer, MlpConv) else 1 for layer in network.layers)
    if boxes > limits.MAX_DRAW_BOXES:
        raise NindslError.one("E0401", f"`{network.name}` would be {boxes:,} boxes ({len(network.layers):,} layers, an "
                                       f"mlpconv's convolutions drawn each); `nindsl draw` draws at most "
                                       f"{limits.MAX_DRAW_BOXES:,}", None, "`nindsl summary` lists a network of any size")
    if not 1 <= dpi <= limits.MAX_DPI:
        raise NindslError.one("E0401", f"--dpi {dpi:,} is over the limit of {limits.MAX_DPI:,}", None,
                              "600 is print quality; an .svg or .pdf picture scales without it")
    width = max(6.0, _layout(_blocks(network))[2] * 0.95)
    pixels = int(width * dpi) * int(HEIGHT * dpi)
    if fmt == "png" and pixels > limits.MAX_DRAW_PIXELS:
        raise NindslError.one("E0401", f"the picture would be {int(width * dpi):,}×{int(HEIGHT * dpi):,} pixels; "
                                       f"`nindsl draw` writes at most {limits.MAX_DRAW_PIXELS:,}", None,
                              "lower --dpi, or write an .svg or .pdf")


def render(network: ir.Network, fmt: str = "png", dpi: int = 200) -> bytes:
    """The picture as PNG, SVG or PDF bytes."""
    from matplotlib.patches import FancyBboxPatch, Rectangle

    from .figures import STABLE_METADATA, figure_bytes, pyplot

    check_drawable(network, fmt, dpi)
    plt = pyplot()

    blocks = _blocks(network)
    gap, stage_w = GAP, STAGE_WIDTH
    drawn, widths, total = _layout(blocks)
    figure, axes = plt.subplots(figsize=(max(6.0, total * 0.95), HEIGHT))
    axes.set_xlim(0, total)
    axes.set_ylim(-1.45, 1.2)
    axes.axis("off")
    font = {"family": "DejaVu Sans"}

    # the input
    shape = network.input.shape
    input_h = 0.35 + 0.65 * (math.log2(1 + shape[2]) / math.log2(1 + _largest(network)) if len(shape) == 4 else 0)
    axes.add_patch(Rectangle((0.2, -input_h / 2), 0.5, input_h, facecolor="white", edgecolor="#333", lw=1.0))
    axes.text(0.45, -0.74, f"{network.input.name}\n{short_shape(shape)}", ha="center", va="top", fontsize=7.5,
              **font)
    x = 1.2
    head_x = None
    for (label, parts, description, out_shape, params, in_head), width, inner in zip(blocks, widths, drawn):
        if in_head and head_x is None:
            head_x = x - gap / 2
        axes.annotate("", xy=(x - 0.04, 0), xytext=(x - gap + 0.04, 0),
                      arrowprops=dict(arrowstyle="-|>", color="#666", lw=0.8))
        px = x + (width - inner) / 2
        if len(parts) > 1:  # an mlpconv: its convolutions in one frame
            top = max(h for _, _, h, _ in parts) / 2 + 0.16
            axes.add_patch(FancyBboxPatch((px - 0.06, -top), inner + 0.12, 2 * top, boxstyle="round,pad=0.02",
                                          facecolor="#F2F2F2", edgecolor="#888", lw=0.8, ls="--"))
        for title, colour, height, channels in parts:
            axes.add_patch(FancyBboxPatch((px, -height / 2), stage_w, height, boxstyle="round,pad=0.01",
                                          facecolor=colour, edgecolor="none", alpha=0.9))
            axes.text(px + stage_w / 2, 0, title, rotation=90, ha="center", va="center", fontsize=6.5,
                      color="white", linespacing=1.0, **font)
            if channels:
                axes.text(px + stage_w / 2, height / 2 + 0.05, channels, ha="center", va="bottom", fontsize=6.5,
                          color="#333", **font)
            px += stage_w + 0.12
        centre = x + width / 2
        name = f"{label}" + (f"\n{description}" if description else "")
        axes.text(centre, -0.74, f"{name}\n{out_shape}\n{_params(params)}", ha="center", va="top", fontsize=7,
                  linespacing=1.25, **font)
        x += width + gap
    if head_x is not None:
        head_params = sum(p for *_, p, in_head in blocks if in_head)
        axes.add_patch(Rectangle((head_x, -1.4), x - head_x - gap / 2, 2.3, facecolor=COLOURS["head"], alpha=0.08,
                                 edgecolor=COLOURS["head"], lw=0.8))
        axes.text(head_x + 0.05, 0.8, f"head: {_params(head_params).replace(' params', ' parameters')}",
                  ha="left", va="center", fontsize=7.5, color=COLOURS["head"], weight="bold", **font)
    from matplotlib.patches import Patch

    keys = [Patch(facecolor=colour, edgecolor="none", alpha=0.9, label=meaning) for colour, meaning in legend(network)]
    axes.legend(handles=keys, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(keys), 6), frameon=False,
                handlelength=1.2, columnspacing=1.5, prop={**font, "size": 7})
    axes.text(0.2, 1.1, f"{network.name}: {network.total_params:,} parameters, "
                         f"{network.total_macs / 1e6:,.1f} M multiply-adds per example",
              ha="left", va="center", fontsize=9, weight="bold", **font)
    return figure_bytes(figure, fmt, dpi, bbox_inches="tight", metadata=STABLE_METADATA[fmt])


def draw(network: ir.Network, path: str | Path, dpi: int = 200) -> None:
    """Write the picture to ``path`` (its suffix picks PNG, SVG or PDF), atomically; it
    replaces only a picture."""
    atomic_write_bytes(path, render(network, picture_format(path), dpi), PICTURE)


def picture_format(path: str | Path) -> str:
    """The format ``path``'s suffix names (png, svg, pdf), once matplotlib is known to be there."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise NindslError.one("E0504", f"`{path}`: cannot tell the picture's format from its suffix", None,
                              f"name it .{', .'.join(FORMATS)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NindslError.one("E0504", "`nindsl draw` needs matplotlib", None,
                              "pip install 'nindsl[all]' (or matplotlib)") from None
    return fmt
