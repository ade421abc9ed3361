"""Stage 3: infer every layer's output shape, weights and multiply-adds, exactly.

One rule per IR layer class in :data:`RULES`. Integer arithmetic only. Shape errors
come with the shape trace up to the failing layer and, where pooling rounding is the
cause, the rounding that would fit.

>>> conv_size(224, kernel=11, stride=4, pad=0), pool_size(54, 3, 2, 0, ceil=True)
(54, 27)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..kernel import limits
from . import ir
from ..kernel.diagnostics import Collector, Note, Span


def conv_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output size of a convolution (always rounded down, as in Caffe and ONNX)."""
    return (size + 2 * pad - kernel) // stride + 1


def pool_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Output size of a pooling window: floor, or Caffe's ceil rule.

    Ceil rounds up, then drops a last window that would start inside the right padding,
    as PyTorch and ONNX Runtime do. (Caffe drops it only when ``pad > 0``; the two
    differ only for a stride larger than the window, which no NiN uses.)
    """
    if not ceil:
        return conv_size(size, kernel, stride, pad)
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


class ShapeError(Exception):
    def __init__(self, message: str, help: str | None = None, code: str = "E0201"):
        super().__init__(message)
        self.message, self.help, self.code = message, help, code


def format_shape(shape) -> str:
    """``[N, 3, 32, 32]``: how every message and report writes a shape."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def shape_fits(expected, shape) -> bool:
    """Does an array shape fit a declared one (a named batch dimension takes any size)?

    >>> shape_fits(("N", 3, 8, 8), (5, 3, 8, 8)), shape_fits((1, 3, 8, 8), (5, 3, 8, 8))
    (True, False)
    """
    return len(shape) == len(expected) and all(not isinstance(e, int) or e == a for e, a in zip(expected, shape))


def _image(layer: ir.Layer, shape, what: str) -> tuple:
    if len(shape) != 4:
        raise ShapeError(f"{what} needs a [N, C, H, W] input, got {format_shape(shape)}",
                         "convolutions and pooling come before global pooling, flatten() and dense()",
                         code="E0202")
    return shape


def _window(shape, kernel: int, stride: int, pad: int, what: str, ceil: bool | None = None) -> tuple[int, int]:
    """Spatial output of a k×k window over [N, C, H, W], or a ShapeError."""
    _, _, height, width = shape
    if pad * 2 > kernel and ceil is not None:
        raise ShapeError(f"padding {pad} is more than half the {kernel}×{kernel} window",
                         f"use pad ≤ {kernel // 2}: PyTorch and ONNX Runtime refuse wider pooling padding",
                         code="E0107")
    if height + 2 * pad < kernel or width + 2 * pad < kernel:
        raise ShapeError(f"{what}'s {kernel}×{kernel} window is larger than its {height}×{width} input"
                         + (f" (padded: {height + 2 * pad}×{width + 2 * pad})" if pad else ""))
    if ceil:
        for extent in {height, width}:
            if pool_size(extent, kernel, stride, pad, True) != -(-(extent + 2 * pad - kernel) // stride) + 1:
                raise ShapeError(
                    f"with `round = ceil`, the last {kernel}×{kernel} window over {extent} would start past "
                    "the input: engines disagree on keeping it (ONNX's shape inference keeps it, "
                    "ONNX Runtime and PyTorch drop it)",
                    f"use `round = floor` (gives {conv_size(extent, kernel, stride, pad)}), a stride no larger "
                    "than the window, or less padding", code="E0107")
    size = (lambda s: pool_size(s, kernel, stride, pad, ceil)) if ceil is not None else \
        (lambda s: conv_size(s, kernel, stride, pad))
    return size(height), size(width)


def _conv_weights(label: str, c_out: int, c_in: int, kernel: int) -> tuple[ir.Weight, ir.Weight]:
    return (ir.Weight(f"{label}.weight", (c_out, c_in, kernel, kernel), "weight"),
            ir.Weight(f"{label}.bias", (c_out,), "bias"))


def mlpconv(layer: ir.MlpConv, shape) -> ir.LayerShape:
    n, c_in, _, _ = _image(layer, shape, "mlpconv")
    height, width = _window(shape, layer.kernel, layer.stride, layer.pad, "mlpconv")
    weights, macs = [], 0
    for index, c_out in enumerate(layer.channels):
        kernel = layer.kernel if index == 0 else 1
        weights += _conv_weights(f"{layer.label}.{index}", c_out, c_in, kernel)
        macs += kernel * kernel * c_in * c_out * height * width
        c_in = c_out
    return ir.LayerShape(shape, (n, c_in, height, width), tuple(weights), macs)


def conv(layer: ir.Conv, shape) -> ir.LayerShape:
    n, c_in, _, _ = _image(layer, shape, "conv")
    height, width = _window(shape, layer.kernel, layer.stride, layer.pad, "conv")
    macs = layer.kernel ** 2 * c_in * layer.out * height * width
    return ir.LayerShape(shape, (n, layer.out, height, width),
                         _conv_weights(layer.label, layer.out, c_in, layer.kernel), macs)


def pool(layer: ir.Pool, shape) -> ir.LayerShape:
    n, c, _, _ = _image(layer, shape, f"{layer.mode}pool")
    height, width = _window(shape, layer.kernel, layer.stride, layer.pad, f"{layer.mode}pool", layer.ceil)
    return ir.LayerShape(shape, (n, c, height, width))


def global_pool(layer: ir.GlobalPool, shape) -> ir.LayerShape:
    n, c, _, _ = _image(layer, shape, f"global_{layer.mode}pool")
    return ir.LayerShape(shape, (n, c))


def elementwise(layer: ir.Layer, shape) -> ir.LayerShape:
    return ir.LayerShape(shape, shape)


def softmax(layer: ir.Softmax, shape) -> ir.LayerShape:
    if len(shape) != 2:
        raise ShapeError(f"softmax needs an [N, classes] input, got {format_shape(shape)}",
                         "put global_avgpool() (or flatten()) before softmax()", code="E0202")
    return ir.LayerShape(shape, shape)


def batchnorm(layer: ir.BatchNorm, shape) -> ir.LayerShape:
    c = shape[1]
    weights = tuple(ir.Weight(f"{layer.label}.{role}", (c,), role)
                    for role in ("weight", "bias", "running_mean", "running_var"))
    return ir.LayerShape(shape, shape, weights)


def flatten(layer: ir.Flatten, shape) -> ir.LayerShape:
    features = 1
    for dim in shape[1:]:
        features *= dim
    return ir.LayerShape(shape, (shape[0], features))


def dense(layer: ir.Dense, shape) -> ir.LayerShape:
    if len(shape) != 2:
        raise ShapeError(f"dense needs an [N, features] input, got {format_shape(shape)}",
                         "put flatten() (or global_avgpool()) before dense()", code="E0202")
    n, features = shape
    weights = (ir.Weight(f"{layer.label}.weight", (layer.out, features), "weight"),
               ir.Weight(f"{layer.label}.bias", (layer.out,), "bias"))
    return ir.LayerShape(shape, (n, layer.out), weights, features * layer.out)


RULES: dict[type, Callable[[ir.Layer, tuple], ir.LayerShape]] = {
    ir.MlpConv: mlpconv,
    ir.Conv: conv,
    ir.Pool: pool,
    ir.GlobalPool: global_pool,
    ir.Dropout: elementwise,
    ir.Softmax: softmax,
    ir.Relu: elementwise,
    ir.BatchNorm: batchnorm,
    ir.Flatten: flatten,
    ir.Dense: dense,
}


def _shapes(layers, input_shape) -> tuple[list[ir.LayerShape], int | None, ShapeError | None]:
    """Run the rules; stop at the first layer that does not fit."""
    shapes, shape = [], input_shape
    for index, layer in enumerate(layers):
        try:
            result = RULES[type(layer)](layer, shape)
        except ShapeError as error:
            return shapes, index, error
        shapes.append(result)
        shape = result.out_shape
    return shapes, None, None


def _ceil_fix(layers, input_shape, failed: int) -> tuple[list[int], tuple] | None:
    """Floor-rounded pools before ``failed`` whose switch to ceil lets it fit."""
    floors = [i for i in range(failed) if isinstance(layers[i], ir.Pool) and not layers[i].ceil]
    candidates = [[i] for i in floors] + ([floors] if len(floors) > 1 else [])
    for switch in candidates:
        trial = [replace(layer, ceil=True) if i in switch else layer for i, layer in enumerate(layers)]
        shapes, stop, _ = _shapes(trial[: failed + 1], input_shape)
        if stop is None:
            return switch, shapes[failed].in_shape
    return None


def _trace(network: ir.Network, shapes) -> list[Note]:
    steps = [f"{network.input.name} {format_shape(network.input.shape)}"]
    steps += [f"{layer.label} {format_shape(s.out_shape)}" for layer, s in zip(network.layers, shapes)]
    if len(steps) > 12:
        steps = steps[:1] + ["…"] + steps[-10:]
    return [Note("shape trace: " + " → ".join(steps))]


def _line(span: Span | None) -> str:
    return f" (line {span.line})" if span else ""


def infer(network: ir.Network) -> ir.Network:
    """Fill ``network.shapes`` (and the output when none was declared), or raise."""
    errors = Collector()
    shapes, stop, error = _shapes(network.layers, network.input.shape)
    if error is not None:
        layer = network.layers[stop]
        help = error.help
        fix = _ceil_fix(network.layers, network.input.shape, stop) if error.code == "E0201" else None
        notes = _trace(network, shapes)
        if fix:
            pools, fitted = fix
            names = ", ".join(f"`{network.layers[i].label}`{_line(network.layers[i].span)}" for i in pools)
            help = (f"`round = ceil` on {names} makes the input here {fitted[2]}×{fitted[3]}, which fits "
                    "(Caffe's reference models round pooling up)")
            notes += [Note("rounds down here", network.layers[i].span) for i in pools]
        elif error.code == "E0201" and help is None:
            help = "use a smaller kernel or stride, add padding, or remove a pooling layer before it"
        errors.error(error.code, error.message, layer.span, help, notes)
        errors.raise_if_any()

    final = shapes[-1].out_shape if shapes else network.input.shape
    output = network.output
    if not output.shape:
        output = replace(output, shape=final)
    elif tuple(output.shape) != tuple(final):
        errors.error("E0203", f"the network ends with {format_shape(final)} but `{output.name}` is declared "
                              f"{format_shape(output.shape)}", output.span, _output_help(network, shapes, output.shape))
    total = sum(s.params for s in shapes)
    if total > limits.MAX_PARAMETERS:
        errors.error("E0401", f"the network has {total:,} parameters; the limit is {limits.MAX_PARAMETERS:,}",
                     network.input.span)
    errors.raise_if_any()
    return replace(network, shapes=tuple(shapes), output=output)


def _output_help(network: ir.Network, shapes, declared) -> str | None:
    final = shapes[-1].out_shape if shapes else network.input.shape
    if len(final) == 4 and len(declared) == 2:
        return "end the network with global_avgpool() to get one score per channel"
    if len(final) == len(declared) and final[1] != declared[1]:
        for layer in reversed(network.layers):
            if isinstance(layer, (ir.MlpConv, ir.Conv, ir.Dense)):
                param = next((name for name, value in network.params if value == declared[1]), None)
                width = f"`{param}`" if param else str(declared[1])
                what = "last width" if isinstance(layer, ir.MlpConv) else "`out`"
                return (f"`{layer.label}`{_line(layer.span)} makes {final[1]} channels: "
                        f"set its {what} to {width}")
    return None
