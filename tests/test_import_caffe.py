"""`nindsl import NET.prototxt [--weights NET.caffemodel]`: Caffe nets (old `layers {}` and new
`layer {}` syntax) back to specs. The model zoo's two NiNs import with their parameter counts,
learning rates and inits; weights read from a .caffemodel give the numbers of a PyTorch forward of
the same blobs; hostile files get located errors, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("google.protobuf")

from google.protobuf import text_format  # noqa: E402

import nindsl  # noqa: E402
from nindsl.importers.caffe_schema import messages  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "caffe"
CIFAR = FIXTURES / "nin_cifar10_train_val.prototxt"
IMAGENET = FIXTURES / "nin_imagenet_deploy.prototxt"


def _net(path: Path):
    return text_format.Parse(path.read_text(), messages()["NetParameter"](), allow_unknown_field=True)


def _expected_stages(path: Path) -> list[list[tuple[float, float, float]]]:
    """Per mlpconv, per stage: (weight lr, bias lr, gaussian std), read from the prototxt."""
    net = _net(path)
    blocks = []
    for layer in [*net.layers, *net.layer]:
        if layer.HasField("convolution_param"):
            lrs = list(layer.blobs_lr) if hasattr(layer, "blobs_lr") else [p.lr_mult for p in layer.param]
            param = layer.convolution_param
            stage = (lrs[0], lrs[1], param.weight_filler.std)
            if param.kernel_size[0] == 1:
                blocks[-1].append(stage)
            else:
                blocks.append([stage])
    return blocks


@pytest.mark.parametrize(("path", "extra", "params"), [(CIFAR, ["--input-shape", "3,32,32"], 966_986),
                                                       (IMAGENET, [], 7_595_176)], ids=["cifar10", "imagenet"])
def test_the_model_zoo_nins_import_with_their_counts_rates_and_inits(cli, tmp_path, path, extra, params):
    out = tmp_path / "net.nin"
    result = cli("import", path, "-o", out, *extra)
    assert result.code == 0, result.err
    assert f"{params:,} parameters" in result.err
    assert cli("check", out).code == 0
    assert cli("fmt", "--check", out).code == 0
    network = nindsl.load(out)
    assert network.total_params == params
    mlpconvs = [layer for layer in network.layers if type(layer).__name__ == "MlpConv"]
    expected = _expected_stages(path)
    assert len(mlpconvs) == len(expected) and all(len(m.channels) == 3 for m in mlpconvs)
    for layer, stages in zip(mlpconvs, expected):
        for index, (weight_lr, bias_lr, std) in enumerate(stages):
            pick = (lambda value: value[index] if isinstance(value, tuple) else value)  # noqa: B023
            init = pick(layer.init)
            assert init.kind == "normal" and init.std == pytest.approx(std, rel=1e-6)
            assert pick(layer.lr_scale) == pytest.approx(weight_lr, rel=1e-6)
            assert pick(layer.lr_scale) * pick(layer.bias_lr_scale) == pytest.approx(bias_lr, rel=1e-6)
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds[-1] == "GlobalPool" and kinds.count("Dropout") == (2 if path == CIFAR else 1)


_SMALL = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 13 dim: 13 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "cccp1" type: "Convolution" bottom: "conv1" top: "cccp1"
        convolution_param { num_output: 6 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "cccp1" top: "cccp1" }
layer { name: "pool1" type: "Pooling" bottom: "cccp1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 5 kernel_size: 3 stride: 1 pad: 1 } some_future_field: 3 }
layer { name: "relu3" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "cccp2" type: "Convolution" bottom: "conv2" top: "cccp2" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu4" type: "ReLU" bottom: "cccp2" top: "cccp2" }
layer { name: "pool2" type: "Pooling" bottom: "cccp2" top: "pool2" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "pool3" type: "Pooling" bottom: "pool2" top: "pool3" pooling_param { pool: AVE global_pooling: true } }
layer { name: "prob" type: "Softmax" bottom: "pool3" top: "prob" }
"""
_SHAPES = {"conv1": (8, 3, 3, 3), "cccp1": (6, 8, 1, 1), "conv2": (5, 6, 3, 3), "cccp2": (4, 5, 1, 1)}


def _caffemodel(path: Path, rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random blobs for `_SMALL`, saved as Caffe does (bias in the legacy 1×1×1×N form for one layer)."""
    net = messages()["NetParameter"](name="small")
    blobs = {}
    for name, shape in _SHAPES.items():
        weight = rng.standard_normal(shape).astype(np.float32) * 0.3
        bias = rng.standard_normal(shape[0]).astype(np.float32) * 0.1
        layer = net.layer.add(name=name, type="Convolution")
        w = layer.blobs.add()
        w.shape.dim.extend(shape)
        w.data.extend(weight.ravel().tolist())
        b = layer.blobs.add()
        if name == "cccp1":
            b.num, b.channels, b.height, b.width = 1, 1, 1, shape[0]
        else:
            b.shape.dim.append(shape[0])
        b.data.extend(bias.ravel().tolist())
        blobs[name] = (weight, bias)
    path.write_bytes(net.SerializeToString())
    return blobs


def _torch_forward(blobs, x: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    f = torch.nn.functional

    def conv(t, name, pad=0):
        weight, bias = blobs[name]
        return f.relu(f.conv2d(t, torch.from_numpy(weight), torch.from_numpy(bias), padding=pad))

    with torch.no_grad():
        t = torch.from_numpy(x)
        t = f.max_pool2d(conv(conv(t, "conv1", 1), "cccp1"), 3, 2, ceil_mode=True)
        t = f.avg_pool2d(conv(conv(t, "conv2", 1), "cccp2"), 3, 2, ceil_mode=True)
        return torch.softmax(t.mean((2, 3)), 1).numpy()


@pytest.mark.slow
def test_weights_from_a_caffemodel_give_the_numbers_of_the_same_blobs(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    from differential import outputs

    from nindsl.weights import load_weights

    (tmp_path / "small.prototxt").write_text(_SMALL)
    blobs = _caffemodel(tmp_path / "small.caffemodel", np.random.default_rng(0))
    result = cli("import", tmp_path / "small.prototxt", "-o", tmp_path / "small.nin",
                 "--weights", tmp_path / "small.caffemodel", "--weights-out", tmp_path / "w.safetensors")
    assert result.code == 0, result.err
    text = (tmp_path / "small.nin").read_text()
    assert "mlpconv([8, 6], 3, pad = 1, init = xavier())" in text and "softmax()" in text
    assert "global_avgpool()" in text and "avgpool(3, stride = 2, round = ceil)" in text
    network = nindsl.load(tmp_path / "small.nin")
    x = np.random.default_rng(1).standard_normal((2, 3, 13, 13)).astype(np.float32)
    expected = _torch_forward(blobs, x)
    results = outputs(network, load_weights(network, tmp_path / "w.safetensors"), x, tvm=False)
    assert {"ort-all", "torch"} <= set(results)
    for engine, got in results.items():
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=engine)


def test_a_truncated_caffemodel_is_refused(cli, tmp_path):
    (tmp_path / "small.prototxt").write_text(_SMALL)
    _caffemodel(tmp_path / "small.caffemodel", np.random.default_rng(0))
    data = (tmp_path / "small.caffemodel").read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) // 2])
    result = cli("import", tmp_path / "small.prototxt", "-o", tmp_path / "m.nin", "--weights",
                 tmp_path / "cut.caffemodel", "--weights-out", tmp_path / "w.safetensors")
    assert result.code == 1 and "E0502" in result.err and "cut.caffemodel" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "m.nin").exists() and not (tmp_path / "w.safetensors").exists()


def _hostile():
    conv = 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" ' \
           'convolution_param { num_output: %s kernel_size: 3 } }\n'
    head = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
    return {
        "unknown_type": (head + conv % 4 + 'layer { name: "squash" type: "Frobnicate" bottom: "conv1" top: "s" }\n',
                         "4:9: error[E0502]", "layer `squash` (Frobnicate) has no nindsl layer"),
        "old_unsupported": (head + 'layers { name: "norm1" type: LRN bottom: "data" top: "norm1" }\n',
                            "3:10: error[E0502]", "layer `norm1` (LRN) has no nindsl layer"),
        "syntax": (head + 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
                          '  convolution_param { num_output: 4 kernel_size 3 } }\n',
                   "m.prototxt:4:", "not a valid Caffe prototxt"),
        "huge_num_output": (head + conv % 4_000_000_000, "3:9: error[E0401]", "num_output 4,000,000,000"),
        "branch": (head + conv % 4 + 'layer { name: "c2" type: "Convolution" bottom: "data" top: "c2" '
                                     'convolution_param { num_output: 4 kernel_size: 1 } }\n',
                   "error[E0502]", "layer `c2` (Convolution) reads ['data']"),
    }


@pytest.mark.parametrize("case", sorted(_hostile()))
def test_hostile_prototxts_get_located_errors_and_nothing_is_written(cli, tmp_path, case):
    text, where, message = _hostile()[case]
    (tmp_path / "m.prototxt").write_text(text)
    result = cli("import", tmp_path / "m.prototxt", "-o", tmp_path / "m.nin")
    assert result.code == 1, result.err
    assert where in result.err and message in result.err and "Traceback" not in result.err
    assert not (tmp_path / "m.nin").exists()


def test_a_caffemodel_given_as_the_model_points_to_its_prototxt(cli, tmp_path):
    (tmp_path / "x.caffemodel").write_bytes(b"")
    result = cli("import", tmp_path / "x.caffemodel", "-o", tmp_path / "m.nin")
    assert result.code == 1 and "--weights" in result.err
