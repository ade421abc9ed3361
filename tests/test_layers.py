"""The layer registry: every kind of layer is complete, and every stage finds it there.

Needs no optional dependency: the ONNX lowering writes to a recording graph and the
twin's code is compiled (not run) as Python."""

from __future__ import annotations

import dataclasses

import pytest

import nindsl
from nindsl.language import ir, layers
from nindsl.language.signature import REQUIRED, Signature

# A spec line that uses each spec name, and the input it needs.
IMAGE, VECTOR = "f32[N, 4, 9, 9]", "f32[N, 6]"
USES = {
    "mlpconv": (IMAGE, "mlpconv([8, 5], 3, pad = 1)"),
    "conv": (IMAGE, "conv(7, 3, stride = 2)"),
    "maxpool": (IMAGE, "maxpool(3, stride = 2, round = ceil)"),
    "avgpool": (IMAGE, "avgpool(3, stride = 2, pad = 1, count_pad = false)"),
    "global_avgpool": (IMAGE, "global_avgpool()"),
    "global_maxpool": (IMAGE, "global_maxpool()"),
    "dropout": (IMAGE, "dropout(0.5)"),
    "softmax": (VECTOR, "softmax()"),
    "relu": (IMAGE, "relu()"),
    "batchnorm": (IMAGE, "batchnorm()"),
    "flatten": (IMAGE, "flatten()"),
    "dense": (VECTOR, "dense(3, act = relu)"),
}
ONNX_OPS = {"Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Softmax",
            "BatchNormalization", "Gemm", "Identity"}


class RecordingGraph:
    """The Graph protocol, keeping the nodes and weights a lowering asks for."""

    def __init__(self):
        self.nodes, self.weights = [], []

    def node(self, op, inputs, output, **attributes):
        self.nodes.append((op, inputs, output, attributes))
        return output

    def weight(self, name):
        self.weights.append(name)
        return name


def _network(name: str) -> ir.Network:
    shape, line = USES[name]
    return nindsl.check(f"network t() {{\n    input x: {shape}\n    {line}\n}}\n")


def test_every_spec_name_is_exercised_here():
    assert set(USES) == set(layers.SIGNATURES)


@pytest.mark.parametrize("entry", list(layers.KINDS.values()), ids=lambda e: e.layer.__name__)
def test_every_entry_is_complete(entry):
    cls = entry.layer
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen and issubclass(cls, ir.Layer)
    assert entry.signatures and all(isinstance(s, Signature) for s in entry.signatures.values())
    for field in ("shape", "onnx", "twin", "describe"):
        assert callable(getattr(entry, field)), field
    for signature in entry.signatures.values():
        assert all(p.default is REQUIRED or p.default is None or isinstance(p.default, (int, float, str))
                   for p in signature.params)


@pytest.mark.parametrize("name", sorted(USES))
def test_every_stage_handles_every_layer(name):
    network = _network(name)
    (layer,), (shape,) = network.layers, network.shapes
    entry = layers.kind(layer)
    assert name in entry.signatures and isinstance(layer, entry.layer)
    assert entry.describe(layer)  # summary
    graph = RecordingGraph()
    out = entry.onnx(graph, layer, "x")
    assert {op for op, *_ in graph.nodes} <= ONNX_OPS
    assert out == "x" or out == graph.nodes[-1][2]  # it returns the tensor it wrote last
    assert sorted(graph.weights) == sorted(w.name for w in shape.weights)  # every weight, nothing else
    twin = entry.twin(layer, shape)
    compile(f"{twin.helper}\nmodule = {twin.make}\n", f"<twin of {name}>", "exec")  # valid Python


def test_an_unregistered_layer_is_a_named_bug():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Unknown(ir.Layer):
        pass

    with pytest.raises(NotImplementedError, match="Unknown is not registered"):
        layers.kind(Unknown(label="u"))


def test_a_layer_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice"):
        layers.register(layers.KINDS[layers.Relu])
