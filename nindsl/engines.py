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
from .kernel.machine import checked_threads, usable_cpus
from .kernel.progress import SILENT, Progress
from .language import ir

Run = Callable[[np.ndarray], np.ndarray]
SPEC_ENGINES = ("onnxruntime", "reference", "torch")  # what `nindsl run SPEC --backend` offers
TVM_ENGINES = ("tvm-untuned", "tvm-tuned")
INT8_ENGINES = ("onnxruntime-int8", "tvm-int8", "tvm-int8-tuned")  # one quantized model (random calibration)
PEER_ENGINES = ("openvino", "openvino-fp32", "openvino-int8", "tvm-bf16", "tvm-bf16-tuned")  # where the machine and packages allow
FP16_ENGINES = ("tvm-fp16", "torch-fp16")  # on a CUDA GPU
CALIBRATION_IMAGES = 64  # standard normal images, like the bench's inputs


class Unavailable(Exception):
    """An engine that cannot run here, and why (``nindsl bench`` reports it and goes on)."""


def prepare(engine: str, network: ir.Network, weights: dict[str, np.ndarray], device: str = "cpu", *,
            profile=None, batch: int | None = None, tuning=None, progress: Progress = SILENT,
            threads: int | None = None) -> Run:
    """A ready-to-call engine. TVM engines need ``profile`` and ``batch``; ``tvm-tuned`` tunes
    first with ``tuning`` (:class:`nindsl.tvm.tune.search.TuneOptions`); ``threads`` sets PyTorch's
    (default: every usable CPU). ``weights``: a dict, or the :class:`~nindsl.onnx.lower.Lowered`
    value a caller preparing several engines lowered once (a bench: one for all its engines)."""
    from .onnx.lower import lower

    lowered = lower(network, weights)  # (the same value back where the caller lowered it)
    if engine in ("onnxruntime", "reference"):
        from .onnx.runtime import runner

        return runner(lowered.model, engine, device)
    if engine in ("torch", "torch-fp16"):
        return _torch(network, lowered, device, threads, half=engine == "torch-fp16")
    if engine in TVM_ENGINES:
        return _tvm(network, lowered, profile, batch, tuning if engine == "tvm-tuned" else None, progress)
    if engine in INT8_ENGINES:
        return _int8(engine, network, lowered, profile, batch, tuning, progress)
    if engine in ("openvino", "openvino-fp32", "openvino-int8"):
        return _openvino(engine, network, lowered, profile, device, threads)
    if engine in ("tvm-bf16", "tvm-bf16-tuned"):
        return _bf16(network, lowered, profile, batch, engine.endswith("tuned"), tuning, progress)
    if engine == "tvm-fp16":
        return _fp16(network, lowered, profile, batch)
    known = (*SPEC_ENGINES, *TVM_ENGINES, *INT8_ENGINES, *PEER_ENGINES, *FP16_ENGINES)
    raise NindslError.one("E0504", f"unknown engine `{engine}`", None,
                          did_you_mean(engine, known) or f"engines: {', '.join(known)}")


def _torch(network: ir.Network, lowered, device: str, threads: int | None = None, half: bool = False) -> Run:
    """The twin; with ``half``, in float16 (on a CUDA GPU: cuDNN's tensor cores)."""
    import torch

    from .torch.twin import to_torch

    if half and device != "cuda":
        raise Unavailable("torch-fp16 runs on a CUDA GPU (bench it with a CUDA --target)")
    if device == "cuda" and not torch.cuda.is_available():
        raise NindslError.one("E0504", "this PyTorch sees no CUDA GPU", None,
                              "install a CUDA build of torch for GPU runs, or use a CPU target")
    torch.set_num_threads(checked_threads(threads) if threads else usable_cpus())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32
    dtype = torch.float16 if half else torch.float32
    module = to_torch(network, weights=lowered.weights).eval().to(device, dtype)

    def run(x: np.ndarray) -> np.ndarray:  # host to host, as for the other engines
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(device, dtype)).float().cpu().numpy()
    return run


def _fp16(network: ir.Network, lowered, profile, batch: int | None) -> Run:
    """nindsl's fp16 build (tensor cores) on a CUDA target's GPU."""
    from .tvm.deploy.artifact import Runner
    from .tvm.env import require_tvm
    from .tvm.gpu.half import build_fp16, check_fp16

    tvm = require_tvm()
    if profile.device != "cuda":
        raise Unavailable("fp16 builds run on CUDA GPUs (bench them with a CUDA --target)")
    try:
        check_fp16(profile)
    except NindslError as error:  # (a GPU without tensor cores: bench goes on without it)
        raise Unavailable(str(error).splitlines()[0]) from None
    if not tvm.cuda(0).exist:
        raise Unavailable("TVM sees no CUDA GPU here")
    built = build_fp16(network, profile, lowered.model, batch, lowered.weights)
    return Runner.from_build(built, tvm.cuda(0))


def _tvm(network: ir.Network, lowered, profile, batch: int | None, tuning, progress: Progress) -> Run:
    from .tvm.deploy.artifact import Runner
    from .tvm.build import build
    from .tvm.env import require_tvm

    tvm = require_tvm()
    device = tvm.cuda(0) if profile.device == "cuda" else tvm.cpu(0)
    if not device.exist:  # before tuning, which would measure on it
        raise NindslError.one("E0504", f"profile `{profile.name}` runs on {profile.device}, and TVM sees no such "
                                       "device here", None, "use a CPU target, e.g. --target llvm")
    module = None
    if tuning is not None:
        from .tvm.tune.search import tune

        module, _ = tune(network, profile, batch, tuning, lowered, progress=progress)
    return Runner.from_build(build(network, profile, lowered, batch=batch, tuned_module=module), device)


def _quantize(network: ir.Network, lowered, levels: int):
    """The float32 model and its int8 plan, calibrated once per lowered network and weight
    levels, so that ``onnxruntime-int8``, ``openvino-int8`` and ``tvm-int8`` run the same
    quantized network. The plan is kept with the :class:`~nindsl.onnx.lower.Lowered` value (in
    its ``derived``), and lives as long as it does."""
    from .onnx.quantize import quantize

    key = ("int8 plan", levels)
    if key not in lowered.derived:
        images = np.random.default_rng(1).standard_normal((CALIBRATION_IMAGES, *network.input.shape[1:]))
        lowered.derived[key] = quantize(lowered.model, images.astype(np.float32), levels)
    return lowered.model, lowered.derived[key]


def _qdq_model(network: ir.Network, lowered, profile):
    """The QDQ model the peer int8 engines run: the plan ``tvm-int8`` builds from, with its
    weight levels where TVM can say which instructions the target has (else ±63, which every
    int8 path computes exactly)."""
    from .onnx.quantize import PAIRED_WEIGHT_LEVELS, to_qdq

    levels = PAIRED_WEIGHT_LEVELS
    try:
        from .tvm.narrow.int8 import isa_of

        levels = isa_of(profile)[1].weight_levels if profile is not None else levels
    except (ImportError, NindslError):
        pass
    return to_qdq(*_quantize(network, lowered, levels))


def _int8(engine: str, network: ir.Network, lowered, profile, batch: int | None, tuning, progress: Progress) -> Run:
    from .onnx.quantize import to_qdq

    if profile is None or profile.device != "cpu":
        raise Unavailable("int8 engines run on CPUs")
    if engine == "onnxruntime-int8":
        from .onnx.runtime import runner

        return runner(_qdq_model(network, lowered, profile))
    from .tvm.deploy.artifact import Runner
    from .tvm.env import require_tvm
    from .tvm.narrow.int8 import Int8Kernels, build_int8, isa_of

    require_tvm()
    try:
        _, isa = isa_of(profile)
    except NindslError as error:
        raise Unavailable(error.diagnostics[0].message) from None
    model, plan = _quantize(network, lowered, isa.weight_levels)
    blocks = None
    if engine.endswith("tuned"):
        from .tvm.narrow.blocks import measured_blocks

        blocks = measured_blocks(network, plan, profile, batch, getattr(tuning, "db", None), progress,
                                 make=Int8Kernels)
    return Runner.from_build(build_int8(network, profile, plan, to_qdq(model, plan), batch, blocks))


def _bf16(network: ir.Network, lowered, profile, batch: int | None, tuned: bool = False, tuning=None,
          progress: Progress = SILENT) -> Run:
    """nindsl's bf16 build, where the target's CPU has bf16 instructions and this machine runs
    them; ``tuned``: its blocks measured first (kept in ``tuning``'s database folder)."""
    from .tvm.deploy.artifact import Runner
    from .tvm.narrow.bf16 import bf16_plan, build_bf16, isa_of
    from .tvm.env import require_tvm
    from .tvm.profiles import runs_here

    if profile is None or profile.device != "cpu":
        raise Unavailable("bf16 builds run on CPUs")
    require_tvm()
    try:
        target, _ = isa_of(profile)
    except NindslError as error:
        raise Unavailable(error.diagnostics[0].message) from None
    if not runs_here(target):
        raise Unavailable(f"the target `{target.attrs.get('mcpu')}` has bf16 instructions, and this CPU lacks them")
    model = lowered.model
    plan = bf16_plan(model)
    blocks = None
    if tuned:
        from .tvm.narrow.bf16 import Bf16Kernels
        from .tvm.narrow.blocks import measured_blocks

        blocks = measured_blocks(network, plan, profile, batch, getattr(tuning, "db", None), progress,
                                 make=Bf16Kernels)
    return Runner.from_build(build_bf16(network, profile, plan, model, batch, None, blocks))


def _openvino(engine: str, network: ir.Network, lowered, profile, device: str, threads: int | None) -> Run:
    """OpenVINO on the float32 ONNX model at its default precision (``openvino``: bf16 on CPUs
    with AMX or AVX512-BF16, float32 elsewhere) or float32 forced (``openvino-fp32``), or on the
    QDQ model ``onnxruntime-int8`` runs (``openvino-int8``: OpenVINO runs its convolutions in
    int8)."""
    if device != "cpu":
        raise Unavailable("nindsl runs OpenVINO on CPUs only")
    request = openvino_model(engine, network, lowered, profile, threads).create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return np.array(request.infer([x])[0])
    return run


def openvino_model(engine: str, network: ir.Network, weights, profile=None, threads: int | None = None):
    """The OpenVINO ``CompiledModel`` an ``openvino*`` engine runs, on this machine's CPU."""
    try:
        import openvino as ov
    except ImportError:
        raise Unavailable("the openvino package is not installed (pip install 'nindsl[openvino]')") from None
    from .onnx.lower import lower
    from .onnx.model import serialize

    lowered = lower(network, weights)

    config = {"INFERENCE_NUM_THREADS": threads or usable_cpus(), "PERFORMANCE_HINT": "LATENCY"}
    if engine == "openvino-fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if engine == "openvino-int8":
        if profile is not None and profile.device != "cpu":
            raise Unavailable("int8 engines run on CPUs")
        onnx_model = _qdq_model(network, lowered, profile)
    else:
        onnx_model = lowered.model
    core = ov.Core()
    return core.compile_model(core.read_model(serialize(onnx_model), b""), "CPU", config)
