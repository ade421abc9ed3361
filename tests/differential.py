"""Differential testing: one network, the same weights and inputs, every engine nindsl targets.

Engines: the PyTorch twin, ONNX Runtime with all graph optimisations and with none, ONNX's
reference evaluator, and TVM for LLVM. Every pair must agree within the LLVM profile's
tolerance and on the top-1 class. An engine whose package is not installed is left out.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np

import nindsl
from nindsl.language import ir
from nindsl.onnx.runtime import reference_faults

from numerics import assert_agree, test_inputs, test_weights


def _ort(model, level: str):
    import onnxruntime as ort

    from nindsl.onnx.model import serialize

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(serialize(model), options, providers=["CPUExecutionProvider"])


def outputs(network: ir.Network, weights: dict, x: np.ndarray, tvm: bool = True) -> dict[str, np.ndarray]:
    """Each available engine's output for ``x`` (TVM left out unless ``tvm``: a build takes seconds)."""
    model = nindsl.to_onnx(network, weights)
    feed = {network.input.name: x}
    results = {"ort-all": _ort(model, "ORT_ENABLE_ALL").run(None, feed)[0],
               "ort-none": _ort(model, "ORT_DISABLE_ALL").run(None, feed)[0]}
    if not reference_faults(model):  # onnx 1.23.2: see test_onnx.py::test_upstream_reference_*
        from nindsl.onnx.runtime import run as run_onnx

        results["reference"] = run_onnx(model, x, "reference")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        with torch.no_grad():
            results["torch"] = nindsl.to_torch(network, weights).eval()(torch.from_numpy(x)).numpy()
    try:
        import tvm as _  # noqa: F401
    except ImportError:
        return results
    if not tvm:
        return results
    from nindsl.tvm.deploy.artifact import Artifact, write_artifact
    from nindsl.tvm.build import build
    from nindsl.tvm.profiles import load_profile

    profile = load_profile("llvm")
    with tempfile.TemporaryDirectory() as folder:
        write_artifact(Path(folder) / "a", network, profile, build(network, profile, weights), 0.0)
        results["tvm-llvm"] = Artifact(Path(folder) / "a")(x)
    return results


def assert_engines_agree(network: ir.Network, batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Run every engine on He-scaled weights and normal inputs; compare every pair."""
    results = outputs(network, test_weights(network, seed), test_inputs(network, batch, seed + 1))
    for (a, out_a), (b, out_b) in itertools.combinations(results.items(), 2):
        assert out_a.shape == out_b.shape, f"{a} vs {b}: shapes {out_a.shape} and {out_b.shape}"
        assert_agree(out_a, out_b, f"{a} vs {b}")
    return results
