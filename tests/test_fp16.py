"""fp16 builds for CUDA targets (nindsl/tvm/half.py): float16 weights and activations, float32
sums, convolutions on tensor cores. No GPU here: the tests read the scheduled kernels, compile
them to machine code, and run the same fp16 module built for this CPU; the GPU runs them in
examples/gpu_check.py (and in the `gpu` test below, where there is one)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.onnx.lower import to_onnx  # noqa: E402
from nindsl.onnx.runtime import runner  # noqa: E402
from nindsl.tvm.deploy.artifact import Runner  # noqa: E402
from nindsl.tvm.gpu.rules import schedule_passes, tensor_core_kernels  # noqa: E402
from nindsl.tvm.gpu.half import build_fp16, check_fp16, half_module, stored_weights, with_stored_weights  # noqa: E402
from nindsl.tvm.frontend import import_onnx  # noqa: E402
from nindsl.tvm.profiles import host_profile, load_profile, resolved_target  # noqa: E402
from nindsl.weights import read_tensors, resolve  # noqa: E402

from conftest import SPECS  # noqa: E402
from tests.numerics import test_weights  # noqa: E402

DIGITS = SPECS / "nin_digits.nin"
CIFAR = SPECS / "nin_cifar10.nin"
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA toolkit)")


def _scheduled(spec, batch):
    network = nindsl.load(spec)
    target = tvm.target.Target(resolved_target(load_profile("h200")))
    return half_module(network, to_onnx(network), batch, target)


@pytest.mark.slow  # TVM's tensor-core schedules of nin_cifar10, twice
def test_nin_cifar10_convolutions_take_tensor_cores_in_float16_with_float32_sums():
    module = _scheduled(CIFAR, None)
    cores, convs = tensor_core_kernels(module)
    # Over a symbolic batch TVM 0.27's tensor-core schedule fails on the 8 × 8 maps' kernels;
    # those keep DLight's plain float16 schedule instead of ending the build.
    assert convs == 9 and len(cores) == 6, cores
    for gv, func in module.functions.items():
        if gv.name_hint.startswith("fused_conv2d"):
            assert '"float16"' in func.script(), gv.name_hint  # operands in float16
            assert "T.float32(0.0)" in func.script() or "wmma.accumulator" in func.script()  # sums in float32
    # the weights' casts run once, when the library is loaded: `main` takes float16 weights
    signature = module["main"].script().split("R.func_attr")[0]
    assert signature.count('dtype="float16"') == 9  # the 9 convolutions' weights; biases stay float32
    assert "main_transform_params" in {gv.name_hint for gv in module.get_global_vars()}
    cores64, convs64 = tensor_core_kernels(_scheduled(CIFAR, 64))
    assert len(cores64) == convs64 - 1, cores64  # all but the 10-channel classifier (J ≤ 64)


@pytest.mark.slow  # (the first imports TVM's tensor intrinsics: 7 s)
@pytest.mark.parametrize("spec, windows", [("nin_cifar10", {"max_pool2d", "avg_pool2d", "softmax"}),
                                           ("nin_cifar100", {"max_pool2d", "avg_pool2d"})])
def test_gpu_pooling_kernels_take_one_thread_per_output(spec, windows):
    """Pooling (and a softmax over at most 64 classes) is scheduled by `Windows`: each output's
    window summed by one thread, no cross-thread reduction. DLight's GeneralReduction split the
    3 × 3 windows among threads, and nin_imagenet's fp16 max pools took half its time on an H200."""
    network = nindsl.load(SPECS / f"{spec}.nin")
    target = tvm.target.Target(resolved_target(load_profile("h200")))
    with target:
        module = tvm.transform.Sequential(schedule_passes())(import_onnx(to_onnx(network), network, None))
    kernels = {gv.name_hint: func.script() for gv, func in module.functions.items() if isinstance(func, tvm.tirx.PrimFunc)}
    for name in windows:
        assert "threadIdx.x" in kernels[name] and "shared" not in kernels[name], name
    if "softmax" not in windows:  # 100 classes: DLight's cross-thread reduction (in shared memory), as before
        assert "shared" in kernels["softmax"]
    conv = next(script for name, script in kernels.items() if name.startswith("fused_conv2d"))
    assert "shared" in conv  # convolutions keep DLight's Matmul (tiles staged in shared memory)


@pytest.mark.slow  # two CPU builds: 7 s
def test_the_fp16_module_rounds_to_float16_and_agrees_with_float32():
    """The same module built for this CPU (what judges a CUDA build here): outputs move by float16
    rounding, not more, and the top class stays."""
    network = nindsl.load(DIGITS)
    weights = resolve(network, None, 3)
    model = to_onnx(network, weights)
    x = np.random.default_rng(0).standard_normal((16, *network.input.shape[1:])).astype(np.float32)
    built = build_fp16(network, host_profile(load_profile("llvm")), model, None, weights)
    assert built.packs  # float32 weights in, float16 weights out of `main_transform_params`
    half, full = Runner.from_build(built)(x), runner(model)(x)
    delta = np.abs(half - full).max()
    assert 0 < delta < 1e-2, delta
    assert (half.argmax(1) == full.argmax(1)).all()
    # and it is float16's rounding that moves them: float32 weights rounded to float16 beforehand
    # leave the float16 build where it was
    rounded = {name: value.astype(np.float16).astype(np.float32) for name, value in weights.items()}
    again = build_fp16(network, host_profile(load_profile("llvm")), to_onnx(network, rounded), None, rounded)
    np.testing.assert_array_equal(Runner.from_build(again)(x), half)
    # the weights as a checked build stores them: converted once, here, under their ONNX names
    stored = stored_weights(built)
    assert list(stored) == [w for w in built.order if w.endswith(".weight")] + [
        w for w in built.order if w.endswith(".bias")]
    assert {v.dtype for k, v in stored.items() if k.endswith(".weight")} == {np.dtype(np.float16)}
    np.testing.assert_array_equal(stored["mlpconv1.0.weight"], weights["mlpconv1.0.weight"].astype(np.float16))
    assert stored["mlpconv1.0.bias"].shape == (1, 32, 1, 1)
    np.testing.assert_array_equal(Runner.from_build(with_stored_weights(built, stored))(x), half)


def test_lifted_weights_keep_their_onnx_names_with_batchnorm():
    """What ``main_transform_params`` returns is named after the weight each value comes from,
    batchnorm's four included (each used by one kernel of its own), so an artifact's stored
    float16 weights keep the ONNX names."""
    from tvm.relax import transform

    from nindsl.tvm.frontend import parameter_order
    from nindsl.tvm.gpu.half import lifted_names

    network = nindsl.check("""network bn(classes = 10) {
        input x: f32[N, 3, 16, 16]
        conv1: mlpconv([16, 16], kernel = 3, pad = 1)
        batchnorm()
        conv2: mlpconv([16, classes], kernel = 1)
        global_avgpool()
    }""")
    model = to_onnx(network, check=False)
    module = tvm.transform.Sequential([transform.ToMixedPrecision(out_dtype="float32"),
                                       transform.LiftTransformParams()])(import_onnx(model, network, None))
    order = parameter_order(network, model, None)
    names = lifted_names(module["main_transform_params"], order)
    assert sorted(names) == sorted(order) and "batchnorm1.running_var" in names


@pytest.mark.parametrize("target, words", [
    ("llvm", "is for CUDA targets"),
    ("onnx", "is for TVM CUDA targets, not ONNX"),
])
def test_fp16_is_refused_where_it_would_not_run_on_tensor_cores(cli, tmp_path, target, words):
    result = cli("compile", DIGITS, "--target", target, "--precision", "fp16", "-o", tmp_path / "a")
    assert result.code == 1 and words in result.err and "E0504" in result.err, result.err
    assert "Traceback" not in result.err and not (tmp_path / "a").exists()


def test_fp16_for_a_gpu_without_tensor_cores_or_with_tune_is_refused(cli, tmp_path):
    pascal = tmp_path / "pascal.toml"
    pascal.write_text('name = "pascal"\ndevice = "cuda"\n[target]\nkind = "cuda"\narch = "sm_61"\n'
                      '[target.host]\nkind = "llvm"\n[schedule]\nuntuned = "dlight"\n')
    result = cli("compile", DIGITS, "--target", pascal, "--precision", "fp16", "-o", tmp_path / "a")
    assert result.code == 1 and "sm_61, which has no float16 tensor cores" in result.err, result.err
    result = cli("compile", DIGITS, "--target", "h200", "--precision", "fp16", "--tune", "-o", tmp_path / "a")
    assert result.code == 1 and "--tune cannot search fp16 kernels here" in result.err, result.err
    result = cli("compile", DIGITS, "--target", "h200", "--precision", "int8", "-o", tmp_path / "a")
    assert result.code == 1 and "--precision fp16 (tensor cores)" in result.err, result.err
    assert not (tmp_path / "a").exists()
    blackwell = tmp_path / "blackwell.toml"  # sm_100: a three-digit arch is not sm_10
    blackwell.write_text(pascal.read_text().replace("pascal", "blackwell").replace("sm_61", "sm_100"))
    check_fp16(load_profile(str(blackwell)))


@pytest.mark.slow  # nvcc, and the judge's CPU build
@needs_nvcc
def test_an_fp16_cuda_artifact_records_its_precision_tensor_cores_and_accuracy(cli, tmp_path):
    result = cli("compile", DIGITS, "--target", "h200", "--precision", "fp16", "--calibrate", "digits",
                 "-o", tmp_path / "a")
    assert result.code == 0, result.err
    assert "fp16 on tensor cores in 0 of 9 convolution kernels" in result.out, result.out  # (nin_digits: ≤ 64 channels)
    assert "top-1 agreement with float32" in result.err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["transform_params"] is False
    stored, _ = read_tensors(tmp_path / "a" / "weights.safetensors")  # float16, as the kernels take them
    assert manifest["parameters"][0] == "mlpconv1.0.weight" and stored["mlpconv1.0.weight"].dtype == np.float16
    assert sum(v.nbytes for v in stored.values()) < 0.6 * sum(v.nbytes for v in resolve(nindsl.load(DIGITS),
                                                                                          None, 0).values())
    assert manifest["gpu_code"]["archs"] == ["sm_90"]
    assert manifest["fp16"]["tensor_core_kernels"] == [] and manifest["accuracy"]["held_out_images"] == 359
    assert manifest["accuracy"]["top1_agreement"] >= 0.99
    inspected = cli("inspect", tmp_path / "a")
    assert re.search(r"\n  precision +fp16, untuned\n", inspected.out)
    assert re.search(r"\n  tensor cores +0 kernels\n", inspected.out)


@pytest.mark.gpu
@needs_nvcc
def test_fp16_cuda_artifact_agrees_with_float32_on_a_gpu(tmp_path):
    if not tvm.cuda(0).exist:
        pytest.skip("needs a CUDA GPU")
    network = nindsl.load(CIFAR)
    # He-scaled: nin_cifar10's own init, N(0, 0.05), leaves every probability within 0.005 of 0.1,
    # where zero logits would pass; on these the largest is about 0.55, and the same module built
    # for a CPU is within 7e-4 of float32
    weights = test_weights(network)
    model = to_onnx(network, weights)
    x = np.random.default_rng(1).standard_normal((8, *network.input.shape[1:])).astype(np.float32)
    out = Runner.from_build(build_fp16(network, load_profile("h200"), model, None, weights), tvm.cuda(0))(x)
    full = runner(model)(x)
    assert (full.max(axis=1) - full.min(axis=1)).min() > 0.1  # far from uniform
    assert np.abs(out - full).max() < 1e-2 and (out.argmax(1) == full.argmax(1)).all()


def test_bench_says_why_fp16_engines_cannot_run_here(cli):
    result = cli("bench", DIGITS, "--batch", "1", "--engines", "onnxruntime,tvm-fp16,torch-fp16", "--rounds", "2",
                 "--quiet")
    assert result.code == 0, result.err
    said = " ".join(result.out.split())
    assert "tvm-fp16: cannot run here: fp16 builds run on CUDA GPUs" in said, said
    assert "torch-fp16: cannot run here: torch-fp16 runs on a CUDA GPU" in said, said
    if not tvm.cuda(0).exist:
        result = cli("bench", DIGITS, "--target", "h200", "--batch", "1", "--engines", "tvm-fp16", "--rounds", "2",
                     "--quiet")
        assert result.code == 1 and "sees no CUDA GPU" in result.err and "Traceback" not in result.err, result.err
