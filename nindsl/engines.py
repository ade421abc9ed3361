"""The engines that ``nindsl run`` and ``nindsl bench`` share: one network, one set of
weights, a callable ``run(batch) → outputs`` per engine, host arrays in and out.

>>> import nindsl                                                  # doctest: +SKIP
>>> net = nindsl.load("specs/nin_digits.nin")                      # doctest: +SKIP
>>> run = prepare("onnxruntime", net, initial_weights(net))        # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .kernel.diagnostics import NindslError, did_you_mean
from .kernel.machine import usable_cpus
from .kernel.progress import SILENT, Progress
from .language import ir

Run = Callable[[np.ndarray], np.ndarray]
SPEC_ENGINES = ("onnxruntime", "reference", "torch")  # what `nindsl run SPEC --backend` offers
TVM_ENGINES = ("tvm-untuned", "tvm-tuned")


def prepare(engine: str, network: ir.Network, weights: dict[str, np.ndarray], device: str = "cpu", *,
            profile=None, batch: int | None = None, tuning=None, progress: Progress = SILENT,
            threads: int | None = None) -> Run:
    """A ready-to-call engine. TVM engines need ``profile`` and ``batch``; ``tvm-tuned`` tunes
    first with ``tuning`` (:class:`nindsl.tvm.tune.TuneOptions`); ``threads`` sets PyTorch's
    (default: every usable CPU)."""
    if engine in ("onnxruntime", "reference"):
        from .onnx.lower import to_onnx
        from .onnx.runtime import runner

        return runner(to_onnx(network, weights, check=False), engine, device)
    if engine == "torch":
        return _torch(network, weights, device, threads)
    if engine in TVM_ENGINES:
        return _tvm(network, weights, profile, batch, tuning if engine == "tvm-tuned" else None, progress)
    known = (*SPEC_ENGINES, *TVM_ENGINES)
    raise NindslError.one("E0504", f"unknown engine `{engine}`", None,
                          did_you_mean(engine, known) or f"engines: {', '.join(known)}")


def _torch(network: ir.Network, weights, device: str, threads: int | None = None) -> Run:
    import torch

    from .torch.twin import to_torch

    if device == "cuda" and not torch.cuda.is_available():
        raise NindslError.one("E0504", "this PyTorch sees no CUDA GPU", None,
                              "install a CUDA build of torch for GPU runs, or use a CPU target")
    torch.set_num_threads(threads or usable_cpus())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32
    module = to_torch(network, weights=weights).eval().to(device)

    def run(x: np.ndarray) -> np.ndarray:  # host to host, as for the other engines
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(device)).cpu().numpy()
    return run


def _tvm(network: ir.Network, weights, profile, batch: int | None, tuning, progress: Progress) -> Run:
    from .tvm.artifact import Runner
    from .tvm.build import build
    from .tvm.env import require_tvm

    tvm = require_tvm()
    device = tvm.cuda(0) if profile.device == "cuda" else tvm.cpu(0)
    if not device.exist:  # before tuning, which would measure on it
        raise NindslError.one("E0504", f"profile `{profile.name}` runs on {profile.device}, and TVM sees no such "
                                       "device here", None, "use a CPU target, e.g. --target llvm")
    module = None
    if tuning is not None:
        from .tvm.tune import tune

        module, _ = tune(network, profile, batch, tuning, weights, progress=progress)
    return Runner.from_build(build(network, profile, weights, batch=batch, tuned_module=module), device)
