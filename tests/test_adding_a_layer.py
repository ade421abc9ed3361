"""CONTRIBUTING.md's walkthrough, done: a toy layer kind (`leaky_relu(alpha)`) is one
registry entry, and every stage takes it: check, summary, fmt, ONNX (run in ONNX Runtime),
the PyTorch twin, and the two agree. Nothing outside this file changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import nindsl
from nindsl.language import ir, layers
from nindsl.language.signature import Param, Signature

SPEC = """network leaky() {
    input x: f32[N, 2, 6, 6]
    mlpconv([4, 3], 3)
    act: leaky_relu(alpha = 0.2)
    global_avgpool()
}
"""


@dataclass(frozen=True, kw_only=True)
class LeakyRelu(ir.Layer):
    alpha: float = 0.01


TOY = layers.LayerKind(
    LeakyRelu,
    {"leaky_relu": Signature((Param("alpha", "fraction", 0.01),), LeakyRelu)},
    shape=lambda layer, shape: ir.LayerShape(shape, shape),
    onnx=lambda graph, layer, x: graph.node("LeakyRelu", [x], layer.label, alpha=layer.alpha),
    twin=lambda layer, shape: layers.Twin(f"nn.LeakyReLU({layer.alpha})"),
    describe=lambda layer: f"leaky relu {layer.alpha:g}",
)


@pytest.fixture
def toy(monkeypatch):
    """Register the toy kind for one test (as its entry in layers.py would, for good)."""
    monkeypatch.setitem(layers.KINDS, LeakyRelu, TOY)
    monkeypatch.setitem(layers.SIGNATURES, "leaky_relu", TOY.signatures["leaky_relu"])


def test_the_toy_layer_goes_through_the_language(toy, cli, tmp_path):
    network = nindsl.check(SPEC)
    assert isinstance(network.layers[1], LeakyRelu) and network.layers[1].alpha == 0.2
    spec = tmp_path / "leaky.nin"
    spec.write_text(SPEC)
    assert "leaky relu 0.2" in cli("summary", spec).out
    assert cli("fmt", "--check", spec).code == 0
    bad = tmp_path / "bad.nin"
    bad.write_text(SPEC.replace("alpha = 0.2", "alpha = 2"))
    result = cli("check", bad)
    assert result.code == 1 and "E0107" in result.err and "alpha" in result.err


def test_the_toy_layer_runs_alike_in_onnxruntime_and_the_twin(toy):
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from nindsl.onnx.runtime import run

    network = nindsl.check(SPEC)
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32)
    onnx_out = run(nindsl.to_onnx(network), x)
    with torch.no_grad():
        twin_out = nindsl.to_torch(network).eval()(torch.from_numpy(x)).numpy()
    assert np.allclose(onnx_out, twin_out, atol=1e-6)
