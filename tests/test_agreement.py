"""Numbers agree across backends: the PyTorch twin, ONNX Runtime and TVM, same weights and inputs.

(ONNX Runtime against ONNX's reference evaluator is in test_onnx.py; random specs through
every engine at once are in test_differential.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import nindsl  # noqa: E402
from nindsl.onnx.runtime import run as run_onnx  # noqa: E402

from conftest import SHIPPED, SPECS  # noqa: E402
from numerics import assert_agree, test_inputs, test_weights  # noqa: E402


def _twin(network, weights, x):
    module = nindsl.to_torch(network, weights).eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _twin_agrees_with_onnxruntime(network, batch=2):
    weights = test_weights(network)
    x = test_inputs(network, batch)
    assert_agree(_twin(network, weights, x), run_onnx(nindsl.to_onnx(network, weights), x), "twin vs ORT")


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_twin_equals_onnxruntime_on_shipped_specs(spec):
    network = nindsl.load(spec)
    _twin_agrees_with_onnxruntime(network, batch=1 if "imagenet" in spec.name else 2)


@pytest.mark.slow
def test_a_trained_checkpoint_predicts_alike_everywhere(cli, tmp_path):
    """Train digits briefly, then the twin, ONNX Runtime and TVM give the same classes."""
    from nindsl.torch.data import load_data
    from nindsl.torch.training import TrainOptions

    network = nindsl.load(SPECS / "nin_digits.nin")
    nindsl.train(network, TrainOptions(epochs=2, out=tmp_path / "run"))
    data = load_data(network)
    images = np.ascontiguousarray(data.val_images[:64], dtype=np.float32)
    twin = _twin(network, tmp_path / "run", images)
    model = tmp_path / "digits.onnx"
    assert cli("compile", SPECS / "nin_digits.nin", "-o", model, "--weights", tmp_path / "run").code == 0
    from nindsl.onnx.model import read_model

    onnx_out = run_onnx(read_model(model), images)
    assert_agree(twin, onnx_out, "trained twin vs ORT")
    try:
        import tvm  # noqa: F401
    except ImportError:
        return
    from nindsl.tvm.deploy.artifact import Artifact

    assert cli("compile", SPECS / "nin_digits.nin", "-t", "llvm", "-o", tmp_path / "art",
               "--weights", tmp_path / "run").code == 0
    assert_agree(Artifact(tmp_path / "art")(images), onnx_out, "trained TVM vs ORT")
