"""Average pooling's divisor: Caffe's rule by default (padding counts, the window clipped to
the padded input), or the covered input elements with `count_pad = false`; every engine agrees.

Caffe's pooling_layer.cpp: ``hend = min(hstart + kernel_h, height + pad_h)``,
``pool_size = (hend - hstart) * (wend - wstart)``, then the window is clipped to the input
and the sum divided by ``pool_size``.
"""

from __future__ import annotations

import numpy as np
import pytest

import nindsl
from nindsl.language import summary

pytest.importorskip("onnxruntime")

from differential import assert_engines_agree, outputs  # noqa: E402

SPEC = """network p() {{
    input x: f32[N, 1, 8, 8]
    avgpool(3, stride = 2, pad = 1, round = ceil{divisor})
}}
"""


def caffe_avgpool(x: np.ndarray, kernel: int, stride: int, pad: int, out: int) -> np.ndarray:
    """Caffe's AVE pooling (pooling_layer.cpp, Forward_cpu), transcribed loop for loop."""
    n, c, height, width = x.shape
    y = np.zeros((n, c, out, out), np.float64)
    for ph in range(out):
        for pw in range(out):
            hstart, wstart = ph * stride - pad, pw * stride - pad
            hend, wend = min(hstart + kernel, height + pad), min(wstart + kernel, width + pad)
            pool_size = (hend - hstart) * (wend - wstart)
            hstart, wstart, hend, wend = max(hstart, 0), max(wstart, 0), min(hend, height), min(wend, width)
            y[:, :, ph, pw] = x[:, :, hstart:hend, wstart:wend].sum(axis=(2, 3)) / pool_size
    return y


def test_the_default_is_caffes_divisor_on_every_engine():
    network = nindsl.check(SPEC.format(divisor=""))
    ones = np.ones((1, 1, 8, 8), np.float32)
    results = outputs(network, {}, ones, tvm=False)
    assert {"ort-all", "reference", "torch"} <= set(results)
    for engine, result in results.items():
        np.testing.assert_allclose(result[0, 0, 0], [4 / 9, 2 / 3, 2 / 3, 2 / 3, 1 / 3], rtol=1e-6, err_msg=engine)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    expected = caffe_avgpool(x, 3, 2, 1, 5)
    for engine, result in outputs(network, {}, x, tvm=False).items():
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6, err_msg=engine)


def test_count_pad_false_divides_by_the_covered_elements():
    network = nindsl.check(SPEC.format(divisor=", count_pad = false"))
    for engine, result in outputs(network, {}, np.ones((1, 1, 8, 8), np.float32), tvm=False).items():
        np.testing.assert_allclose(result, 1.0, rtol=1e-6, err_msg=engine)


@pytest.mark.parametrize("divisor", ["", ", count_pad = false"])
def test_the_onnx_attribute_and_the_twin_say_the_same(divisor):
    network = nindsl.check(SPEC.format(divisor=divisor))
    counts = divisor == ""
    (node,) = nindsl.to_onnx(network).graph.node
    assert {a.name: a.i for a in node.attribute}["count_include_pad"] == int(counts)
    from nindsl.torch.twin import twin_source

    assert f"count_include_pad={counts}" in twin_source(network)
    (_, description, *_), = summary.rows(network)
    assert description.endswith(", padding counted" if counts else ", padding not counted")


def test_maxpool_takes_no_divisor():
    with pytest.raises(nindsl.NindslError) as error:
        nindsl.check("network p() {\n    input x: f32[N, 1, 8, 8]\n    maxpool(3, count_pad = true)\n}\n")
    (diagnostic,) = error.value.diagnostics
    assert diagnostic.code == "E0102" and diagnostic.span is not None


@pytest.mark.tvm
@pytest.mark.slow
@pytest.mark.parametrize("divisor", ["", ", count_pad = false"])
def test_tvm_agrees_on_both_divisors(divisor):
    pytest.importorskip("tvm")
    spec = ("network p() {{\n    input x: f32[N, 3, 13, 13]\n    mlpconv([4, 4], 3, pad = 1)\n"
            "    avgpool(3, stride = 2, pad = 1, round = ceil{d})\n    avgpool(2, stride = 1, pad = 1, round = ceil{d})\n"
            "    global_avgpool()\n}}\n").format(d=divisor)
    results = assert_engines_agree(nindsl.check(spec))
    assert "tvm-llvm" in results
