"""The PyTorch twin: weight names, standalone source, and layer numbers against oracles."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import nindsl  # noqa: E402
from conftest import SHIPPED, SPECS  # noqa: E402
from nindsl.language import ir  # noqa: E402
from nindsl.kernel.diagnostics import NindslError  # noqa: E402
from nindsl.language.windows import pool_size  # noqa: E402
from nindsl.torch.twin import class_name, to_torch, twin_source, write_twin_source  # noqa: E402
from nindsl.weights import initial_weights, save_weights  # noqa: E402


def _outputs(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_state_dict_is_the_spec_weights(spec):
    network = nindsl.load(spec)
    state = to_torch(network).state_dict()
    assert {name: tuple(t.shape) for name, t in state.items()} == {w.name: w.shape for w in network.weights}


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_source_imports_only_torch(spec):
    tree = ast.parse(twin_source(nindsl.load(spec)))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and {name.split(".")[0] for name in imported} == {"torch"}


@pytest.mark.slow
def test_source_runs_standalone_and_matches_to_torch(tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    path = tmp_path / "twin.py"
    write_twin_source(network, path)
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "torch.Size([2, 10])"

    standalone = runpy.run_path(str(path))[class_name(network)]()
    twin = to_torch(network, seed=3)
    standalone.load_state_dict(twin.state_dict())
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(_outputs(standalone, x), _outputs(twin, x))
    assert np.allclose(_outputs(twin, x).sum(1), 1, atol=1e-6)  # the spec's softmax


def test_weights_come_from_a_dict_or_a_checkpoint(tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    weights = initial_weights(network, seed=7)
    save_weights(tmp_path / "w.safetensors", weights)
    for source in (weights, tmp_path / "w.safetensors"):
        state = to_torch(network, source).state_dict()
        assert all(np.array_equal(state[name].numpy(), weights[name]) for name in weights)
    assert not np.array_equal(to_torch(network, seed=8).state_dict()["mlpconv1.0.weight"].numpy(),
                              weights["mlpconv1.0.weight"])


# --- pooling borders: Caffe's ceil rounding, checked against a loop over windows ------------


def _reference_pool(x: np.ndarray, mode: str, kernel: int, stride: int, pad: int, ceil: bool) -> np.ndarray:
    """Pooling written out: windows clipped to the input; averages divide by the window clipped
    to the padded input (Caffe's pooling_layer.cpp: padding counts, the ragged border does not)."""
    n, c, height, width = x.shape
    out_h, out_w = pool_size(height, kernel, stride, pad, ceil), pool_size(width, kernel, stride, pad, ceil)
    result = np.empty((n, c, out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            top, left = max(i * stride - pad, 0), max(j * stride - pad, 0)
            bottom, right = min(i * stride - pad + kernel, height), min(j * stride - pad + kernel, width)
            window = x[:, :, top:bottom, left:right]
            divisor = (min(i * stride - pad + kernel, height + pad) - (i * stride - pad)) * \
                (min(j * stride - pad + kernel, width + pad) - (j * stride - pad))
            result[:, :, i, j] = window.max(axis=(2, 3)) if mode == "max" else window.sum(axis=(2, 3)) / divisor
    return result


POOLS = [(size, mode, pad) for size in (7, 13, 54) for mode in ("max", "avg") for pad in (0, 1)]


@pytest.mark.parametrize("size,mode,pad", POOLS, ids=lambda v: str(v))
def test_ceil_pooling_matches_the_window_loop(size, mode, pad):
    network = nindsl.check(f"network p() {{ input x: f32[N, 2, {size}, {size}] "
                           f"{mode}pool(3, stride = 2, pad = {pad}, round = ceil) }}")
    x = np.random.default_rng(size).standard_normal((2, 2, size, size)).astype(np.float32)
    expected = _reference_pool(x, mode, 3, 2, pad, ceil=True)
    got = _outputs(to_torch(network), x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", (7, 13, 54))
def test_the_padding_imitation_of_ceil_fails_that_check(size):
    """The popular port's `padding=1` stand-in for ceil mode: the check above would catch it."""
    x = np.random.default_rng(size).standard_normal((2, 2, size, size)).astype(np.float32)
    expected = _reference_pool(x, "avg", 3, 2, 0, ceil=True)
    imitation = F.avg_pool2d(torch.from_numpy(x), 3, 2, padding=1).numpy()
    assert imitation.shape != expected.shape or not np.allclose(imitation, expected, atol=1e-3)


# --- the other layers, against torch.nn.functional ------------------------------------------

MIXED = """
network mixed(classes = 5) {
    input x: f32[N, 3, 9, 9]
    c1: conv(4, 3, stride = 2, pad = 1, act = none)
    bn1: batchnorm(eps = 0.001)
    relu()
    gmax: global_maxpool()
    fc1: dense(6, act = relu)
    bn2: batchnorm()
    dropout(0.5)
    fc2: dense(classes)
    softmax()
}
"""


def test_conv_batchnorm_dense_and_global_max_match_functional():
    network = nindsl.check(MIXED)
    rng = np.random.default_rng(0)
    weights = {w.name: (rng.uniform(0.5, 2, w.shape) if w.role == "running_var" else rng.standard_normal(w.shape))
               .astype(np.float32) for w in network.weights}
    twin = to_torch(network, weights)
    assert "num_batches_tracked" not in str(list(twin.state_dict()))
    x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
    w = {k: torch.from_numpy(v) for k, v in weights.items()}

    def bn(h, label, eps):
        return F.batch_norm(h, w[f"{label}.running_mean"], w[f"{label}.running_var"], w[f"{label}.weight"],
                            w[f"{label}.bias"], training=False, eps=eps)

    h = F.conv2d(torch.from_numpy(x), w["c1.weight"], w["c1.bias"], stride=2, padding=1)
    h = torch.relu(bn(h, "bn1", 1e-3)).amax(dim=(2, 3))
    h = bn(torch.relu(F.linear(h, w["fc1.weight"], w["fc1.bias"])), "bn2", 1e-5)
    expected = torch.softmax(F.linear(h, w["fc2.weight"], w["fc2.bias"]), dim=1).numpy()
    np.testing.assert_allclose(_outputs(twin, x), expected, rtol=1e-5, atol=1e-6)


def test_batchnorm_trains_its_running_statistics():
    network = nindsl.check(MIXED)
    twin = to_torch(network).train()
    twin(torch.randn(8, 3, 9, 9) + 3)
    assert not torch.equal(twin.bn1.running_mean, torch.zeros(4))


@pytest.mark.parametrize("label", ["forward", "eval", "class", "_modules"])
def test_labels_that_clash_with_module_attributes_are_refused(label):
    with pytest.raises(NindslError) as error:  # by check itself: what it accepts, the twin builds (issue 34)
        nindsl.check(f"network p() {{ input x: f32[N, 1, 4, 4] {label}: conv(2, 3) }}")
    assert error.value.diagnostics[0].code == "E0107" and f"`{label}`" in error.value.diagnostics[0].message


def test_compile_target_torch_writes_the_source(cli, tmp_path):
    out = tmp_path / "digits.py"
    result = cli("compile", SPECS / "nin_digits.nin", "--target", "torch", "-o", out)
    assert result.code == 0, result.err
    assert out.read_text() == twin_source(nindsl.load(SPECS / "nin_digits.nin"))
