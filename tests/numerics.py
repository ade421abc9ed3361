"""Shared helpers for the agreement tests: weights that keep activations O(1), inputs."""

from __future__ import annotations

import numpy as np

from nindsl.language import ir


def test_weights(network: ir.Network, seed: int = 0) -> dict[str, np.ndarray]:
    """He-scaled weights and non-zero biases: outputs stay informative through deep stacks,
    so a 1e-5 tolerance compares real numbers, not vanishing ones."""
    rng = np.random.default_rng(seed)
    weights = {}
    for weight in network.weights:
        if weight.role == "weight" and len(weight.shape) > 1:
            fan_in = int(np.prod(weight.shape[1:]))
            weights[weight.name] = rng.normal(0, np.sqrt(2.0 / fan_in), weight.shape).astype(np.float32)
        elif weight.role == "running_var":
            weights[weight.name] = rng.uniform(0.5, 2.0, weight.shape).astype(np.float32)
        else:
            weights[weight.name] = rng.normal(0, 0.1, weight.shape).astype(np.float32)
    return weights


def test_inputs(network: ir.Network, batch: int = 2, seed: int = 1) -> np.ndarray:
    shape = (batch,) + tuple(network.input.shape[1:])
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def assert_agree(a: np.ndarray, b: np.ndarray, what: str, tolerance: float = 1e-5) -> None:
    np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance, err_msg=what)
    if a.ndim == 2:
        assert (a.argmax(1) == b.argmax(1)).all(), f"{what}: top-1 classes differ"


def reference_is_reliable(network: ir.Network) -> bool:
    """Whether ONNX's reference evaluator runs this network right: it gets some ceil-mode
    pools wrong (nindsl.onnx.runtime.reference_faults), and such networks are compared
    against ONNX Runtime and PyTorch only; see test_onnx.py::test_upstream_reference_*."""
    from nindsl.onnx.lower import to_onnx
    from nindsl.onnx.runtime import reference_faults

    return not reference_faults(to_onnx(network, check=False))


test_weights.__test__ = False  # helpers, not tests
test_inputs.__test__ = False
