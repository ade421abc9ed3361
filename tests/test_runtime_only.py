"""An artifact loads and runs where TVM runs without its compiler (`TVM_USE_RUNTIME_LIB=1`
loads libtvm_runtime alone): through `nindsl.load_artifact` and through `nindsl run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.onnx.model import read_model  # noqa: E402
from nindsl.onnx.runtime import run as run_onnx  # noqa: E402

from conftest import ROOT, SPECS  # noqa: E402
from numerics import test_inputs  # noqa: E402

# Records which TVM libraries the process has mapped when it ends.
MAPS = """
import atexit, json, os, sys
def record():
    maps = open("/proc/self/maps").read()
    with open(os.environ["MAPS_OUT"], "w") as out:
        json.dump({"compiler": "libtvm_compiler" in maps, "runtime": "libtvm_runtime" in maps}, out)
atexit.register(record)
"""

LOAD = MAPS + """
import numpy as np
import nindsl
artifact = nindsl.load_artifact(sys.argv[1])
np.save(sys.argv[3], artifact(np.load(sys.argv[2])))
"""

CLI = MAPS + """
import runpy
sys.argv = ["nindsl", *sys.argv[1:]]
runpy.run_module("nindsl", run_name="__main__", alter_sys=True)
"""


def _runtime_only(script: str, *args, maps) -> subprocess.CompletedProcess:
    env = {**os.environ, "TVM_USE_RUNTIME_LIB": "1", "MAPS_OUT": str(maps),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_an_llvm_artifact_runs_without_tvms_compiler(cli, tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    assert cli("compile", SPECS / "nin_digits.nin", "-t", "llvm", "-o", tmp_path / "a").code == 0
    x = test_inputs(network, 3)
    np.save(tmp_path / "x.npy", x)
    expected = run_onnx(read_model(tmp_path / "a" / "model.onnx"), x)  # the artifact's own weights

    child = _runtime_only(LOAD, tmp_path / "a", tmp_path / "x.npy", tmp_path / "y.npy", maps=tmp_path / "maps.json")
    assert child.returncode == 0, child.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "maps.json").read_text()) == {"compiler": False, "runtime": True}

    child = _runtime_only(CLI, "run", tmp_path / "a", "--input", tmp_path / "x.npy", "--output", tmp_path / "z.npy",
                          maps=tmp_path / "cli-maps.json")
    assert child.returncode == 0, child.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), expected, rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "cli-maps.json").read_text()) == {"compiler": False, "runtime": True}
