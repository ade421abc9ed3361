"""`nindsl import`: ONNX files back to specs. Round trips of the shipped specs give the same ONNX
bytes; PyTorch NiNs exported with torch.onnx.export import and run alike; hostile files get
errors naming what is wrong, and nothing is written."""

from __future__ import annotations

import importlib.util

import io

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

import nindsl  # noqa: E402
from nindsl.weights import initial_weights, save_weights  # noqa: E402

from conftest import SHIPPED  # noqa: E402
from differential import outputs  # noqa: E402


def _without_source(path) -> bytes:
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in ("nindsl.spec", "nindsl.spec_hash")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return model.SerializeToString(deterministic=True)


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_compile_import_compile_gives_the_same_onnx(cli, tmp_path, spec):
    weights = tmp_path / "w.safetensors"
    save_weights(weights, initial_weights(nindsl.load(spec)))
    assert cli("compile", spec, "-o", tmp_path / "a.onnx", "--weights", weights).code == 0
    result = cli("import", tmp_path / "a.onnx", "-o", tmp_path / "b.nin", "--weights-out", weights)
    assert result.code == 0, result.err
    assert cli("fmt", "--check", tmp_path / "b.nin").code == 0
    assert cli("compile", tmp_path / "b.nin", "-o", tmp_path / "b.onnx", "--weights", weights).code == 0
    assert _without_source(tmp_path / "a.onnx") == _without_source(tmp_path / "b.onnx")


def _torch_nin():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    def block(c_in, widths, kernel, stride=1, pad=0):
        layers, c = [], c_in
        for index, width in enumerate(widths):
            layers += [nn.Conv2d(c, width, kernel if index == 0 else 1, stride if index == 0 else 1,
                                 pad if index == 0 else 0), nn.ReLU()]
            c = width
        return layers

    torch.manual_seed(0)
    return nn.Sequential(*block(3, [16, 12, 12], 5, pad=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
                         *block(12, [16, 16], 3, pad=1), nn.AvgPool2d(3, 2, padding=1, ceil_mode=True),
                         *block(16, [16, 10], 3, pad=1), nn.AvgPool2d(2, 1, padding=1, count_include_pad=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Softmax(1)).eval()


@pytest.mark.slow
def test_a_pytorch_nin_with_padded_average_pools_imports_and_agrees(cli, tmp_path):
    import torch

    model = _torch_nin()
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(1, 3, 19, 19),), buffer, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    (tmp_path / "t.onnx").write_bytes(buffer.getvalue())
    result = cli("import", tmp_path / "t.onnx", "-o", tmp_path / "t.nin", "--weights-out", tmp_path / "t.safetensors")
    assert result.code == 0, result.err
    text = (tmp_path / "t.nin").read_text()
    assert "mlpconv([16, 12, 12], 5, pad = 2)" in text and "count_pad = false" in text
    assert "avgpool(3, stride = 2, pad = 1, round = ceil)" in text
    network = nindsl.load(tmp_path / "t.nin")
    from nindsl.weights import load_weights

    x = np.random.default_rng(1).standard_normal((2, 3, 19, 19)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    results = outputs(network, load_weights(network, tmp_path / "t.safetensors"), x)  # every engine, TVM too
    assert {"ort-all", "reference", "torch"} <= set(results)
    assert "tvm-llvm" in results or importlib.util.find_spec("tvm") is None
    for engine, got in results.items():
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=engine)


def _graph(nodes, initializers=(), opset=17, shape=(1, 3, 8, 8)):
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _hostile():
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    return {
        "wrong_op": (_graph([helper.make_node("Tanh", ["x"], ["y"], name="squash")]), "node `squash` (Tanh)"),
        "branch": (_graph([helper.make_node("Relu", ["x"], ["a"], name="r1"),
                           helper.make_node("Relu", ["x"], ["b"], name="r2"),
                           helper.make_node("Add", ["a", "b"], ["y"], name="add")]), "2 nodes read"),
        "old_opset": (_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], opset=9), "opset 9"),
        "dilated": (_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3],
                                             dilations=[2, 2])], [w]), "node `c` (Conv): dilated"),
    }


@pytest.mark.parametrize("case", sorted(_hostile()))
def test_hostile_models_are_refused_by_name(cli, tmp_path, case):
    model, message = _hostile()[case]
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    result = cli("import", path, "-o", tmp_path / "m.nin")
    assert result.code == 1 and message in result.err and "Traceback" not in result.err
    assert not (tmp_path / "m.nin").exists()


def test_a_truncated_file_is_refused(cli, tmp_path):
    good = tmp_path / "a.onnx"
    assert cli("compile", SHIPPED[0], "-o", good).code == 0
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:2000])
    result = cli("import", cut, "-o", tmp_path / "m.nin")
    assert result.code == 1 and "E0502" in result.err and not (tmp_path / "m.nin").exists()
