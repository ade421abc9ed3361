"""`nindsl summary`: the network at a glance, and the paper's argument for its head."""

from __future__ import annotations

from . import ir
from .layers import Conv, GlobalPool, MlpConv, Pool, kind, window_text


def short_shape(shape) -> str:
    """`3×32×32`: a shape without its batch dimension."""
    return "×".join(str(d) for d in shape[1:]) or "scalar"


def head_comparison(network: ir.Network) -> str | None:
    """The paper's point: what a fully connected classifier over the same map would cost."""
    for index in range(len(network.layers) - 1, -1, -1):
        layer, shape = network.layers[index], network.shapes[index]
        pools_to_one = isinstance(layer, Pool) and layer.mode == "avg" and shape.out_shape[2:] == (1, 1)
        if isinstance(layer, GlobalPool) and layer.mode == "avg" or pools_to_one:
            _, classes, height, width = shape.in_shape
            maker = next((i for i in range(index - 1, -1, -1)
                          if isinstance(network.layers[i], (MlpConv, Conv))), None)
            if maker is None:
                return None
            last = network.layers[maker]
            features = network.shapes[maker].in_shape[1]
            if isinstance(last, MlpConv) and len(last.channels) > 1:
                features = last.channels[-2]
            fc = features * height * width * classes + classes
            return (f"head: {_head(network, index)}; a fully connected classifier over the same "
                    f"{features}×{height}×{width} feature map would need {fc:,} "
                    f"(here a 1×1 convolution makes the {classes} class maps with "
                    f"{features * classes + classes:,}).")
    return None


def _head(network: ir.Network, index: int) -> str:
    """What the head is, from its pooling layer (``index``) on: `global average pooling has 0
    parameters`, or, for an average pool whose window covers the whole map, that pool and the
    layers after it, named as the spec has them."""
    layer, shape = network.layers[index], network.shapes[index]
    if isinstance(layer, GlobalPool):
        return "global average pooling has 0 parameters"
    height, width = shape.in_shape[2:]
    parts = [f"`{layer.label}` ({kind(layer).describe(layer)}: one window over the whole {height}×{width} map, "
             "so global average pooling in effect)"] + [_named(later) for later in network.layers[index + 1:]]
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    total = sum(s.params for s in network.shapes[index:])
    return f"{listed} {'have' if len(parts) > 1 else 'has'} {total:,} parameters"


def _named(layer: ir.Layer) -> str:
    """`flatten1`, or `scores` (dense → 10) where the label does not say what the layer is."""
    description = kind(layer).describe(layer)
    same = layer.label.rstrip("0123456789") == description
    return f"`{layer.label}`" if same else f"`{layer.label}` ({description})"


def rows(network: ir.Network, wide: bool = False) -> list[tuple[str, str, str, int, int]]:
    """(label, description, output shape, parameters, multiply-adds) per layer."""
    out = []
    for layer, shape in zip(network.layers, network.shapes):
        if wide and isinstance(layer, MlpConv):
            height, width = shape.out_shape[2:]
            c_in = shape.in_shape[1]
            for index, c_out in enumerate(layer.channels):
                kernel = layer.kernel if index == 0 else 1
                description = (window_text(kernel, layer.stride, layer.pad) if index == 0 else "1×1") + f" conv → {c_out}"
                params = kernel * kernel * c_in * c_out + c_out
                out.append((f"{layer.label}.{index}", description, short_shape((0, c_out, height, width)), params,
                            kernel * kernel * c_in * c_out * height * width))
                c_in = c_out
            continue
        out.append((layer.label, kind(layer).describe(layer), short_shape(shape.out_shape), shape.params, shape.macs))
    return out
