"""Run a bundle's CUDA artifacts on the GPU and compare them with the PyTorch twin on CUDA
(float32; and float16 beside an fp16 artifact) and ONNX Runtime: max |Δ| and top-1 agreement
against the float32 twin, and latency at batch 1 and 64 (median, p10, p90 over interleaved
rounds), as JSON. Each latency is measured twice: from a host array to a host array (what
`Artifact.__call__` does), and on the GPU alone (input already there, output left there). PyTorch
runs with cuDNN's benchmark on, in float32, float16 (also channels_last), bfloat16, and with
TORCH_COMPILE=1 torch.compile(mode="max-autotune"). An artifact built without CUDA graphs
(`-nograph`) sits beside its twin with them, for what the graphs give.

Runs on the GPU machine with its own Python, numpy, PyTorch (CUDA) and ONNX Runtime; TVM,
tvm_ffi, safetensors and nindsl come from the bundle, runtime-only (no TVM compiler is
shipped or loaded). Made and explained by examples/gpu_check.sh.

    python3 BUNDLE/gpu_check.py BUNDLE [REPORT.json]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

BUNDLE = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent).resolve()
REPORT = Path(sys.argv[2]) if len(sys.argv) > 2 else BUNDLE / "gpu_report.json"
BATCHES = (1, 64)
ROUNDS = 30

os.environ["TVM_USE_RUNTIME_LIB"] = "1"  # before TVM is imported: its runtime alone
sys.path.insert(0, str(BUNDLE / "site"))

import numpy as np  # noqa: E402

import nindsl  # noqa: E402


def interleaved_ms(calls: dict, sync) -> dict:
    """Each engine's milliseconds per call (median, p10, p90) over :data:`ROUNDS` interleaved
    rounds, one call of each engine a round, the GPU synchronised around each: a busy moment of
    the machine slows every engine alike. ``calls``: name → (function, its argument)."""
    for run, x in calls.values():
        for _ in range(3):
            run(x)
    times: dict = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, (run, x) in calls.items():
            sync()
            start = time.perf_counter()
            run(x)
            sync()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(t), *np.percentile(t, [10, 90])) for name, t in times.items()}


def he_weights(folder: Path, torch) -> dict:
    """Weights of the twin's names and shapes drawn as He et al. do (normal, std √(2 / fan-in);
    biases normal, std 0.01), so that outputs are far from uniform and a wrong kernel shows; the
    spec's own init gives near-uniform probabilities, which agree whatever the kernels do."""
    rng = np.random.default_rng(0)
    drawn = {}
    for name, value in sorted(twin_class(folder, torch)().state_dict().items()):
        std = np.sqrt(2.0 / np.prod(value.shape[1:])) if value.ndim > 1 else 0.01
        drawn[name] = (rng.standard_normal(tuple(value.shape)) * std).astype(np.float32)
    return drawn


def with_weights(artifact, weights: dict) -> None:
    """The loaded artifact, running ``weights`` instead of its own (in its parameters' order).
    An fp16 artifact stores its weights as its kernels take them (float16, biases reshaped):
    each is made from the float32 weight of its name the same way."""
    import tvm

    if artifact.manifest.get("transform_params"):
        tensors = [tvm.runtime.tensor(weights[name], artifact.device) for name in artifact.manifest["parameters"]]
        tensors = list(artifact.vm["main_transform_params"](tensors))
    else:
        tensors = []
        for name, own in zip(artifact.manifest["parameters"], artifact.weights):
            value = weights[name.split("#")[0]].astype(str(own.dtype)).reshape(tuple(own.shape))
            tensors.append(tvm.runtime.tensor(value, artifact.device))
    artifact.weights = tensors


def twin_class(folder: Path, torch):
    """The PyTorch twin's class, from the artifact's generated source."""
    source = (folder / "twin.py").read_text()
    namespace: dict = {"__name__": "twin"}
    exec(compile(source, str(folder / "twin.py"), "exec"), namespace)  # noqa: S102 - our own generated source
    return next(v for v in namespace.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)
                and v.__module__ == "twin" and hasattr(v, "logits"))


def twin(folder: Path, torch, weights: dict, dtype=None, channels_last: bool = False, compiled: bool = False):
    """The PyTorch twin of the artifact (its generated source) with ``weights``, on CUDA, in
    float32 (TF32 off) or ``dtype``, cuDNN choosing its fastest convolutions (``benchmark``);
    ``channels_last``: NHWC tensors, which cuDNN's tensor-core kernels prefer; ``compiled``:
    ``torch.compile(mode="max-autotune")``. Returns (host → host runner, on-GPU runner)."""
    module = twin_class(folder, torch)()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    module = module.eval().cuda().to(dtype or torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32
    torch.backends.cudnn.benchmark = True
    layout = torch.channels_last if channels_last else torch.contiguous_format
    module = module.to(memory_format=layout)
    if compiled:
        module = torch.compile(module, mode="max-autotune")

    def on_gpu(x):
        with torch.inference_mode():
            return module((x if dtype is None else x.to(dtype)).contiguous(memory_format=layout))

    def run(x):
        return on_gpu(torch.from_numpy(x).cuda()).float().cpu().numpy()

    return run, (lambda x: torch.from_numpy(x).cuda(), on_gpu)


def tvm_on_gpu(artifact):
    """The artifact's function on an input already on the GPU, its output left there."""
    import tvm

    def put(x):
        tensor = tvm.runtime.empty(x.shape, "float32", artifact.device)
        tensor.copyfrom(x)
        return tensor

    main = artifact.vm["main"]
    return put, (lambda x: main(x, *artifact.weights))


def kernel_times(artifact, x: np.ndarray, sync, calls: int = 10) -> dict:
    """Median milliseconds per call of each kernel (by symbol, summed over its launches in one
    call), through the VM's instrument: the GPU is synchronised before and after each launch."""
    spent: dict = {}
    clock = {}

    def instrument(func, symbol, before, result, *args):
        sync()
        if before:
            clock["start"] = time.perf_counter()
        else:
            spent.setdefault(symbol, [0.0] * calls)[clock["call"]] += time.perf_counter() - clock["start"]
        return 0

    put, call = tvm_on_gpu(artifact)
    tensor = put(x)
    call(tensor)  # warm
    artifact.vm.set_instrument(instrument)
    for clock["call"] in range(calls):
        call(tensor)
    artifact.vm.set_instrument(lambda *args: 0)
    times = {symbol: statistics.median(each) * 1e3 for symbol, each in spent.items()}
    return dict(sorted(times.items(), key=lambda item: -item[1]))


def onnxruntime(folder: Path, weights: dict):
    """ONNX Runtime on the model's graph with ``weights`` fed as inputs: its CUDA provider if it has one."""
    import onnxruntime as ort
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(folder / "model.graph.onnx"), providers=providers)
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x, **weights})[0]), session.get_providers()[0]


def main() -> int:
    import torch

    report = {"python": platform.python_version(), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "artifacts": {}}
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to PyTorch: nothing to check here", file=sys.stderr)
        return 2
    for folder in sorted((BUNDLE / "artifacts").iterdir()):
        artifact = nindsl.load_artifact(folder)  # refuses a library whose GPU code does not fit this GPU
        precision = artifact.manifest.get("precision", "fp32")
        weights = he_weights(folder, torch)
        with_weights(artifact, weights)
        engines = {"tvm": artifact}
        resident = {"tvm": tvm_on_gpu(artifact)}
        engines["torch"], resident["torch"] = twin(folder, torch, weights)
        if precision == "fp16":
            engines["torch-fp16"], resident["torch-fp16"] = twin(folder, torch, weights, torch.float16)
            engines["torch-bf16"], resident["torch-bf16"] = twin(folder, torch, weights, torch.bfloat16)
            engines["torch-fp16-cl"], resident["torch-fp16-cl"] = twin(folder, torch, weights, torch.float16,
                                                                       channels_last=True)
            if os.environ.get("TORCH_COMPILE"):  # minutes of autotuning per network: asked for, not by default
                engines["torch-fp16-compiled"], resident["torch-fp16-compiled"] = twin(
                    folder, torch, weights, torch.float16, channels_last=True, compiled=True)
        try:
            engines["onnxruntime"], report["onnxruntime_provider"] = onnxruntime(folder, weights)
        except Exception as error:  # noqa: BLE001 - a missing or broken ONNX Runtime is reported, not fatal
            report["onnxruntime_error"] = f"{type(error).__name__}: {error}"
        fixed = artifact.manifest["input"]["shape"][0]
        results = {}
        for batch in BATCHES if not isinstance(fixed, int) else (fixed,):
            shape = [batch, *artifact.manifest["input"]["shape"][1:]]
            x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
            outputs = {name: run(x) for name, run in engines.items()}
            reference = outputs["torch"]
            host = interleaved_ms({name: (run, x) for name, run in engines.items()}, torch.cuda.synchronize)
            gpu = interleaved_ms({name: (call, put(x)) for name, (put, call) in resident.items()},
                                 torch.cuda.synchronize)
            results[batch] = {}
            for name in engines:
                results[batch][name] = {
                    "median_ms": host[name][0], "p10_p90_ms": host[name][1:],
                    "max_abs_diff_vs_torch": float(np.abs(outputs[name] - reference).max()),
                    "top1_agreement_vs_torch": float((outputs[name].argmax(1) == reference.argmax(1)).mean())}
                if name in gpu:
                    results[batch][name]["median_ms_on_gpu"] = gpu[name][0]
                    results[batch][name]["p10_p90_ms_on_gpu"] = gpu[name][1:]
            # a second input after all that: a CUDA graph replays with the new input, not the captured one
            again = np.random.default_rng(batch + 100).standard_normal(shape).astype(np.float32)
            results[batch]["tvm"]["max_abs_diff_vs_torch_second_input"] = float(
                np.abs(artifact(again) - engines["torch"](again)).max())
        if os.environ.get("KERNELS"):  # where the time goes, at the largest batch
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            results["kernels_ms"] = kernel_times(artifact, x, torch.cuda.synchronize)
        report["artifacts"][folder.name] = {"network": artifact.manifest["network"], "precision": precision,
                                            "profile": artifact.manifest["profile"], "batches": results}
        print(json.dumps({folder.name: results}, indent=1), flush=True)
    maps = Path("/proc/self/maps").read_text()
    report["libtvm_compiler_loaded"] = "libtvm_compiler" in maps
    report["libtvm_runtime_loaded"] = "libtvm_runtime" in maps
    REPORT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
