"""Stage 4: IR network → ONNX model, checked, deterministic, self-describing.

Each layer lowers by its registry entry's rule (:mod:`nindsl.language.layers`), which
writes to a :class:`_Graph`. Weights come from
:mod:`nindsl.weights` and keep the names the PyTorch twin and checkpoints use
(``conv1.0.weight``, ...).

Every intermediate tensor has a ``value_info`` (type and shape), so Netron shows shapes.

Opset 17: every operator nindsl emits (Conv, MaxPool/AveragePool with ``ceil_mode`` and
``count_include_pad``, GlobalAveragePool, Gemm, Softmax over one axis, BatchNormalization)
is stable there, and it is well inside what ONNX Runtime, ONNX's reference evaluator and
TVM's Relax ONNX frontend all import. Nothing newer is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..kernel.diagnostics import NindslError
from ..kernel.io import atomic_write_bytes
from ..kernel.outputs import ONNX_MODEL
from ..kernel.version import __version__
from ..language import ir
from ..language.layers import kind
from ..weights import resolve
from .model import metadata, serialize, weights_origin

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


def _value_info(spec: ir.TensorSpec, shape=None):
    from onnx import TensorProto, helper

    dims = [d if isinstance(d, int) else str(d) for d in (shape or spec.shape)]
    return helper.make_tensor_value_info(spec.name, TensorProto.FLOAT, dims)


@dataclass(frozen=True, eq=False)
class Lowered:
    """A network with its weights resolved once and its ONNX model lowered (and checked) once:
    the one value a command hands to every engine and build, which then neither resolve nor
    lower again (:func:`lower` returns it unchanged, :func:`to_onnx` returns its model)."""

    network: ir.Network
    weights: dict  # name → np.ndarray, checked against the network
    model: object  # onnx.ModelProto
    origin: str  # where the weights came from, as the model's metadata says it
    derived: dict = field(default_factory=dict, repr=False)  # what engines compute from it once (an int8 plan)


def lower(network: ir.Network, weights=None, seed: int = 0) -> Lowered:
    """``network`` with ``weights`` (a checkpoint path, a dict, None to draw them with ``seed``,
    or a :class:`Lowered`, returned as it is) resolved and lowered, once."""
    if isinstance(weights, Lowered):
        return weights
    resolved = resolve(network, weights, seed)
    origin = weights_origin(weights, seed)
    return Lowered(network, resolved, _model(network, resolved, origin, check=True), origin)


def to_onnx(network: ir.Network, weights=None, seed: int = 0, check: bool = True):
    """Lower a checked network to an ``onnx.ModelProto``.

    ``weights``: a checkpoint path, a dict name → array, or None to draw them from the
    spec's init with ``seed`` (a :class:`Lowered`: its model). With ``check`` the model passes
    ``onnx.checker`` (full) and ONNX shape inference must reproduce every shape nindsl inferred.
    """
    if isinstance(weights, Lowered):
        return weights.model
    return _model(network, resolve(network, weights, seed), weights_origin(weights, seed), check)


def _model(network: ir.Network, weights: dict, origin: str, check: bool):
    """The model of ``network`` with resolved ``weights``; ``origin`` goes into its metadata."""
    from onnx import helper

    graph = _Graph(weights=weights)
    x = network.input.name
    outputs = []  # the tensor holding each layer's output, for the shape check
    for layer in network.layers:
        x = kind(layer).onnx(graph, layer, x)
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
    helper.set_model_props(model, metadata(network, origin))
    _add_value_info(model)
    if check:
        check_model(model, network, outputs)
    return model


def _add_value_info(model) -> None:
    """Every intermediate tensor's type and shape (batch dimension by name), so viewers such as
    Netron show them: what ONNX's shape inference derives, in node order."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.graph.value_info.extend(inferred.graph.value_info)


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
    atomic_write_bytes(path, serialize(to_onnx(network, weights, seed)), ONNX_MODEL)


