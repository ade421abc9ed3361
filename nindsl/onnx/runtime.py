"""Running ONNX models: the one place that opens ONNX Runtime sessions, and ONNX's
reference evaluator.

>>> import nindsl                                                     # doctest: +SKIP
>>> run = runner(nindsl.to_onnx(nindsl.load("specs/nin_digits.nin")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..kernel.diagnostics import NindslError
from ..kernel.machine import usable_cpus
from .model import serialize

BACKENDS = ("onnxruntime", "reference")


def session(model, device: str = "cpu", threads: int | None = None):
    """An ONNX Runtime session for ``model`` (a ModelProto or its bytes), all graph
    optimisations on, ``threads`` intra-op threads (default: every usable CPU)."""
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise NindslError.one("E0504", f"this ONNX Runtime has no {provider}", None,
                              "install onnxruntime-gpu for GPU runs, or use a CPU target")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or usable_cpus()
    data = model if isinstance(model, bytes) else serialize(model)
    return ort.InferenceSession(data, options, providers=[provider])


def runner(model, backend: str = "onnxruntime", device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """``run(batch) → first output`` of an ONNX model, on ONNX Runtime or ONNX's reference evaluator."""
    name = model.graph.input[0].name
    if backend == "reference":
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return lambda x: evaluator.run(None, {name: x})[0]
    opened = session(model, device)
    return lambda x: opened.run(None, {name: x})[0]


def run(model, batch: np.ndarray, backend: str = "onnxruntime") -> np.ndarray:
    """Run an ONNX model on one batch with ONNX Runtime or ONNX's reference evaluator."""
    return runner(model, backend)(batch)
