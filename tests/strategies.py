"""Hypothesis strategies: random well-formed NiN specs (shared by the differential tests)."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def layer_lines(draw, channels: int, size: int, max_layers: int = 6):
    """Statements of a small mlpconv stack that fits a `size`×`size` input."""
    lines = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(["mlpconv", "mlpconv", "conv", "maxpool", "avgpool", "relu", "dropout",
                                     "batchnorm"]))
        if kind in ("mlpconv", "conv"):
            kernel = draw(st.integers(1, min(7, size + 2)))
            pad = draw(st.integers(0, min(3, kernel)))
            stride = draw(st.integers(1, 3))
            if size + 2 * pad < kernel:
                continue
            widths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
            if kind == "mlpconv":
                lines.append(f"mlpconv({widths}, kernel = {kernel}, stride = {stride}, pad = {pad})")
                channels = widths[-1]
            else:
                act = draw(st.sampled_from(["relu", "none"]))
                lines.append(f"conv({widths[0]}, {kernel}, stride = {stride}, pad = {pad}, act = {act})")
                channels = widths[0]
            size = (size + 2 * pad - kernel) // stride + 1
        elif kind in ("maxpool", "avgpool"):
            kernel = draw(st.integers(1, min(4, size)))
            stride = draw(st.integers(1, 3))
            pad = draw(st.integers(0, kernel // 2))
            ceil = draw(st.booleans())
            raw_ceil = -(-(size + 2 * pad - kernel) // stride) + 1
            if (raw_ceil - 1) * stride >= size + pad:
                ceil = False  # nindsl refuses it: engines disagree on that last window
            divisor = f", count_pad = {draw(st.sampled_from(['true', 'false']))}" if kind == "avgpool" else ""
            lines.append(f"{kind}({kernel}, stride = {stride}, pad = {pad}, round = {'ceil' if ceil else 'floor'}"
                         f"{divisor})")
            if ceil:
                out = -(-(size + 2 * pad - kernel) // stride) + 1
                size = out - 1 if (out - 1) * stride >= size + pad else out
            else:
                size = (size + 2 * pad - kernel) // stride + 1
        elif kind == "dropout":
            lines.append(f"dropout({draw(st.sampled_from([0.1, 0.5]))})")
        else:
            lines.append(f"{kind}()")
    return lines, channels, size


@st.composite
def specs(draw, max_layers: int = 6):
    """(text, expected final [C, H, W] before the head, classes) for a random valid spec."""
    channels = draw(st.integers(1, 4))
    size = draw(st.integers(3, 17))
    lines, c, s = draw(layer_lines(channels, size, max_layers))
    classes = draw(st.integers(2, 7))
    head = draw(st.sampled_from(["gap", "gmp", "dense"]))
    lines.append(f"mlpconv([{draw(st.integers(1, 8))}, classes], kernel = 1)")
    if head == "gap":
        lines.append("global_avgpool()")
    elif head == "gmp":
        lines.append("global_maxpool()")
    else:
        lines.append("flatten()")
        lines.append("dense(classes)")
    if draw(st.booleans()):
        lines.append("softmax()")
    body = "\n".join(f"    {line}" for line in lines)
    text = (f"network random(classes = {classes}) {{\n    input x: f32[N, {channels}, {size}, {size}]\n{body}\n"
            f"    output y: f32[N, classes]\n}}\n")
    return text, (c, s), classes
