"""Special files and lying headers get a clear refusal before anything is read, and non-finite
numbers never reach a backend (issue: "No surprises")."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from conftest import SPECS

pytest.importorskip("onnxruntime")
pytest.importorskip("safetensors")

from nindsl.weights import initial_weights, save_weights  # noqa: E402

DIGITS = SPECS / "nin_digits.nin"


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.npy"
    os.mkfifo(path)
    return path


def test_a_fifo_or_a_device_is_refused_without_reading_it(cli, tmp_path, fifo):
    for argv in (("run", DIGITS, "-i", fifo), ("compile", DIGITS, "--weights", fifo, "-o", tmp_path / "m.onnx"),
                 ("compile", DIGITS, "--weights", "/dev/zero", "-o", tmp_path / "m.onnx"), ("inspect", fifo)):
        result = cli(*argv)  # a FIFO with no writer would block a plain open() forever
        assert result.code == 1 and "not a regular file" in result.err, argv
    assert not (tmp_path / "m.onnx").exists()


def test_an_artifact_whose_manifest_is_a_fifo_or_huge_is_refused(cli, tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    os.mkfifo(folder / "manifest.json")
    result = cli("run", folder, "-i", tmp_path / "x.npy")
    assert result.code == 1 and "not a regular file" in result.err
    os.unlink(folder / "manifest.json")
    (folder / "manifest.json").write_text(" " * (2 << 20))
    result = cli("run", folder, "-i", tmp_path / "x.npy")
    assert result.code == 1 and "the most nindsl reads as a manifest" in result.err


def test_an_npy_claiming_more_than_it_holds_is_refused_before_allocating(cli, tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**9, 1, 8, 8)})
    liar = tmp_path / "liar.npy"
    liar.write_bytes(header.getvalue() + b"\0" * 64)  # 193 bytes claiming 256 GB
    result = cli("run", DIGITS, "-i", liar)
    assert result.code == 1 and "claims [1000000000, 1, 8, 8] float32" in result.err


def test_an_input_that_overflows_float32_is_refused(cli, tmp_path):
    np.save(tmp_path / "big.npy", np.full((1, 1, 8, 8), 1e300))  # finite as float64, inf as float32
    result = cli("run", DIGITS, "-i", tmp_path / "big.npy")
    assert result.code == 1 and "NaN or infinite values (as float32)" in result.err


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused_on_every_path(cli, tmp_path, bad):
    import nindsl

    network = nindsl.load(DIGITS)
    weights = initial_weights(network)
    name = next(iter(weights))
    weights[name].flat[0] = bad
    save_weights(tmp_path / "w.safetensors", weights)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    for argv in (("compile", DIGITS, "--weights", tmp_path / "w.safetensors", "-o", tmp_path / "m.onnx"),
                 ("run", DIGITS, "--weights", tmp_path / "w.safetensors", "-i", tmp_path / "x.npy"),
                 ("run", DIGITS, "--backend", "torch", "--weights", tmp_path / "w.safetensors", "-i",
                  tmp_path / "x.npy")):
        result = cli(*argv)
        assert result.code == 1 and "NaN or infinite" in result.err and name in result.err, argv
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name", ["True", "none", "_1", "class"])
def test_any_network_name_makes_a_twin_class(name, tmp_path):
    torch = pytest.importorskip("torch")
    import nindsl

    network = nindsl.check(f"network {name}() {{\n    input x: f32[N, 1, 8, 8]\n    conv(2, 3)\n"
                           "    global_avgpool()\n}\n")
    twin = nindsl.to_torch(network)
    assert twin(torch.zeros(1, 1, 8, 8)).shape == (1, 2)


def test_a_label_python_would_mangle_keeps_its_state_dict_name(tmp_path):
    torch = pytest.importorskip("torch")
    import nindsl
    from nindsl.onnx.runtime import run

    network = nindsl.check("network t() {\n    input x: f32[N, 1, 8, 8]\n    __hidden: conv(2, 3)\n"
                           "    global_avgpool()\n}\n")
    twin = nindsl.to_torch(network).eval()
    assert sorted(twin.state_dict()) == ["__hidden.bias", "__hidden.weight"]
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        assert np.allclose(twin(torch.from_numpy(x)).numpy(), run(nindsl.to_onnx(network), x), atol=1e-6)


def test_seed_and_pointless_options_are_refused(cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:  # argparse: a bad command line, exit status 2
        cli("compile", DIGITS, "--seed", "-1", "-o", tmp_path / "m.onnx")
    assert usage.value.code == 2 and "0 or more" in capsys.readouterr().err
    result = cli("compile", DIGITS, "-t", "torch", "--weights", tmp_path / "w.safetensors", "-o", tmp_path / "t.py")
    assert result.code == 1 and "--weights does nothing with --target torch" in result.err
    assert not (tmp_path / "t.py").exists()


def test_inspect_describes_an_artifact_folder(cli, tmp_path):
    pytest.importorskip("tvm")
    assert cli("compile", DIGITS, "-t", "llvm", "-o", tmp_path / "a").code == 0
    result = cli("inspect", tmp_path / "a")
    assert result.code == 0 and "network `nin_digits`" in result.out and "(profile `llvm`)" in result.out
    (tmp_path / "empty").mkdir()
    result = cli("inspect", tmp_path / "empty")
    assert result.code == 1 and "not a nindsl artifact" in result.err


def test_an_unknown_target_shows_the_json_form(cli, tmp_path):
    result = cli("compile", DIGITS, "-t", "llvm -mcpu=skylake -num-cores=4", "-o", tmp_path / "a")
    assert result.code == 1 and "not TVM's target string" in result.err
    assert '--target \'{"kind": "llvm", "mcpu": "skylake", "num-cores": 4}\'' in result.err  # what that string says
    result = cli("compile", DIGITS, "-t", "lvm", "-o", tmp_path / "a")
    assert result.code == 1 and "did you mean `llvm`?" in result.err


def test_an_unknown_llvm_cpu_is_refused_before_building(cli, tmp_path):
    pytest.importorskip("tvm")
    result = cli("compile", DIGITS, "-t", '{"kind": "llvm", "mcpu": "skylak"}', "-o", tmp_path / "a")
    assert result.code == 1 and "in --target: LLVM knows no CPU `skylak`" in result.err, result.err
    assert "did you mean `skylake`?" in result.err and "llvm_get_cpu_archlist" in result.err
    profile = tmp_path / "mine.toml"
    profile.write_text('name = "mine"\n[target]\nkind = "llvm"\nmcpu = "notacpu"\n')
    result = cli("compile", DIGITS, "-t", profile, "-o", tmp_path / "a")
    assert result.code == 1 and f"in `{profile}`: LLVM knows no CPU `notacpu`" in result.err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("damage", ["unlisted library", "outside path", "bad type", "no weights hash"])
def test_a_manifest_is_validated_before_anything_is_loaded(cli, tmp_path, damage):
    pytest.importorskip("tvm")
    import json

    assert cli("compile", DIGITS, "-t", "llvm", "-o", tmp_path / "a").code == 0
    path = tmp_path / "a" / "manifest.json"
    manifest = json.loads(path.read_text())
    if damage == "unlisted library":  # its constructor would run unchecked
        del manifest["files"]["model.so"]
    elif damage == "outside path":
        manifest["files"]["../../etc/passwd"] = "0" * 64
    elif damage == "bad type":
        manifest["parameters"] = "conv1.weight"
    else:
        del manifest["files"]["weights.safetensors"]
    path.write_text(json.dumps(manifest))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    result = cli("run", tmp_path / "a", "-i", tmp_path / "x.npy")
    assert result.code == 1 and "manifest.json" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("body, message", [
    ("    x: conv(2, 3)\n    global_avgpool()\n    output y: f32[N, 2]\n", "`x` names both the input and a layer"),
    ("    c: conv(2, 3)\n    global_avgpool()\n    output c: f32[N, 2]\n", "`c` names both the output and a layer"),
    ("    conv(2, 3)\n    global_avgpool()\n    output x: f32[N, 2]\n", "the input and the output are both called"),
])
def test_check_refuses_names_that_no_backend_could_build(cli, tmp_path, body, message):
    spec = tmp_path / "clash.nin"
    spec.write_text(f"network t() {{\n    input x: f32[N, 1, 8, 8]\n{body}}}\n")
    for argv in (("check", spec), ("compile", spec, "-o", tmp_path / "m.onnx")):
        result = cli(*argv)
        assert result.code == 1 and message in result.err and "E0108" in result.err, argv


def test_fmt_check_reports_every_file(cli, tmp_path):
    broken, unformatted = tmp_path / "broken.nin", tmp_path / "loose.nin"
    broken.write_text("network a( {\n")
    unformatted.write_text("network t() {\n  input x: f32[N, 1, 8, 8]\n  conv(2, 3)\n}\n")
    result = cli("fmt", "--check", broken, unformatted)
    assert result.code == 1 and "E0001" in result.err and f"{unformatted}: not formatted" in result.err


def test_a_checkpoint_with_other_names_is_one_error_with_the_renaming(cli, tmp_path):
    import nindsl

    network = nindsl.load(DIGITS)
    weights = {f"model.{name}": value for name, value in initial_weights(network).items()}
    save_weights(tmp_path / "w.safetensors", weights)
    result = cli("compile", DIGITS, "--weights", tmp_path / "w.safetensors", "-o", tmp_path / "m.onnx")
    assert result.code == 1 and result.err.count("error[E0501]") == 1 and result.err.endswith("1 error\n")
    assert f"lacks {len(weights)} of the spec's {len(weights)} tensors" in result.err
    assert "carry the prefix `model.`" in result.err and "removeprefix('model.')" in result.err
    assert len(result.err.splitlines()) < 40


@pytest.mark.parametrize("body, message", [
    ("    input x: f32[N, 1048576, 1048576, 1048576]\n    global_avgpool()\n", "the input `x`"),
    ("    input x: f32[N, 1, 64, 64]\n    conv(1048576, 3)\n    global_avgpool()\n", "`conv1`'s output"),
    ("    input x: f32[N, 1, 1, 1]\n    flatten()\n    dense(100000)\n    dense(10000)\n", "parameters; the limit"),
])
def test_check_refuses_what_no_backend_could_hold(cli, tmp_path, body, message):
    spec = tmp_path / "huge.nin"
    spec.write_text(f"network t() {{\n{body}}}\n")
    for argv in (("check", spec), ("compile", spec, "-o", tmp_path / "m.onnx")):
        result = cli(*argv)
        assert result.code == 1 and "E0401" in result.err and message in result.err, argv
    assert not (tmp_path / "m.onnx").exists()


def test_a_batch_too_large_is_refused_with_the_figure(cli, tmp_path):
    result = cli("bench", SPECS / "nin_imagenet.nin", "--batch", "100000", "--engines", "onnxruntime")
    assert result.code == 1 and "GiB for its input and activations" in result.err
    result = cli("compile", DIGITS, "-t", "llvm", "--batch", str(10**12), "-o", tmp_path / "a")
    assert result.code == 1 and "--batch must be between 1 and" in result.err


def test_untrained_weights_are_said_to_be_untrained(cli, tmp_path):
    import nindsl

    result = cli("compile", DIGITS, "-o", tmp_path / "m.onnx")
    assert result.code == 0 and "untrained" in result.err
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    for model in (DIGITS, tmp_path / "m.onnx"):  # a spec, and a model that records its weights' origin
        result = cli("run", model, "-i", tmp_path / "x.npy")
        assert result.code == 0 and "untrained" in result.err, model
    save_weights(tmp_path / "w.safetensors", initial_weights(nindsl.load(DIGITS), seed=5))
    result = cli("run", DIGITS, "-i", tmp_path / "x.npy", "--weights", tmp_path / "w.safetensors")
    assert result.code == 0 and "untrained" not in result.err


def _port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_stops_the_rpc_tracker_quietly(tmp_path):
    pytest.importorskip("tvm")
    pytest.importorskip("tornado")
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # its own process group, as a terminal's foreground job: Ctrl-C signals the whole group. A
    # foreground job takes SIGINT at its default; a test run started in the background by a
    # script ignores SIGINT, and a child would inherit that and never see the Ctrl-C.
    tracker = subprocess.Popen([sys.executable, "-m", "nindsl", "rpc", "tracker", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not _port_open(port) and tracker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _port_open(port), "the tracker did not start"
        os.killpg(tracker.pid, signal.SIGINT)
        out, err = tracker.communicate(timeout=30)
    finally:
        if tracker.poll() is None:
            os.killpg(tracker.pid, signal.SIGKILL)
    assert tracker.returncode == 130 and err.endswith("interrupted\n") and "Traceback" not in err, err
    time.sleep(1)
    assert not _port_open(port)  # TVM's tracker went with it


def test_control_characters_from_files_are_shown_escaped_not_obeyed(cli, tmp_path):
    import onnx

    import nindsl

    spec = tmp_path / "evil\x1b[2J.nin"  # a name and a comment that would clear the screen, retitle the window
    spec.write_text("network t() {\n    input x: f32[N, 1, 8, 8]  # \x1b]0;owned\x07\u202e\n    conv(2, 3)\n}\n")
    result = cli("check", spec)
    assert result.code == 1 and result.err.count("error[E0003]") == 3
    assert "\x1b" not in result.err and "\x07" not in result.err and "\u202e" not in result.err
    assert "evil\\x1b[2J.nin:2:33" in result.err
    assert " 2 |     input x: f32[N, 1, 8, 8]  # \\x1b]0;owned\\x07\\u202e\n" in result.err
    assert "\n   | " + " " * 32 + "^^^^\n" in result.err  # the caret under the escape, not beside it

    weights = {f"\x1b[31m{name}": value for name, value in initial_weights(nindsl.load(DIGITS)).items()}
    save_weights(tmp_path / "w.safetensors", weights)
    result = cli("compile", DIGITS, "--weights", tmp_path / "w.safetensors", "-o", tmp_path / "m.onnx")
    assert result.code == 1 and "removeprefix('\\x1b[31m')" in result.err and "\x1b" not in result.err

    assert cli("compile", DIGITS, "-o", tmp_path / "m.onnx").code == 0
    model = onnx.load(tmp_path / "m.onnx")
    next(p for p in model.metadata_props if p.key == "nindsl.network").value = "t\x1b]0;owned\x07"
    onnx.save(model, tmp_path / "m.onnx")
    result = cli("inspect", tmp_path / "m.onnx")
    assert result.code == 0 and "network `t\\x1b]0;owned\\x07`" in result.out and "\x1b" not in result.out


def test_a_fixed_batch_build_says_how_many_images_it_takes(tmp_path):
    from nindsl.cli.inputs import load_input
    from nindsl.kernel.diagnostics import NindslError

    np.save(tmp_path / "x.npy", np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(NindslError) as refused:
        load_input([str(tmp_path / "x.npy")], "image", (8, 1, 8, 8), None, "compile the spec again without --batch")
    message = str(refused.value)
    assert "this build takes exactly 8 images per run" in message and "the input has 4" in message
    assert "compile the spec again without --batch" in message and "may vary" not in message
    with pytest.raises(NindslError) as refused:  # a variable batch: only the other sizes are wrong
        load_input([str(tmp_path / "x.npy")], "image", ("N", 1, 9, 8))
    assert "expects [N, 1, 9, 8]" in str(refused.value) and "the batch size may vary" in str(refused.value)


@pytest.mark.slow
def test_run_on_a_fixed_batch_artifact_given_fewer_images(cli, tmp_path):
    pytest.importorskip("tvm")
    assert cli("compile", DIGITS, "-t", "llvm", "--batch", "8", "-o", tmp_path / "a").code == 0
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 8, 8), np.float32))
    result = cli("run", tmp_path / "a", "-i", tmp_path / "x.npy")
    assert result.code == 1 and "this build takes exactly 8 images per run" in result.err
    assert "compile the spec again without --batch" in result.err


def test_files_are_known_by_their_content_not_their_name(cli, tmp_path):
    import shutil

    import nindsl
    from nindsl.kernel.io import file_kind

    assert cli("compile", DIGITS, "-o", tmp_path / "model.onnx").code == 0
    save_weights(tmp_path / "w.safetensors", initial_weights(nindsl.load(DIGITS)))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    kinds = {"model.onnx": "onnx", "w.safetensors": "safetensors", "x.npy": "npy"}
    assert {name: file_kind(tmp_path / name) for name in kinds} == kinds and file_kind(DIGITS) == "nin"

    result = cli("summary", tmp_path / "model.onnx")  # was: "byte 0xfc is not valid UTF-8"
    assert result.code == 1 and "is an ONNX model, not a .nin spec" in result.err and "nindsl import" in result.err
    assert "UTF-8" not in result.err
    result = cli("check", tmp_path / "w.safetensors")
    assert result.code == 1 and "is a safetensors checkpoint, not a .nin spec" in result.err and "--weights" in result.err
    result = cli("inspect", DIGITS)  # was: "is the file truncated?"
    assert result.code == 1 and "is a .nin spec, not an ONNX model" in result.err and "truncated" not in result.err
    result = cli("import", DIGITS, "-o", tmp_path / "o.nin")
    assert result.code == 1 and "is a .nin spec, not an ONNX model" in result.err

    shutil.copy(tmp_path / "model.onnx", tmp_path / "model.bin")  # an ONNX model by another name is one
    result = cli("run", tmp_path / "model.bin", "-i", tmp_path / "x.npy")
    assert result.code == 0 and result.out.startswith("example 0:")
    shutil.copy(DIGITS, tmp_path / "spec.onnx")
    shutil.copy(SPECS / "blocks.nin", tmp_path / "blocks.nin")
    result = cli("run", tmp_path / "spec.onnx", "-i", tmp_path / "x.npy")  # and a spec named .onnx is a spec
    assert result.code == 0 and result.out.startswith("example 0:"), result.err


def _spec_with_data(folder, data: str):
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "s.nin"
    spec.write_text("network t() {\n    input x: f32[N, 1, 8, 8]\n    conv(2, 3)\n    global_avgpool()\n}\n\n"
                    f'train {{\n    data = "{data}"\n}}\n')
    return spec


def test_a_specs_data_path_is_read_from_the_specs_folder(cli, tmp_path, monkeypatch):
    import nindsl

    spec = _spec_with_data(tmp_path / "project", "d.npz")
    _spec_with_data(tmp_path / "project" / "sub", "imagefolder:../images")  # inside, though through `..`
    monkeypatch.chdir(tmp_path)  # not the spec's folder: `d.npz` here would be another file
    assert nindsl.load(spec).train.data == str(tmp_path / "project" / "d.npz")
    assert nindsl.load(tmp_path / "project" / "sub" / "s.nin", root=tmp_path / "project").train.data == \
        f"imagefolder:{tmp_path / 'project' / 'images'}"


def test_a_specs_data_path_may_not_leave_the_project_through_a_link(cli, tmp_path):
    (tmp_path / "outside").mkdir()
    spec = _spec_with_data(tmp_path / "project", "link/d.npz")
    (tmp_path / "project" / "link").symlink_to(tmp_path / "outside")
    for argv in (("check", spec), ("train", spec, "--epochs", "1", "--out", tmp_path / "run")):
        result = cli(*argv)
        assert result.code == 1 and f"{spec}:8:12: error[E0303]" in result.err, (argv, result.err)
        assert "leads outside the project folder through a symbolic link" in result.err
    spec = _spec_with_data(tmp_path / "project", "imagefolder:link")
    result = cli("check", spec)
    assert result.code == 1 and "E0303" in result.err
    assert not (tmp_path / "run").exists()


def _png(side: int = 8) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x80" * side for _ in range(side))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_truncated_png_is_refused_not_half_read(cli, tmp_path):
    whole = _png()
    (tmp_path / "whole.png").write_bytes(whole)
    assert cli("run", DIGITS, "-i", tmp_path / "whole.png").code == 0
    for name, data in (("no_end.png", whole[:-12]), ("cut.png", whole[:45])):  # without IEND, and inside IDAT
        (tmp_path / name).write_bytes(data)
        result = cli("run", DIGITS, "-i", tmp_path / name, "-o", tmp_path / "y.npy")
        assert result.code == 1 and f"`{tmp_path / name}` is not a readable image" in result.err, name
        assert "truncated or damaged" in result.err
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("kind", ["int64", "identity"])
def test_importing_an_onnx_model_with_nothing_to_import_is_refused(cli, tmp_path, kind):
    import onnx
    from onnx import TensorProto, helper

    element = TensorProto.INT64 if kind == "int64" else TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", element, [1, 4])],
                              [helper.make_tensor_value_info("y", element, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 7
    onnx.save(model, tmp_path / "m.onnx")
    result = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "o.nin", "--weights-out", tmp_path / "w.safetensors")
    expected = "its input `x` is int64" if kind == "int64" else "holds no layer nindsl imports (Identity"
    assert result.code == 1 and expected in result.err, result.err  # was exit 0 with a spec of 0 layers
    assert not (tmp_path / "o.nin").exists() and not (tmp_path / "w.safetensors").exists()
