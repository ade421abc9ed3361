"""ONNX → spec: a chain of the operators nindsl lowers to, read back as layers.

Consecutive Conv+Relu pairs whose later members are 1×1 stride-1 convolutions become one
mlpconv; pooling keeps its rounding (``ceil_mode``), padding and divisor
(``count_include_pad``); weights are renamed to nindsl's (``conv1.0.weight``). A model
nindsl wrote keeps its labels, network name and parameters (its ONNX is reproduced byte
for byte). Anything else (another operator, a branch, a cycle, an attribute nindsl has no
word for) is an error naming the node and its operator; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..kernel import limits
from ..kernel.diagnostics import NindslError
from ..onnx.model import model_metadata, read_model, recorded_params, recorded_preprocess
from .spec import IDENTIFIER, Imported, Labels, label

MIN_OPSET = 11


def _refuse(path: Path, message: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0502", f"`{path}`: {message}", None, help)


@dataclass
class _Node:
    op: str
    name: str
    inputs: list[str]
    output: str
    attrs: dict = field(default_factory=dict)

    def where(self) -> str:
        return f"node `{self.name}` ({self.op})"


_FLOATS = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16: read as float32


def _chain(path: Path, model) -> tuple[str, list[_Node]]:
    """The graph's nodes from its input to its output, each fed by the one before (else an error)."""
    from onnx import helper

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise _refuse(path, f"has {len(inputs)} inputs and {len(graph.output)} outputs; a NiN has one of each")
    element = inputs[0].type.tensor_type.elem_type
    if element not in _FLOATS:
        kind = helper.tensor_dtype_to_np_dtype(element).name if element else "not a tensor"
        raise _refuse(path, f"its input `{inputs[0].name}` is {kind}; nindsl's networks take float32 images or "
                            "vectors", "export the model with a float32 input")
    nodes = []
    for index, node in enumerate(graph.node):
        name = node.name or f"#{index}"
        if len(node.output) < 1:
            raise _refuse(path, f"node `{name}` ({node.op_type}) has no output")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        nodes.append(_Node(node.op_type, name, list(node.input), node.output[0], attrs))
    by_input: dict[str, list[_Node]] = {}
    for node in nodes:
        for name in node.inputs[:1]:
            by_input.setdefault(name, []).append(node)
    chain, tensor, seen = [], inputs[0].name, set()
    while tensor != graph.output[0].name:
        consumers = by_input.get(tensor, [])
        if len(consumers) != 1:
            what = "no node reads" if not consumers else \
                f"{len(consumers)} nodes read ({', '.join(c.where() for c in consumers[:3])})"
            raise _refuse(path, f"{what} tensor `{tensor}`: nindsl imports a chain of layers from input to output")
        node = consumers[0]
        if id(node) in seen:
            raise _refuse(path, f"{node.where()} is part of a cycle")
        seen.add(id(node))
        if any(name and name not in initializers for name in node.inputs[1:]):
            raise _refuse(path, f"{node.where()} takes a computed tensor as a parameter; nindsl's weights are "
                                "constants")
        chain.append(node)
        tensor = node.output
        if len(chain) > len(nodes):
            raise _refuse(path, "the graph has a cycle")
    if len(chain) != len(nodes):
        extra = next(n for n in nodes if id(n) not in seen)
        raise _refuse(path, f"{extra.where()} is not on the path from input to output")
    return inputs[0].name, chain


def _square(node: _Node, name: str, default: int) -> int:
    values = list(node.attrs.get(name, [default, default]))
    if len(values) not in (2, 4) or len(set(values)) != 1:
        raise NindslError.one("E0502", f"{node.where()}: {name} {values} is not the same on every side; nindsl's "
                                       "windows are square and padded alike all round", None)
    return int(values[0])


def _window(node: _Node) -> tuple[int, int, int]:
    if node.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NindslError.one("E0502", f"{node.where()}: auto_pad is not supported; export with explicit pads",
                              None)
    if any(d != 1 for d in node.attrs.get("dilations", [1])):
        raise NindslError.one("E0502", f"{node.where()}: dilated windows have no nindsl layer", None)
    kernel = _square(node, "kernel_shape", 0)
    return kernel, _square(node, "strides", 1), _square(node, "pads", 0)


class _Reader:
    def __init__(self, path: Path, model, tensors: dict[str, np.ndarray], nindsl_made: bool):
        self.path, self.model, self.tensors, self.named = path, model, tensors, nindsl_made
        self.lines: list[str] = []
        self.weights: dict[str, np.ndarray] = {}
        self.origins: dict[str, object] = {}  # label → the node it came from
        # the input's and output's names are tensors' names too: a layer named like one (the last
        # node of a nindsl model carries the output's name) takes its kind's numbered label
        self.taken = Labels(value.name for value in (*model.graph.input, *model.graph.output))

    def label(self, node: _Node, kind: str, suffix: str = "") -> str:
        name = node.name[: -len(suffix)] if suffix and node.name.endswith(suffix) else node.name
        made = label(name if self.named else "", kind, self.taken)
        self.origins[made] = node.where()
        return made

    def tensor(self, node: _Node, index: int) -> np.ndarray:
        if index >= len(node.inputs) or not node.inputs[index]:
            raise NindslError.one("E0502", f"{node.where()} has no input {index}", None)
        value = self.tensors[node.inputs[index]]
        if value.size > limits.MAX_DIM ** 2:
            raise NindslError.one("E0401", f"{node.where()}: a weight of {value.size:,} values is too large", None)
        return _finite(value, f"`{self.path}`: initializer `{node.inputs[index]}` of {node.where()}")

    def conv(self, node: _Node) -> tuple[np.ndarray, np.ndarray, int, int, int]:
        if node.attrs.get("group", 1) != 1:
            raise NindslError.one("E0502", f"{node.where()}: grouped convolutions have no nindsl layer", None)
        kernel, stride, pad = _window(node)
        weight = self.tensor(node, 1)
        if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
            raise NindslError.one("E0502", f"{node.where()}: weight shape {list(weight.shape)} is not square 2-D",
                                  None)
        bias = self.tensor(node, 2) if len(node.inputs) > 2 and node.inputs[2] else \
            np.zeros(weight.shape[0], np.float32)
        return weight, bias, weight.shape[2], stride, pad

    def read(self, chain: list[_Node]) -> None:
        index = 0
        while index < len(chain):
            index = self.layer(chain, index)

    def layer(self, chain: list[_Node], index: int) -> int:
        node = chain[index]
        relu_after = index + 1 < len(chain) and chain[index + 1].op == "Relu"
        match node.op:
            case "Conv":
                return self.convolutions(chain, index)
            case "MaxPool" | "AveragePool":
                kernel, stride, pad = _window(node)
                if node.attrs.get("storage_order", 0):
                    raise NindslError.one("E0502", f"{node.where()}: storage_order 1 is not supported", None)
                mode = "max" if node.op == "MaxPool" else "avg"
                args = [str(kernel)]
                if stride != kernel:
                    args.append(f"stride = {stride}")
                if pad:
                    args.append(f"pad = {pad}")
                if node.attrs.get("ceil_mode", 0):
                    args.append("round = ceil")
                if mode == "avg" and not node.attrs.get("count_include_pad", 0):
                    args.append("count_pad = false")
                self.lines.append(f"{self.label(node, 'pool')}: {mode}pool({', '.join(args)})")
            case "GlobalAveragePool" | "GlobalMaxPool":
                if index + 1 >= len(chain) or chain[index + 1].op != "Flatten" or \
                        chain[index + 1].attrs.get("axis", 1) != 1:
                    raise NindslError.one("E0502", f"{node.where()}: nindsl's global pooling gives [N, C]; "
                                                   "it must be followed by Flatten(axis = 1)", None)
                mode = "avg" if node.op == "GlobalAveragePool" else "max"
                self.lines.append(f"{self.label(node, 'gap' if mode == 'avg' else 'gmp', '.pool')}: "
                                  f"global_{mode}pool()")
                return index + 2
            case "Flatten":
                if node.attrs.get("axis", 1) != 1:
                    raise NindslError.one("E0502", f"{node.where()}: only Flatten(axis = 1) has a nindsl layer", None)
                self.lines.append(f"{self.label(node, 'flatten')}: flatten()")
            case "Softmax":
                if node.attrs.get("axis", 1) not in (1, -1):
                    raise NindslError.one("E0502", f"{node.where()}: only a softmax over the classes (axis 1) has "
                                                   "a nindsl layer", None)
                self.lines.append(f"{self.label(node, 'softmax')}: softmax()")
            case "Relu":
                self.lines.append(f"{self.label(node, 'relu')}: relu()")
            case "Dropout" | "Identity":
                pass  # the identity at inference
            case "Gemm":
                return self.dense(chain, index, relu_after)
            case "BatchNormalization":
                label_ = self.label(node, "bn")
                for position, suffix in enumerate(("weight", "bias", "running_mean", "running_var"), 1):
                    self.weights[f"{label_}.{suffix}"] = self.tensor(node, position)
                eps, momentum = node.attrs.get("epsilon", 1e-5), 1.0 - node.attrs.get("momentum", 0.9)
                self.lines.append(f"{label_}: batchnorm(eps = {_number(eps)}, momentum = {_number(momentum)})")
            case _:
                raise NindslError.one("E0502", f"`{self.path}`: {node.where()} has no nindsl layer", None,
                                      "nindsl imports Conv, Relu, MaxPool, AveragePool, GlobalAveragePool, "
                                      "GlobalMaxPool, Flatten, Gemm, BatchNormalization, Softmax and Dropout")
        return index + 1

    def convolutions(self, chain: list[_Node], index: int) -> int:
        first = chain[index]
        weight, bias, kernel, stride, pad = self.conv(first)
        relu = index + 1 < len(chain) and chain[index + 1].op == "Relu"
        stages = [(weight, bias)]
        end = index + (2 if relu else 1)
        # later stages: 1×1 stride-1 unpadded convolutions, each followed by a ReLU
        while relu and end + 1 < len(chain) and chain[end].op == "Conv" and chain[end + 1].op == "Relu":
            w, b, k, s, p = self.conv(chain[end])
            if (k, s, p) != (1, 1, 0) or self.named and not chain[end].name.endswith(f".{len(stages)}"):
                break
            stages.append((w, b))
            end += 2
        is_conv = not relu or self.named and not first.name.endswith(".0") or \
            not self.named and len(stages) == 1
        window = [f"{kernel}"] + ([f"stride = {stride}"] if stride != 1 else []) + ([f"pad = {pad}"] if pad else [])
        if is_conv:
            name = self.label(first, "conv")
            self.weights[f"{name}.weight"], self.weights[f"{name}.bias"] = weight, bias
            act = "" if relu else ", act = none"
            self.lines.append(f"{name}: conv({weight.shape[0]}, {', '.join(window)}{act})")
            return end
        name = self.label(first, "mlpconv", ".0")
        for stage, (w, b) in enumerate(stages):
            self.weights[f"{name}.{stage}.weight"], self.weights[f"{name}.{stage}.bias"] = w, b
        widths = ", ".join(str(w.shape[0]) for w, _ in stages)
        self.lines.append(f"{name}: mlpconv([{widths}], {', '.join(window)})")
        return end

    def dense(self, chain: list[_Node], index: int, relu: bool) -> int:
        node = chain[index]
        if node.attrs.get("alpha", 1.0) != 1.0 or node.attrs.get("beta", 1.0) != 1.0 or node.attrs.get("transA", 0):
            raise NindslError.one("E0502", f"{node.where()}: only Gemm with alpha = beta = 1 and no transA is a "
                                           "dense layer", None)
        weight = self.tensor(node, 1)
        if not node.attrs.get("transB", 0):
            weight = weight.T
        bias = self.tensor(node, 2) if len(node.inputs) > 2 else np.zeros(weight.shape[0], np.float32)
        name = self.label(node, "dense")
        self.weights[f"{name}.weight"], self.weights[f"{name}.bias"] = np.ascontiguousarray(weight), bias
        self.lines.append(f"{name}: dense({weight.shape[0]}" + (", act = relu)" if relu else ")"))
        return index + (2 if relu else 1)


def _finite(value: np.ndarray, what: str) -> np.ndarray:
    """``value`` as float32, refused where it is NaN or infinite (1e300 in a double is inf as float32):
    no backend computes anything with it, and `run` would print NaN probabilities."""
    with np.errstate(over="ignore", invalid="ignore"):
        weight = value.astype(np.float32)
    if not np.isfinite(weight).all():
        raise NindslError.one("E0501", f"{what} holds NaN or infinite values (as float32)", None,
                              "export the model from a checkpoint whose weights are finite")
    return weight


def _number(value: float) -> str:
    return repr(float(np.float32(value))) if not float(value).is_integer() else str(value)


def read_onnx(path: Path, name: str | None = None) -> Imported:
    """An ONNX file → :class:`Imported` (raises a NindslError naming the node it cannot import)."""
    from onnx import numpy_helper

    model = read_model(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise _refuse(path, f"uses opset {opset}; nindsl imports opset {MIN_OPSET} or later",
                      "convert it with onnx.version_converter")
    meta = model_metadata(model)
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    input_name, chain = _chain(path, model)
    reader = _Reader(path, model, tensors, nindsl_made=bool(meta))
    reader.read(chain)
    if not reader.lines:
        raise _refuse(path, f"holds no layer nindsl imports ({', '.join(n.op for n in chain) or 'no nodes'} "
                            "from input to output); a spec needs at least one",
                      "nindsl imports NiN-style networks: convolutions, pooling, activations, dense layers")
    info = model.graph.input[[i.name for i in model.graph.input].index(input_name)]
    dims = info.type.tensor_type.shape.dim
    shape = tuple(d.dim_param if d.dim_param and IDENTIFIER.match(d.dim_param) else
                  (d.dim_value if d.dim_value else "N") for d in dims)
    if shape and isinstance(shape[0], int):
        shape = ("N",) + shape[1:]  # any batch size
    params = recorded_params(model, path) if meta else {}
    network = name or (model.graph.name if IDENTIFIER.match(model.graph.name[: limits.MAX_NAME + 1]) else None) or \
        _identifier(path.stem)
    output = model.graph.output[0].name
    return Imported(network, _identifier(input_name), shape, _identifier(output), reader.lines, reader.weights,
                    params, header=f"Imported from {path.name} by nindsl import.",
                    train=recorded_preprocess(model, path) if meta else {}, model=str(path),
                    origins=reader.origins)


def _identifier(text: str) -> str:
    """``text`` as a nindsl name: ASCII letters, digits and `_`, at most limits.MAX_NAME characters."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text).strip("_") or "x"
    return (cleaned if IDENTIFIER.match(cleaned) else f"x_{cleaned}")[: limits.MAX_NAME]
