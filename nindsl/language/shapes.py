"""Stage 3: infer every layer's output shape, weights and multiply-adds, exactly.

Each layer's rule is its registry entry's (:mod:`nindsl.language.layers`), built from the
window arithmetic of :mod:`nindsl.language.windows`. Integer arithmetic only. Shape errors
come with the shape trace up to the failing layer and, where pooling rounding is the
cause, the rounding that would fit.
"""

from __future__ import annotations

from dataclasses import replace

from ..kernel import limits
from ..kernel.diagnostics import Collector, Note, Span
from . import ir
from .layers import Pool, kind
from .ir import format_shape, values_per_example
from .windows import ShapeError


def _shapes(layers, input_shape) -> tuple[list[ir.LayerShape], int | None, ShapeError | None]:
    """Run the rules; stop at the first layer that does not fit."""
    shapes, shape = [], input_shape
    for index, layer in enumerate(layers):
        try:
            result = kind(layer).shape(layer, shape)
        except ShapeError as error:
            return shapes, index, error
        shapes.append(result)
        shape = result.out_shape
    return shapes, None, None


def _ceil_fix(layers, input_shape, failed: int) -> tuple[list[int], tuple] | None:
    """Floor-rounded pools before ``failed`` whose switch to ceil lets it fit."""
    floors = [i for i in range(failed) if isinstance(layers[i], Pool) and not layers[i].ceil]
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
                     network.input.span, "an ONNX file, which every backend starts from, holds at most 2 GiB")
    _check_activations(network, shapes, errors)
    errors.raise_if_any()
    return replace(network, shapes=tuple(shapes), output=output)


def _check_activations(network: ir.Network, shapes, errors: Collector) -> None:
    """Every tensor of one example must fit in memory (and in the 32-bit sizes backends index
    with): the input's and each layer's output, the first too large one reported."""
    tensors = [(network.input.span, f"the input `{network.input.name}`", network.input.shape)]
    tensors += [(layer.span, f"`{layer.label}`'s output", s.out_shape) for layer, s in zip(network.layers, shapes)]
    for span, what, shape in tensors:
        values = values_per_example(shape)
        if values > limits.MAX_ACTIVATION:
            errors.error("E0401", f"{what} {format_shape(shape)} holds {values:,} values per example; the "
                                  f"limit is {limits.MAX_ACTIVATION:,} ({limits.MAX_ACTIVATION * 4 / 2**30:g} GiB of "
                                  "float32)", span, "use smaller sizes or more pooling before this layer")
            return


def _output_help(network: ir.Network, shapes, declared) -> str | None:
    final = shapes[-1].out_shape if shapes else network.input.shape
    if len(final) == 4 and len(declared) == 2:
        return "end the network with global_avgpool() to get one score per channel"
    if len(final) == len(declared) and final[1] != declared[1]:
        for layer in reversed(network.layers):
            what = kind(layer).width
            if what is not None:
                param = next((name for name, value in network.params if value == declared[1]), None)
                width = f"`{param}`" if param else str(declared[1])
                return (f"`{layer.label}`{_line(layer.span)} makes {final[1]} channels: "
                        f"set its {what} to {width}")
    return None
