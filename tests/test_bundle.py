"""`nindsl bundle`: artifacts with TVM's runtime alone, runnable where nindsl is not installed;
and the GPU check prepared here up to the point where it needs a GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tvm")
pytestmark = [pytest.mark.tvm, pytest.mark.slow]

from conftest import ROOT, SPECS  # noqa: E402

LIMIT = 64 * 2**20  # what the GPU machine takes per call


def _bare_env(bundle):
    """An environment that knows nothing of this checkout or its virtual environment's nindsl."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(bundle), "PYTHON": sys.executable}


def test_a_bundle_runs_its_artifact_with_the_runtime_alone(cli, tmp_path):
    assert cli("compile", SPECS / "nin_digits.nin", "-t", "llvm", "-o", tmp_path / "digits").code == 0
    result = cli("bundle", tmp_path / "digits", "-o", tmp_path / "b")
    assert result.code == 0 and "MiB" in result.out
    bundle = tmp_path / "b"
    assert not (bundle / "site" / "tvm" / "lib" / "libtvm_compiler.so").exists()
    assert (bundle / "site" / "tvm" / "lib" / "libtvm_runtime.so").exists()
    assert not (bundle / "artifacts" / "digits" / "model.onnx").exists()  # its graph alone stands in
    assert (bundle / "artifacts" / "digits" / "model.graph.onnx").stat().st_size < 100_000
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    # the launcher puts the bundle first: its nindsl and TVM, runtime-only, are the ones loaded
    run = subprocess.run([str(bundle / "nindsl"), "run", str(bundle / "artifacts" / "digits"), "-i",
                          str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")],
                         env=_bare_env(bundle), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    expected = cli("run", tmp_path / "digits", "-i", tmp_path / "x.npy", "-o", tmp_path / "z.npy")
    assert run.stdout == expected.out
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "z.npy"))
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import os; os.environ['TVM_USE_RUNTIME_LIB'] = '1';"
             "import nindsl, tvm; nindsl.load_artifact(sys.argv[2]);"
             "print(nindsl.__file__, tvm.__file__, 'libtvm_compiler' in open('/proc/self/maps').read())")
    where = subprocess.run([sys.executable, "-c", probe, str(bundle / "site"), str(bundle / "artifacts" / "digits")],
                           env=_bare_env(bundle), capture_output=True, text=True, timeout=120)
    nindsl_file, tvm_file, compiler = where.stdout.split()
    assert nindsl_file.startswith(str(bundle)) and tvm_file.startswith(str(bundle)) and compiler == "False"


def test_a_bundle_refuses_what_is_not_an_artifact(cli, tmp_path):
    (tmp_path / "junk").mkdir()
    result = cli("bundle", tmp_path / "junk", "-o", tmp_path / "b")
    assert result.code == 1 and "not a nindsl artifact" in result.err
    assert not (tmp_path / "b").exists()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc to build CUDA artifacts")
def test_the_gpu_check_is_ready_for_the_gpu_machine(cli, tmp_path):
    """examples/gpu_check.sh's steps (but with this interpreter's tvm_ffi, nothing downloaded):
    the bundle fits what the GPU machine takes, and gpu_check.py runs up to needing a GPU; where
    PyTorch sees a CUDA GPU the bundle's code runs on, the whole check runs and writes its report."""
    for spec in ("nin_imagenet", "nin_cifar10"):
        assert cli("compile", SPECS / f"{spec}.nin", "-t", "h200", "-o", tmp_path / spec).code == 0
    assert cli("bundle", tmp_path / "nin_imagenet", tmp_path / "nin_cifar10", "-o", tmp_path / "b").code == 0
    bundle = tmp_path / "b"
    for spec in ("nin_imagenet", "nin_cifar10"):
        assert cli("compile", SPECS / f"{spec}.nin", "-t", "torch", "-o", bundle / "artifacts" / spec / "twin.py").code == 0
    shutil.copy(ROOT / "examples" / "gpu_check.py", bundle)
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size < LIMIT, f"{size / 2**20:.1f} MiB"
    manifest = json.loads((bundle / "artifacts" / "nin_cifar10" / "manifest.json").read_text())
    assert manifest["device"] == "cuda" and manifest["profile"] == "h200"
    # the script's own probe (PyTorch's), in the environment it runs in: "" without a GPU, else
    # its compute capability as an sm_ name
    probe = subprocess.run([sys.executable, "-c", "import torch; print('sm_%d%d' % torch.cuda.get_device_capability(0) "
                            "if torch.cuda.is_available() else '')"], env=_bare_env(bundle), capture_output=True,
                           text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    gpu, archs = probe.stdout.strip(), manifest["gpu_code"]["archs"]
    assert archs == ["sm_90"]
    if gpu and gpu not in archs:
        pytest.skip(f"this GPU is {gpu}; the bundle's machine code is for {', '.join(archs)}")
    check = subprocess.run([sys.executable, str(bundle / "gpu_check.py"), str(bundle)], env=_bare_env(bundle),
                           capture_output=True, text=True, timeout=600 if gpu else 300)
    if not gpu:
        assert check.returncode == 2 and "no CUDA GPU" in check.stderr, check.stderr  # the point where a GPU is needed
        assert not (bundle / "gpu_report.json").exists()
        return
    assert check.returncode == 0, check.stderr[-3000:]
    report = json.loads((bundle / "gpu_report.json").read_text())
    assert set(report["artifacts"]) == {"nin_imagenet", "nin_cifar10"}
    assert report["libtvm_runtime_loaded"] and not report["libtvm_compiler_loaded"]  # the runtime alone
