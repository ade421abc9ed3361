"""A narrow build judged against float32: what int8, bf16 (:mod:`nindsl.tvm.narrow`) and fp16
(:mod:`nindsl.tvm.gpu.half`) builds hand to the artifact, and how their outputs are gathered."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..onnx.quantize import Agreement, Plan
from .frontend import Build


@dataclass(frozen=True)
class QuantizedBuild:
    """An int8, bf16 or fp16 build, the plan it runs (None for fp16), and how it compares with float32."""

    built: Build
    plan: Plan | None
    isa: object  # the instructions it runs: narrow.kernels.int8.Isa, or gpu.half.HalfIsa
    agreement: Agreement
    blocks: dict


def run_batched(run, images: np.ndarray, batch: int | None, step: int = 64) -> np.ndarray:
    """Outputs of ``images`` through a build of a fixed ``batch`` (the last chunk padded), or of
    any batch size, ``step`` images at a time."""
    step = batch or step
    outputs = []
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        if batch is not None and len(chunk) < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outputs.append(run(np.ascontiguousarray(chunk, np.float32))[:len(images) - start])
    return np.concatenate(outputs)
