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


def reference_faults(model) -> list[str]:
    """The pools in ``model`` that onnx 1.23's ReferenceEvaluator computes wrongly, each
    described in a few words; empty when it runs the model right.

    Ceil-mode MaxPool with padding can come out with extra zero rows (k=2, s=1, p=1 over
    3 × 3 gives 6 × 6, not 4 × 4), and ceil-mode AveragePool whose last window overhangs the
    input by two or more shifts its windows. ONNX Runtime, PyTorch, Caffe and nindsl's TVM
    builds agree with each other on both (tests/test_onnx.py keeps the upstream cases, and
    fails once they are fixed).
    """
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.input, *model.graph.value_info)}
    faults = []
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type not in ("MaxPool", "AveragePool") or not getattr(attrs.get("ceil_mode"), "i", 0):
            continue
        kernel = list(getattr(attrs.get("kernel_shape"), "ints", ()))
        strides = list(getattr(attrs.get("strides"), "ints", ())) or [1] * len(kernel)
        pads = list(getattr(attrs.get("pads"), "ints", ())) or [0] * 2 * len(kernel)
        name = node.name or f"a {node.op_type} node"
        if node.op_type == "MaxPool" and any(pads):
            faults.append(f"{name} (ceil-mode max pooling with padding)")
        elif node.op_type == "AveragePool" and _window_overhangs(shapes.get(node.input[0] if node.input else ""),
                                                                 kernel, strides, pads):
            faults.append(f"{name} (ceil-mode average pooling whose last window overhangs the input)")
    return faults


def _window_overhangs(shape, kernel: list[int], strides: list[int], pads: list[int]) -> bool:
    """Whether the last ceil-mode window runs two or more elements past the padded input on
    some axis (True when the input's size is unknown, or the attributes do not fit it). The
    reference evaluator pads the overhang on both sides, which shifts every window by half of
    it: one element of overhang shifts nothing."""
    sizes = (shape or [])[2:]
    rank = len(kernel)
    if not rank or len(sizes) != rank or len(strides) != rank or len(pads) != 2 * rank or not all(sizes + strides):
        return True
    for axis, size in enumerate(sizes):
        padded = size + pads[axis] + pads[axis + rank]
        windows = -(-(padded - kernel[axis]) // strides[axis]) + 1
        if (windows - 1) * strides[axis] + kernel[axis] - padded >= 2:
            return True
    return False


def run(model, batch: np.ndarray, backend: str = "onnxruntime") -> np.ndarray:
    """Run an ONNX model on one batch with ONNX Runtime or ONNX's reference evaluator."""
    return runner(model, backend)(batch)
