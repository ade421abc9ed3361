"""CUDA artifacts carry GPU machine code for their profile's architecture, compiled at build
time (nindsl/tvm/cuda.py), so loading them compiles nothing. No GPU is needed here: the
tests read the machine code in model.so."""

from __future__ import annotations

import subprocess
import sys
import hashlib
import json
import re
import shutil

import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.tvm.compat.cuda import cuda_modules  # noqa: E402
from nindsl.tvm.gpu import cuda  # noqa: E402
from nindsl.tvm.deploy.artifact import gpu_code, gpu_kernel_count  # noqa: E402
from nindsl.tvm.frontend import import_onnx  # noqa: E402
from nindsl.tvm.profiles import load_profile, resolved_target  # noqa: E402
from nindsl.onnx.lower import to_onnx  # noqa: E402

from conftest import SPECS  # noqa: E402

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="needs nvcc (the CUDA toolkit)")
DIGITS = SPECS / "nin_digits.nin"

KERNELS_CU = """
__device__ __noinline__ float twice(float x) { return 2.0f * x; }
extern "C" __global__ void scale(float* x) { x[threadIdx.x] = twice(x[threadIdx.x]); }
extern "C" __global__ void shift(float* x) { x[threadIdx.x] += 1.0f; }
"""


def _kernel_names(cuda_source: str) -> set[str]:
    """The kernels TVM generated, from its CUDA source."""
    return set(re.findall(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(', cuda_source))


_READ_LIBRARY_BIN = """
import ctypes, os, sys
import tvm  # the library links against its runtime
handle = ctypes.CDLL(sys.argv[1])
size = int.from_bytes((ctypes.c_ubyte * 8).in_dll(handle, "__tvm_ffi__library_bin"), "little")
sys.stdout.buffer.write(bytes((ctypes.c_ubyte * (size + 8)).in_dll(handle, "__tvm_ffi__library_bin")))
sys.stdout.flush()
os._exit(0)  # the library's static destructors are not this test's business
"""


def _serialized_cuda_modules(library) -> list[tuple[str, list[str], bytes]]:
    """(format, kernel names, code) of each CUDA module a library embeds, from the bytes TVM's
    loader reads: the library's `__tvm_ffi__library_bin`. Read in a child process: a library
    opened with ctypes here crashed this process at its exit (its destructors ran after TVM's)."""
    child = subprocess.run([sys.executable, "-c", _READ_LIBRARY_BIN, str(library)], capture_output=True,
                           timeout=120, check=True)
    return cuda_modules(child.stdout)


@pytest.fixture(scope="module")
def source_only(tmp_path_factory):
    """nin_digits for sm_80 the old way: scheduled as nindsl schedules it, then `tvm.compile`
    alone, so the library holds CUDA source."""
    from nindsl.tvm.gpu.rules import schedule_passes

    network = nindsl.load(DIGITS)
    target = tvm.target.Target(resolved_target(load_profile("cuda")))
    with target:
        module = tvm.transform.Sequential(schedule_passes())(import_onnx(to_onnx(network), network, None))
    executable = tvm.compile(module, target=target)
    library = tmp_path_factory.mktemp("source-only") / "model.so"
    executable.export_library(str(library))
    source = executable.mod.imports[0].imports[0].inspect_source("")
    return library, _kernel_names(source)


@pytest.mark.slow  # three runs of nvcc
@needs_nvcc
def test_gpu_images_reads_cubins_and_fatbins(tmp_path):
    (tmp_path / "k.cu").write_text(KERNELS_CU)

    def nvcc(*args):
        out = tmp_path / "out"
        shutil.rmtree(out, ignore_errors=True)
        import subprocess

        subprocess.run([NVCC, *args, "-o", str(out), str(tmp_path / "k.cu")], check=True, capture_output=True)
        return out.read_bytes()

    cubin = nvcc("--cubin", "-arch=sm_86")
    fatbin = nvcc("--fatbin", "-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_90,code=compute_90",
                  "-Xfatbin=--compress=false")
    noise = bytes(range(256)) * 4 + b"\x7fELF\x02\x01\x01" + bytes(100)  # an ELF that is not CUDA
    images = cuda.gpu_images(noise + cubin + noise + fatbin + noise)
    kernels = ("scale", "shift")  # the device function is no kernel
    assert images == (cuda.GpuImage("ptx", "sm_90", kernels), cuda.GpuImage("sass", "sm_90", kernels),
                      cuda.GpuImage("sass", "sm_86", kernels))
    compressed = nvcc("--fatbin", "-gencode", "arch=compute_80,code=compute_80", "-Xfatbin=--compress=true")
    assert cuda.gpu_images(compressed) == (cuda.GpuImage("ptx", "sm_80", (), compressed=True),)
    assert cuda.gpu_images(noise) == ()


def test_machine_code_runs_on_its_architecture_family():
    assert cuda.runs_on("sm_80", "8.0") and cuda.runs_on("sm_80", "8.6") and cuda.runs_on("sm_90", "9.0")
    assert not cuda.runs_on("sm_80", "9.0") and not cuda.runs_on("sm_86", "8.0") and not cuda.runs_on("sm_90", "8.9")
    assert cuda.runs_on("sm_90a", "9.0") and not cuda.runs_on("sm_90a", "10.0")


def test_h200_is_hopper_like_h100():
    h100, h200 = load_profile("h100"), load_profile("h200")
    assert h200.target["arch"] == h100.target["arch"] == "sm_90" and h200.device == "cuda"


@pytest.mark.slow
def test_a_source_only_library_has_no_machine_code(source_only):
    library, names = source_only
    assert len(names) > 0
    assert gpu_code(library) == () and gpu_kernel_count(library) == 0
    assert {fmt for fmt, _, _ in _serialized_cuda_modules(library)} == {"cuda"}  # compiled when loaded


@pytest.mark.slow
@needs_nvcc
@pytest.mark.parametrize("target, arch", [("cuda", "sm_80"), ("h100", "sm_90")])
def test_cuda_artifacts_carry_machine_code_for_every_kernel(cli, tmp_path, monkeypatch, source_only, target,
                                                            arch):
    result = cli("compile", DIGITS, "--target", target, "-o", tmp_path / "a")
    assert result.code == 0, result.err
    library = tmp_path / "a" / "model.so"
    images = gpu_code(library)
    # SASS for the profile's architecture only: no PTX the driver would compile when loading
    assert {(image.kind, image.arch, image.compressed) for image in images} == {("sass", arch, False)}
    names = source_only[1]  # the kernels TVM generates for nin_digits
    assert set(images[0].kernels) == names and gpu_kernel_count(library) == len(names) > 0
    assert f"{len(names)} GPU kernels" in result.out + result.err
    # what TVM's loader reads: each CUDA module is a fatbin (not "cuda" source) with every kernel
    [(fmt, table_names, code)] = _serialized_cuda_modules(library)
    assert fmt == "fatbin" and code[:4] == cuda.FATBIN_MAGIC and set(table_names) == names
    assert cuda.gpu_images(code)[0].kernels == images[0].kernels
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["gpu_code"]["archs"] == [arch] and manifest["gpu_code"]["kernels"] == len(names)
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["gpu_code"]["nvcc"])
    shown = cli("inspect", tmp_path / "a").out  # in words: no dicts, no toolchain triples, no empty CPU features
    assert f"\n  GPU code      {len(names)} kernels as machine code for {arch} (nvcc " in shown
    assert f"\n  target        NVIDIA GPU {arch} (CUDA), host code for x86_64 (profile `{target}`)\n" in shown
    assert "\n  weights       drawn from the spec's init, seed 0\n" in shown
    assert "{" not in shown and "conda" not in shown and "CPU features" not in shown
    if target == "cuda":
        assert library.stat().st_size < source_only[0].stat().st_size
        _refused_before_loading(cli, tmp_path, monkeypatch, source_only[0])



@pytest.mark.slow
@needs_nvcc
def test_nin_cifar10_cuda_artifact_has_machine_code_for_every_kernel(cli, tmp_path):
    result = cli("compile", SPECS / "nin_cifar10.nin", "--target", "cuda", "-o", tmp_path / "a")
    assert result.code == 0, result.err
    library = tmp_path / "a" / "model.so"
    [(fmt, names, code)] = _serialized_cuda_modules(library)  # names: the kernels TVM generated
    [image] = gpu_code(library)
    assert fmt == "fatbin" and (image.kind, image.arch) == ("sass", "sm_80") and set(image.kernels) == set(names)
    assert f"{len(names)} GPU kernels" in result.out + result.err and len(names) > 0


class _Gpu:
    exist = True

    def __init__(self, compute_version: str):
        self.compute_version = compute_version


def _refused_before_loading(cli, tmp_path, monkeypatch, source_library):
    """On a GPU of another architecture, and for a library of CUDA source, `run` refuses
    before loading the library (a stand-in device: no GPU here)."""
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    monkeypatch.setattr(tvm, "cuda", lambda index=0: _Gpu("9.0"))
    result = cli("run", tmp_path / "a", "--input", tmp_path / "x.npy")
    assert result.code == 1 and "for sm_80, which does not run on this GPU (compute capability 9.0)" in result.err
    assert "sm_90" in result.err and "Traceback" not in result.err
    shutil.copy(source_library, tmp_path / "a" / "model.so")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest["files"]["model.so"] = hashlib.sha256((tmp_path / "a" / "model.so").read_bytes()).hexdigest()
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(tvm, "cuda", lambda index=0: _Gpu("8.0"))
    result = cli("run", tmp_path / "a", "--input", tmp_path / "x.npy")
    assert result.code == 1 and "model.so holds CUDA source, not GPU machine code" in result.err


def test_a_cuda_build_without_nvcc_names_it(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvcc on it
    result = cli("compile", DIGITS, "--target", "cuda", "-o", tmp_path / "a")
    assert result.code == 1 and "nvcc" in result.err and "E0504" in result.err, result.err
    assert "Traceback" not in result.err and not (tmp_path / "a").exists()
