"""Lowering to ONNX: checked, deterministic, self-describing, and numerically exact."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import nindsl  # noqa: E402
from nindsl.language import ir, shapes, summary  # noqa: E402
from nindsl.onnx import lower as lower_onnx  # noqa: E402
from nindsl.onnx.lower import to_onnx, write_onnx  # noqa: E402
from nindsl.onnx.model import model_metadata, read_model, serialize  # noqa: E402
from nindsl.onnx.runtime import reference_faults  # noqa: E402
from nindsl.onnx.runtime import run as run_onnx  # noqa: E402
from nindsl.weights import save_weights  # noqa: E402

from conftest import FIXTURES, SHIPPED, SPECS  # noqa: E402
from numerics import assert_agree, test_inputs, test_weights  # noqa: E402


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_shipped_specs_lower_to_checked_models(spec):
    network = nindsl.load(spec)
    model = to_onnx(network)  # runs onnx.checker (full) and the shape comparison
    stored = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert stored == network.total_params  # no batchnorm in the shipped specs
    assert [t.name for t in model.graph.initializer] == [w.name for w in network.weights]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "N"
    assert model.graph.input[0].name == network.input.name
    assert model.graph.output[0].name == network.output.name
    assert model.opset_import[0].version == lower_onnx.OPSET >= 17


def _sessions(model):
    data = serialize(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    optimized = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return plain, optimized


def _agree(network, batch=2, seed=0):
    model = to_onnx(network, test_weights(network, seed))
    x = test_inputs(network, batch, seed + 1)
    plain, optimized = _sessions(model)
    feed = {network.input.name: x}
    if reference_faults(model):  # an upstream bug: compare the two ORT modes only
        assert_agree(optimized.run(None, feed)[0], plain.run(None, feed)[0], "ORT all vs no optimisation")
        return plain.run(None, feed)[0]
    reference = run_onnx(model, x, "reference")
    assert_agree(plain.run(None, feed)[0], reference, "ORT (no optimisation) vs reference")
    assert_agree(optimized.run(None, feed)[0], reference, "ORT (all optimisations) vs reference")
    return reference


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_onnxruntime_agrees_with_the_reference_evaluator(spec):
    network = nindsl.load(spec)
    out = _agree(network, batch=1 if "imagenet" in spec.name else 2)
    assert np.isfinite(out).all() and out.std() > 0


def test_ceil_borders_and_batchnorm_agree():
    network = nindsl.check("""
network borders(classes = 4) {
    input x: f32[N, 3, 13, 13]
    conv(6, 3, pad = 1, act = none)
    batchnorm()
    relu()
    a: avgpool(3, stride = 2, round = ceil)
    m: maxpool(2, stride = 2, pad = 1, round = ceil)
    mlpconv([8, classes], kernel = 1)
    flatten()
    dense(classes, act = relu)
    softmax()
}
""")
    assert [s.out_shape[2:] for s in network.shapes[3:5]] == [(6, 6), (4, 4)]
    _agree(network, batch=3)


def test_extreme_and_zero_inputs_agree():
    network = nindsl.load(SPECS / "nin_cifar10.nin")
    model = to_onnx(network, test_weights(network))
    for x in (np.zeros((1, 3, 32, 32), np.float32), np.full((1, 3, 32, 32), 1e4, np.float32)):
        assert_agree(run_onnx(model, x), run_onnx(model, x, "reference"), "extreme input", 1e-4)


def test_same_inputs_give_byte_identical_files(tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    write_onnx(network, tmp_path / "a.onnx", seed=3)
    write_onnx(nindsl.load(SPECS / "nin_digits.nin"), tmp_path / "b.onnx", seed=3)
    write_onnx(network, tmp_path / "c.onnx", seed=4)
    a, b, c = ((tmp_path / f"{n}.onnx").read_bytes() for n in "abc")
    assert a == b and a != c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx", "c.onnx"]


def test_metadata_says_what_the_model_was_built_from(cli, tmp_path):
    out = tmp_path / "m.onnx"
    assert cli("compile", SPECS / "nin_cifar10.nin", "--target", "onnx", "-o", out, "--set", "classes=7").code == 0
    meta = model_metadata(read_model(out))
    network = nindsl.load(SPECS / "nin_cifar10.nin", {"classes": "7"})
    assert meta["spec_hash"] == network.spec_hash and meta["version"] == nindsl.__version__
    assert '"classes": 7' in meta["params"] and "nin_cifar10" in meta["spec"]
    result = cli("inspect", out)
    assert "network `nin_cifar10`" in result.out and network.spec_hash in result.out


def test_compile_imagenet_parameter_count_equals_summary(cli, tmp_path):
    out = tmp_path / "imagenet.onnx"
    result = cli("compile", SPECS / "nin_imagenet.nin", "--target", "onnx", "-o", out)
    assert result.code == 0 and "7,595,176 parameters" in result.out
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert sum(int(np.prod(t.dims)) for t in model.graph.initializer) == 7_595_176


def test_checkpoint_weights_flow_into_the_model(tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    weights = test_weights(network, seed=9)
    save_weights(tmp_path / "w.safetensors", weights)
    np.savez(tmp_path / "w.npz", **weights)
    x = test_inputs(network)
    expected = run_onnx(to_onnx(network, weights), x)
    for path in ("w.safetensors", "w.npz"):
        assert_agree(run_onnx(to_onnx(network, tmp_path / path), x), expected, path, 0)


def test_bad_checkpoint_lists_every_problem_and_writes_nothing(cli, tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    weights = test_weights(network)
    del weights["mlpconv1.0.bias"]
    weights["mlpconv4.2.weight"] = weights["mlpconv4.2.weight"][:3]
    weights["stray"] = np.zeros(2, np.float32)
    save_weights(tmp_path / "bad.safetensors", weights)
    out = tmp_path / "m.onnx"
    result = cli("compile", SPECS / "nin_digits.nin", "-o", out, "--weights", tmp_path / "bad.safetensors")
    assert result.code == 1
    assert "lacks 1 of the spec's" in result.err and "missing: mlpconv1.0.bias [32]" in result.err
    assert "`mlpconv4.2.weight`" in result.err and "needs [10, 64, 1, 1]" in result.err
    assert "`stray`" in result.err and result.err.rstrip().endswith("3 errors")
    assert "nin_digits.nin:12:5" in result.err and "nin_digits.nin:6:5" in result.err  # the layers' lines
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors"]


def test_truncated_and_foreign_files_are_refused(cli, tmp_path):
    good = tmp_path / "good.onnx"
    write_onnx(nindsl.load(SPECS / "nin_digits.nin"), good)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:5000])
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 8, 8), np.float32))
    result = cli("run", truncated, "--input", x)
    assert result.code == 1 and "not a valid ONNX model" in result.err and "Traceback" not in result.err
    cut = tmp_path / "cut.safetensors"
    save_weights(cut, test_weights(nindsl.load(SPECS / "nin_digits.nin")))
    cut.write_bytes(cut.read_bytes()[:300])
    result = cli("compile", SPECS / "nin_digits.nin", "-o", tmp_path / "o.onnx", "--weights", cut)
    assert result.code == 1 and "error[E0502]" in result.err and not (tmp_path / "o.onnx").exists()


def test_write_into_a_read_only_folder_fails_cleanly(cli, tmp_path, monkeypatch):
    """Root ignores permission bits, so the refusal is injected where the OS would raise it."""
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    result = cli("compile", SPECS / "nin_digits.nin", "-o", tmp_path / "m.onnx")
    assert result.code == 1 and "cannot write" in result.err and "Permission denied" in result.err
    assert list(tmp_path.iterdir()) == []


def test_disk_full_leaves_the_previous_file(cli, tmp_path, monkeypatch):
    import errno
    import os

    out = tmp_path / "m.onnx"
    assert cli("compile", SPECS / "nin_digits.nin", "-o", out).code == 0
    before = out.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    result = cli("compile", SPECS / "nin_digits.nin", "-o", out, "--seed", "5")
    assert result.code == 1 and "No space left" in result.err
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_run_prints_classes_and_saves_outputs(cli, tmp_path):
    network = nindsl.load(SPECS / "nin_digits.nin")
    x = test_inputs(network, batch=2)
    np.save(tmp_path / "x.npy", x)
    model = tmp_path / "m.onnx"
    write_onnx(network, model)
    result = cli("run", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert result.code == 0 and result.out.count("example ") == 2
    saved = np.load(tmp_path / "y.npy")
    assert_agree(saved, run_onnx(read_model(model), x), "saved outputs", 0)
    from_spec = cli("run", SPECS / "nin_digits.nin", "--input", tmp_path / "x.npy")
    assert from_spec.out == result.out  # same seed, same weights
    reference = cli("run", model, "--input", tmp_path / "x.npy", "--backend", "reference")
    assert reference.out.split()[:4] == result.out.split()[:4]


def test_run_explains_bad_inputs(cli, tmp_path):
    model = tmp_path / "m.onnx"
    write_onnx(nindsl.load(SPECS / "nin_digits.nin"), model)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 8, 8), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((2, 1, 8, 8), np.uint8))
    (tmp_path / "text.png").write_text("not an image")
    cases = {
        "wrong.npy": "has shape [2, 3, 8, 8], but `image` expects [N, 1, 8, 8]",
        "ints.npy": "holds integers",
        "text.png": "not a readable image",
        "missing.npy": "no such file",
    }
    for name, message in cases.items():
        result = cli("run", model, "--input", tmp_path / name)
        assert result.code == 1 and message in result.err, (name, result.err)
    result = cli("run", model, "--input", tmp_path / "wrong.npy", "--backend", "onnxrutime")
    assert result.code == 1 and "did you mean `onnxruntime`" in result.err


def test_run_reads_images(cli, tmp_path):
    from PIL import Image

    picture = np.zeros((32, 32), np.uint8)
    picture[8:24, 14:18] = 255  # a bar, like a "1"
    Image.fromarray(picture).save(tmp_path / "one.png")
    result = cli("run", SPECS / "nin_digits.nin", "--input", tmp_path / "one.png", tmp_path / "one.png")
    assert result.code == 0 and result.out.count("example ") == 2


def test_upstream_reference_maxpool_bug():
    """onnx 1.23.2's ReferenceEvaluator gives a 6×6 zero-padded output where ONNX Runtime,
    PyTorch and nindsl's shape rule give 4×4. When this test fails, the bug is fixed
    upstream: narrow nindsl.onnx.runtime.reference_faults."""
    torch = pytest.importorskip("torch")
    network = nindsl.check("network t() { input x: f32[N, 1, 3, 3] p: maxpool(2, stride = 1, pad = 1, round = ceil) }")
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3) - 4
    model = to_onnx(network)
    expected = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, 1, 1, ceil_mode=True).numpy()
    assert network.shapes[0].out_shape == ("N", 1, 4, 4)
    assert_agree(run_onnx(model, x), expected, "ORT vs PyTorch", 0)
    assert run_onnx(model, x, "reference").shape == (1, 1, 6, 6)
    assert [f.split(" ", 1)[1] for f in reference_faults(model)] == ["(ceil-mode max pooling with padding)"]


@pytest.mark.parametrize("size, shifted", [(4, True), (5, False)])
def test_upstream_reference_avgpool_bug(size, shifted):
    """onnx 1.23.2's ReferenceEvaluator shifts the windows of a ceil-mode average pool whose
    last window runs two or more past the input (k=3, s=3 over 4: it covers 3..5); one past
    (over 5) is computed right. When this test fails, the bug is fixed upstream: narrow
    nindsl.onnx.runtime.reference_faults."""
    torch = pytest.importorskip("torch")
    network = nindsl.check(f"network t() {{ input x: f32[N, 1, {size}, {size}] "
                           "p: avgpool(3, stride = 3, round = ceil) }")
    x = np.arange(size * size, dtype=np.float32).reshape(1, 1, size, size)
    model = to_onnx(network)
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x), 3, 3, ceil_mode=True).numpy()
    assert expected[0, 0, 0, 0] == x[0, 0, :3, :3].mean()  # Caffe's windows: 0..2 and 3..
    assert_agree(run_onnx(model, x), expected, "ORT vs PyTorch", 0)
    reference = run_onnx(model, x, "reference")
    assert np.allclose(reference, expected) != shifted
    assert bool(reference_faults(model)) == shifted


def test_run_warns_when_the_reference_evaluator_gets_a_pool_wrong(cli, tmp_path):
    spec = FIXTURES / "differential" / "reference_ceil_avgpool_overhang.nin"
    np.save(tmp_path / "x.npy", test_inputs(nindsl.load(spec), batch=1))
    model = tmp_path / "m.onnx"
    write_onnx(nindsl.load(spec), model)
    for source in (spec, model):
        result = cli("run", source, "--input", tmp_path / "x.npy", "--backend", "reference")
        assert result.code == 0 and "warning: onnx" in result.err and "avgpool1 (ceil-mode average" in result.err
        assert "use --backend onnxruntime" in result.err
    result = cli("run", spec, "--input", tmp_path / "x.npy")
    assert result.code == 0 and "warning" not in result.err


def test_safetensors_whose_header_starts_like_a_pickle_still_loads(tmp_path):
    """Found by the TVM differential test: a header length of 128 + 256·k makes the first
    byte 0x80, a pickle's protocol marker."""
    import struct

    network = nindsl.load(SPECS / "nin_digits.nin")
    weights = test_weights(network)
    path = tmp_path / "w.safetensors"
    for padding in range(300):
        save_weights(path, weights, {"pad": "x" * padding})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80 and struct.unpack("<Q", path.read_bytes()[:8])[0] % 256 == 128
    loaded = nindsl.weights.load_weights(network, path)
    assert all(np.array_equal(loaded[k], weights[k]) for k in weights)


@pytest.mark.parametrize("spec", ["nin_cifar10", "nin_imagenet"])
def test_every_intermediate_tensor_has_its_shape(spec):
    """value_info for every tensor between the input and the output (Netron shows them),
    equal to nindsl's own shapes at each layer's output."""
    network = nindsl.load(SPECS / f"{spec}.nin")
    model = to_onnx(network)
    infos = {v.name: tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
             for v in model.graph.value_info}
    produced = {name for node in model.graph.node for name in node.output} - {network.output.name}
    assert produced == set(infos)
    assert infos["conv1.2.relu"] == network.shapes[0].out_shape
