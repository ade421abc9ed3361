"""`nindsl run` on an artifact starts at once: TVM's runtime alone, without the imports tvm_ffi
makes whenever they are installed (PyTorch, ml_dtypes), which artifacts never use. (The time
itself is measured in docs/performance.md, not asserted here.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.tvm
DIGITS = ROOT / "specs" / "nin_digits.nin"


def _imported(*argv: str) -> set[str]:
    """Which of the heavy packages a `nindsl` command, run in a fresh process, has imported."""
    code = ("import sys; from nindsl.cli import main; code = main(sys.argv[1:], one_command=True); "
            "print(*sorted({m.split('.')[0] for m, v in sys.modules.items() if v is not None}))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.splitlines()[-1].split())


def test_run_on_an_artifact_imports_neither_torch_nor_tvm_compiler_pieces(cli, tmp_path):
    pytest.importorskip("tvm")
    import numpy as np

    assert cli("compile", DIGITS, "--target", "llvm", "-o", tmp_path / "a").code == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    imported = _imported("run", str(tmp_path / "a"), "-i", str(tmp_path / "x.npy"))
    assert "tvm" in imported and not {"torch", "ml_dtypes", "onnx", "onnxruntime"} & imported


def test_runtime_only_refuses_the_optional_imports_during_the_import_of_tvm_alone():
    code = ("import sys; from nindsl.tvm.env import runtime_only; runtime_only(); "
            "import tvm, os; assert os.environ['TVM_USE_RUNTIME_LIB'] == '1'; "
            "assert 'torch' not in sys.modules and 'ml_dtypes' not in sys.modules; "
            "import ml_dtypes; print('importable after', ml_dtypes.__name__)")
    pytest.importorskip("tvm")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "importable after ml_dtypes" in done.stdout, done.stderr[-2000:]
