"""CUDA builds capture their kernels in CUDA graphs (one launch per call instead of one per
kernel): fixed-batch builds one graph, any-batch builds one per batch size up to the profile's
`max_batch`. Read from the executables here, without a GPU; whether the graphs run (and how
fast) is examples/gpu_check.sh's to measure on a GPU."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.kernel.diagnostics import NindslError  # noqa: E402
from nindsl.tvm.compat.cuda import captures_cuda_graph  # noqa: E402
from nindsl.tvm.profiles import Scheduling, load_profile, parse_profile  # noqa: E402

from conftest import ROOT, SPECS  # noqa: E402

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA toolkit)")
DIGITS = SPECS / "nin_digits.nin"


@pytest.fixture(scope="module")
def digits():
    return nindsl.load(DIGITS)


@pytest.mark.slow
@needs_nvcc
@pytest.mark.parametrize("batch", [4, None], ids=["fixed batch", "any batch"])
def test_cuda_builds_capture_their_kernels_in_cuda_graphs(digits, batch):
    from nindsl.tvm.build import build

    h100 = load_profile("h100")
    built = build(digits, h100, batch=batch)
    assert captures_cuda_graph(built.executable)
    assert built.max_batch == (None if batch else h100.schedule.max_batch)  # any batch: graphs up to the bound
    off = replace(h100, schedule=replace(h100.schedule, cuda_graph=False))
    unhooked = build(digits, off, batch=batch)
    assert not captures_cuda_graph(unhooked.executable) and unhooked.max_batch is None


@pytest.mark.slow
@needs_nvcc
def test_an_any_batch_fp16_build_captures_and_its_manifest_says_so(cli, tmp_path):
    result = cli("compile", DIGITS, "--target", "h100", "--precision", "fp16", "-o", tmp_path / "a")
    assert result.code == 0, result.err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["cuda_graph"] == {"captured": True, "max_batch": 256}
    said = cli("inspect", tmp_path / "a").out
    assert "CUDA graphs   one captured per batch size, up to 256 images a call" in said


def test_a_runner_splits_a_batch_above_its_graphs_bound(digits):
    """Memory is planned for batches up to the bound: a larger one is run in pieces (on the CPU
    here, with the bound set by hand; the arithmetic is the same)."""
    from nindsl.tvm.build import build
    from nindsl.tvm.deploy.artifact import Runner

    runner = Runner.from_build(build(digits, load_profile("llvm")))
    x = np.random.default_rng(0).standard_normal((7, 1, 8, 8)).astype(np.float32)
    whole = runner(x)
    runner.max_batch = 3
    assert np.allclose(runner(x), whole, atol=1e-6) and runner(x).shape == whole.shape


def test_a_profile_bounds_its_graphs(tmp_path):
    text = (ROOT / "backends" / "h100.toml").read_text()
    assert load_profile("h100").schedule == Scheduling("dlight", cuda_graph=True, max_batch=256)
    off = parse_profile(text.replace('untuned = "dlight"', 'untuned = "dlight"\ncuda_graph = false\nmax_batch = 8'),
                        "off.toml")
    assert (off.schedule.cuda_graph, off.schedule.max_batch) == (False, 8)
    with pytest.raises(NindslError, match="max_batch"):
        parse_profile(text.replace('untuned = "dlight"', 'untuned = "dlight"\nmax_batch = 0'), "zero.toml")
