"""TVM builds: LLVM artifacts equal ONNX Runtime; CUDA artifacts build without a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.tvm.deploy.artifact import Artifact, gpu_kernel_count, write_artifact  # noqa: E402
from nindsl.tvm.build import build  # noqa: E402
from nindsl.onnx.lower import to_onnx  # noqa: E402
from nindsl.tvm.profiles import load_profile  # noqa: E402
from nindsl.onnx.runtime import run as run_onnx  # noqa: E402

from conftest import SHIPPED, SPECS  # noqa: E402
from numerics import assert_agree, test_inputs, test_weights  # noqa: E402

LLVM = load_profile("llvm")


def _artifact(network, folder, weights=None, batch=None, profile=LLVM):
    weights = weights if weights is not None else test_weights(network)
    built = build(network, profile, weights, batch=batch)
    write_artifact(folder, network, profile, built, 0.0)
    return built.weights


@pytest.mark.slow
@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_llvm_build_equals_onnxruntime(spec, tmp_path):
    network = nindsl.load(spec)
    weights = _artifact(network, tmp_path / "a")
    artifact = Artifact(tmp_path / "a")
    batches = (1,) if "imagenet" in spec.name or "textbook" in spec.name else (1, 3)
    for batch in batches:  # one artifact, any batch size
        x = test_inputs(network, batch, seed=batch)
        assert_agree(artifact(x), run_onnx(to_onnx(network, weights), x), f"TVM vs ORT, batch {batch}")


@pytest.mark.slow
def test_static_batch_artifact_refuses_other_sizes(tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    _artifact(network, tmp_path / "a", batch=4)
    artifact = Artifact(tmp_path / "a")
    assert artifact(test_inputs(network, 4)).shape == (4, 10)
    with pytest.raises(nindsl.NindslError, match="built for \\[4, 1, 8, 8\\]"):
        artifact(test_inputs(network, 2))


def test_compile_and_run_from_the_command_line(cli, tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    x = test_inputs(network, 3)
    np.save(tmp_path / "x.npy", x)
    result = cli("compile", SPECS / "nin_digits.nin", "--target", "llvm", "-o", tmp_path / "art")
    assert result.code == 0, result.err
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["spec_hash"] == network.spec_hash and manifest["tvm_version"] == tvm.__version__
    assert manifest["input"] == {"name": "image", "shape": ["N", 1, 8, 8], "dtype": "float32"}
    assert manifest["target"]["kind"] == "llvm"
    tvm_run = cli("run", tmp_path / "art", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    ort_run = cli("run", SPECS / "nin_digits.nin", "--input", tmp_path / "x.npy")
    assert tvm_run.code == 0 and tvm_run.out == ort_run.out
    assert_agree(np.load(tmp_path / "y.npy"), run_onnx(to_onnx(network), x), "saved TVM outputs")


@pytest.mark.slow  # nvcc compiles the kernels to machine code: about 10 s
def test_cuda_artifact_builds_without_a_gpu(cli, tmp_path):
    import shutil

    if shutil.which("nvcc") is None:  # CUDA builds compile their kernels with it
        pytest.skip("no nvcc here")
    result = cli("compile", SPECS / "nin_digits.nin", "--target", "cuda", "-o", tmp_path / "gpu")
    assert result.code == 0, result.err
    assert gpu_kernel_count(tmp_path / "gpu" / "model.so") > 0
    manifest = json.loads((tmp_path / "gpu" / "manifest.json").read_text())
    assert manifest["device"] == "cuda" and manifest["target"]["kind"] == "cuda"
    np.save(tmp_path / "x.npy", test_inputs(nindsl.load(SPECS / "nin_digits.nin"), 1))
    if not tvm.cuda(0).exist:
        result = cli("run", tmp_path / "gpu", "--input", tmp_path / "x.npy")
        assert result.code == 1 and "no such device" in result.err and "Traceback" not in result.err


@pytest.mark.gpu
def test_cuda_artifact_equals_onnxruntime_on_a_gpu(tmp_path):
    if not tvm.cuda(0).exist:
        pytest.skip("needs a CUDA GPU")
    for spec in SHIPPED:
        network = nindsl.load(spec)
        weights = _artifact(network, tmp_path / spec.stem, profile=load_profile("cuda"))
        x = test_inputs(network, 2)
        assert_agree(Artifact(tmp_path / spec.stem)(x), run_onnx(to_onnx(network, weights), x),
                     f"CUDA vs ORT on {spec.stem}", tolerance=1e-4)


def test_tampered_or_foreign_artifacts_are_refused(cli, tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    _artifact(network, tmp_path / "a")
    np.save(tmp_path / "x.npy", test_inputs(network, 1))
    library = tmp_path / "a" / "model.so"
    original = library.read_bytes()
    library.write_bytes(original + b"\0")
    result = cli("run", tmp_path / "a", "--input", tmp_path / "x.npy")
    assert result.code == 1 and "model.so does not match its manifest" in result.err
    library.write_bytes(original)
    manifest_path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "tvm_version": "0.1.0"}))
    result = cli("run", tmp_path / "a", "--input", tmp_path / "x.npy")
    assert result.code == 1 and "built by TVM 0.1.0" in result.err
    manifest_path.write_text("{ torn")
    result = cli("run", tmp_path / "a", "--input", tmp_path / "x.npy")
    assert result.code == 1 and "manifest.json is damaged" in result.err
    result = cli("run", tmp_path, "--input", tmp_path / "x.npy")
    assert result.code == 1 and "not a nindsl artifact" in result.err


def test_unknown_target_is_explained(cli, tmp_path):
    result = cli("compile", SPECS / "nin_digits.nin", "--target", "cdua", "-o", tmp_path / "x")
    assert result.code == 1 and "did you mean `cuda`" in result.err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_failed_build_leaves_the_previous_artifact(cli, tmp_path, monkeypatch):
    assert cli("compile", SPECS / "nin_digits.nin", "-t", "llvm", "-o", tmp_path / "a").code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nindsl.weights.save_weights", broken)
    result = cli("compile", SPECS / "nin_digits.nin", "-t", "llvm", "-o", tmp_path / "a", "--seed", "3")
    assert result.code != 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_an_output_is_the_callers_and_any_batch_size_or_dtype_is_taken(tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    weights = _artifact(network, tmp_path / "a")
    artifact = Artifact(tmp_path / "a")
    model = to_onnx(network, weights)
    first, second = test_inputs(network, 2, seed=1), test_inputs(network, 2, seed=2)
    kept = artifact(first)
    artifact(second)  # what the first call returned is the caller's: the second does not change it
    assert_agree(kept, run_onnx(model, first), "first output after a second call")
    assert kept.flags.owndata and kept.flags.writeable  # not a view into TVM's memory pool
    for x in (test_inputs(network, 3).astype(np.float64), test_inputs(network, 1)[:, :, ::-1, :]):  # cast, strided
        assert_agree(artifact(x), run_onnx(model, np.ascontiguousarray(x, dtype=np.float32)), f"{x.dtype}, {x.shape}")
