"""Stage 4: IR network → ONNX model, checked, deterministic, self-describing.

One lowering rule per IR layer class in :data:`RULES`. Weights come from
:mod:`nindsl.weights` and keep the names the PyTorch twin and checkpoints use
(``conv1.0.weight``, ...).

Opset 17: every operator nindsl emits (Conv, MaxPool/AveragePool with ``ceil_mode`` and
``count_include_pad``, GlobalAveragePool, Gemm, Softmax over one axis, BatchNormalization)
is stable there, and it is well inside what ONNX Runtime, ONNX's reference evaluator and
TVM's Relax ONNX frontend all import. Nothing newer is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..kernel.diagnostics import NindslError
from ..kernel.io import atomic_write_bytes
from ..kernel.version import __version__
from ..language import ir
from ..weights import resolve
from .model import metadata, serialize

OPSET = 17


@dataclass
class _Graph:
    """Nodes and initializers being built, in order (so output is deterministic)."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def weight(self, name: str) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(self.weights[name], name))
        return name


def _conv(graph: _Graph, x: str, prefix: str, kernel: int, stride: int, pad: int, relu: bool) -> str:
    y = graph.node("Conv", [x, graph.weight(f"{prefix}.weight"), graph.weight(f"{prefix}.bias")], prefix,
                   kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    return graph.node("Relu", [y], f"{prefix}.relu") if relu else y


def mlpconv(graph: _Graph, layer: ir.MlpConv, x: str) -> str:
    for index in range(len(layer.channels)):
        first = index == 0
        x = _conv(graph, x, f"{layer.label}.{index}", layer.kernel if first else 1,
                  layer.stride if first else 1, layer.pad if first else 0, relu=True)
    return x


def conv(graph: _Graph, layer: ir.Conv, x: str) -> str:
    return _conv(graph, x, layer.label, layer.kernel, layer.stride, layer.pad, relu=layer.act == "relu")


def pool(graph: _Graph, layer: ir.Pool, x: str) -> str:
    attributes = dict(kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2, pads=[layer.pad] * 4,
                      ceil_mode=int(layer.ceil))
    if layer.mode == "avg":  # divide by the valid elements at a ragged border, as Caffe does
        return graph.node("AveragePool", [x], layer.label, count_include_pad=0, **attributes)
    return graph.node("MaxPool", [x], layer.label, **attributes)


def global_pool(graph: _Graph, layer: ir.GlobalPool, x: str) -> str:
    op = "GlobalAveragePool" if layer.mode == "avg" else "GlobalMaxPool"
    pooled = graph.node(op, [x], f"{layer.label}.pool")
    return graph.node("Flatten", [pooled], layer.label, axis=1)


def dropout(graph: _Graph, layer: ir.Dropout, x: str) -> str:
    return x  # inference graph: dropout is the identity


def softmax(graph: _Graph, layer: ir.Softmax, x: str) -> str:
    return graph.node("Softmax", [x], layer.label, axis=1)


def relu(graph: _Graph, layer: ir.Relu, x: str) -> str:
    return graph.node("Relu", [x], layer.label)


def batchnorm(graph: _Graph, layer: ir.BatchNorm, x: str) -> str:
    names = [graph.weight(f"{layer.label}.{role}") for role in ("weight", "bias", "running_mean", "running_var")]
    return graph.node("BatchNormalization", [x, *names], layer.label, epsilon=layer.eps,
                      momentum=1.0 - layer.momentum)


def flatten(graph: _Graph, layer: ir.Flatten, x: str) -> str:
    return graph.node("Flatten", [x], layer.label, axis=1)


def dense(graph: _Graph, layer: ir.Dense, x: str) -> str:
    y = graph.node("Gemm", [x, graph.weight(f"{layer.label}.weight"), graph.weight(f"{layer.label}.bias")],
                   layer.label, transB=1)
    return graph.node("Relu", [y], f"{layer.label}.relu") if layer.act == "relu" else y


RULES: dict[type, Callable[[_Graph, ir.Layer, str], str]] = {
    ir.MlpConv: mlpconv,
    ir.Conv: conv,
    ir.Pool: pool,
    ir.GlobalPool: global_pool,
    ir.Dropout: dropout,
    ir.Softmax: softmax,
    ir.Relu: relu,
    ir.BatchNorm: batchnorm,
    ir.Flatten: flatten,
    ir.Dense: dense,
}


def _value_info(spec: ir.TensorSpec, shape=None):
    from onnx import TensorProto, helper

    dims = [d if isinstance(d, int) else str(d) for d in (shape or spec.shape)]
    return helper.make_tensor_value_info(spec.name, TensorProto.FLOAT, dims)


def to_onnx(network: ir.Network, weights=None, seed: int = 0, check: bool = True):
    """Lower a checked network to an ``onnx.ModelProto``.

    ``weights``: a checkpoint path, a dict name → array, or None to draw them from the
    spec's init with ``seed``. With ``check`` the model passes ``onnx.checker`` (full)
    and ONNX shape inference must reproduce every shape nindsl inferred.
    """
    from onnx import helper

    graph = _Graph(weights=resolve(network, weights, seed))
    x = network.input.name
    outputs = []  # the tensor holding each layer's output, for the shape check
    for layer in network.layers:
        x = RULES[type(layer)](graph, layer, x)
        outputs.append(x)
    output = network.output.name
    if x == network.input.name or graph.nodes[-1].output[0] != x:
        graph.node("Identity", [x], output)
    else:  # the last node writes the declared output directly
        graph.nodes[-1].output[0] = graph.nodes[-1].name = output
    outputs = [output if name == x else name for name in outputs]
    onnx_graph = helper.make_graph(graph.nodes, network.name, [_value_info(network.input)],
                                   [_value_info(network.output)], graph.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nindsl", producer_version=__version__,
                              doc_string=f"{network.name}, compiled by nindsl {__version__} from a .nin spec")
    model.ir_version = 8  # the IR version of opset 17, readable by older runtimes too
    origin = "drawn from the spec's init, seed %d" % seed if weights is None else \
        (str(weights) if not isinstance(weights, dict) else "given in memory")
    helper.set_model_props(model, metadata(network, origin))
    if check:
        check_model(model, network, outputs)
    return model


def check_model(model, network: ir.Network, outputs: list[str]) -> None:
    """ONNX's full checker, then shape inference against nindsl's own shapes."""
    import onnx

    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_param or d.dim_value for d in dims)
    for layer, name, shape in zip(network.layers, outputs, network.shapes):
        if name != network.input.name and shapes.get(name) != tuple(shape.out_shape):
            raise AssertionError(f"ONNX infers {shapes[name]} for `{layer.label}`; nindsl inferred "
                                 f"{shape.out_shape}: a bug in nindsl's lowering or shape rules")


def write_onnx(network: ir.Network, path: str | Path, weights=None, seed: int = 0) -> None:
    """Lower, check and write atomically: the same spec, weights and seed give the same bytes."""
    path = Path(path)
    if path.is_dir():
        raise NindslError.one("E0301", f"`{path}` is a folder; give a file name for the model", None)
    atomic_write_bytes(path, serialize(to_onnx(network, weights, seed)))


