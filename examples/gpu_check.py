"""Run a bundle's CUDA artifacts on the GPU and compare them with the PyTorch twin on CUDA
and ONNX Runtime: max |Δ|, top-1 agreement and median latency at batch 1 and 64, as JSON.

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


def median_ms(run, x, sync) -> float:
    for _ in range(3):
        run(x)
    times = []
    for _ in range(ROUNDS):
        sync()
        start = time.perf_counter()
        run(x)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def twin(folder: Path, torch):
    """The PyTorch twin of the artifact (its generated source) with the artifact's weights, on CUDA."""
    from safetensors.numpy import load_file

    source = (folder / "twin.py").read_text()
    namespace: dict = {"__name__": "twin"}
    exec(compile(source, str(folder / "twin.py"), "exec"), namespace)  # noqa: S102 - our own generated source
    classes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)
               and v.__module__ == "twin" and hasattr(v, "logits")]
    module = classes[0]()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(folder / "weights.safetensors").items()})
    module = module.eval().cuda()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32

    def run(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x).cuda()).cpu().numpy()
    return run


def onnxruntime(folder: Path):
    """ONNX Runtime on the model's graph with the weights fed as inputs: its CUDA provider if it has one."""
    import onnxruntime as ort
    from safetensors.numpy import load_file

    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(folder / "model.graph.onnx"), providers=providers)
    weights = load_file(folder / "weights.safetensors")
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
        engines = {"tvm": artifact, "torch": twin(folder, torch)}
        try:
            engines["onnxruntime"], report["onnxruntime_provider"] = onnxruntime(folder)
        except Exception as error:  # noqa: BLE001 - a missing or broken ONNX Runtime is reported, not fatal
            report["onnxruntime_error"] = f"{type(error).__name__}: {error}"
        results = {}
        for batch in BATCHES:
            shape = [batch, *artifact.manifest["input"]["shape"][1:]]
            x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
            outputs = {name: run(x) for name, run in engines.items()}
            reference = outputs["torch"]
            results[batch] = {
                name: {"median_ms": median_ms(run, x, torch.cuda.synchronize),
                       "max_abs_diff_vs_torch": float(np.abs(outputs[name] - reference).max()),
                       "top1_agreement_vs_torch": float((outputs[name].argmax(1) == reference.argmax(1)).mean())}
                for name, run in engines.items()}
        report["artifacts"][folder.name] = {"network": artifact.manifest["network"],
                                            "profile": artifact.manifest["profile"], "batches": results}
    maps = Path("/proc/self/maps").read_text()
    report["libtvm_compiler_loaded"] = "libtvm_compiler" in maps
    report["libtvm_runtime_loaded"] = "libtvm_runtime" in maps
    REPORT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
