"""Issue 34, "Crashes": what used to end with exit 3 (an internal error) or a signal is a located
nindsl error with exit 1 (2 for a command line argparse refuses), in every command it reaches.

Each case runs the real command line in a subprocess (as the hostile corpus does): no
traceback, no "internal error", a message that says why, and nothing written in the case's
folder on a refusal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_SPEC_TRAINED_BRIEFLY

pytest.importorskip("onnx")

TIMEOUT = 120

TINY = SMALL_SPEC_TRAINED_BRIEFLY


def nindsl(folder: Path, *argv, env: dict | None = None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", NO_COLOR="1", **(env or {}))
    try:
        return subprocess.run([sys.executable, "-m", "nindsl", *map(str, argv)], cwd=folder, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=TIMEOUT, env=environment, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"nindsl {' '.join(map(str, argv))}: no answer within {TIMEOUT} s")


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def refused(folder: Path, *argv, codes=(1,), says: str = "", env: dict | None = None) -> str:
    """Run ``nindsl argv`` in ``folder``: a clean refusal that writes nothing; its stderr."""
    before = _files(folder)
    done = nindsl(folder, *argv, env=env)
    err = done.stderr.decode(errors="replace")
    shown = f"nindsl {' '.join(map(str, argv))}: exit {done.returncode}\n{err[-3000:]}"
    assert done.returncode in codes, shown
    assert "Traceback" not in err and "internal error" not in err, shown
    assert done.returncode == 0 or "error" in err, shown
    assert says in err, shown
    assert _files(folder) == before, f"{shown}\nfiles changed"
    return err


@pytest.fixture
def tiny(tmp_path) -> Path:
    (tmp_path / "tiny.nin").write_text(TINY)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    return tmp_path / "tiny.nin"


# --- repeats nested ~490 deep: RecursionError in the parser; the LSP's internal error ----------


def deep_repeats(depth: int) -> str:
    return ("network t() {\n    input x: f32[N, 1, 8, 8]\n" + "repeat 1 {\n" * depth + "relu()\n" + "}\n" * depth
            + "}\n")


@pytest.mark.parametrize("command", ["check", "summary", "fmt", "compile", "draw", "run"])
def test_repeats_nested_490_deep_are_refused_at_the_33rd(tmp_path, command):
    spec = tmp_path / "deep.nin"
    spec.write_text(deep_repeats(490))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    tail = {"compile": ["-o", tmp_path / "m.onnx"], "draw": ["-o", tmp_path / "d.png"],
            "run": ["-i", tmp_path / "x.npy"]}.get(command, [])
    err = refused(tmp_path, command, spec, *tail, says="blocks and repeats nest deeper than 32")
    assert "deep.nin:35:1: error[E0401]" in err  # the 33rd repeat, on line 35


def test_the_nesting_limit_and_the_expression_limit_hold_together():
    """32 repeats around an expression 200 deep: within both limits, so it checks (the parser's
    recursion follows both at once)."""
    import nindsl
    from nindsl.kernel.diagnostics import NindslError

    text = deep_repeats(32).replace("relu()", "dropout(" + "(" * 199 + "0.5" + ")" * 199 + ")")
    assert nindsl.check(text).layers
    with pytest.raises(NindslError, match="nest deeper than 32"):
        nindsl.check(deep_repeats(33))
    with pytest.raises(NindslError, match="nest deeper than 32"):
        nindsl.check(deep_repeats(5_000))  # (far past what Python's stack would follow)


def test_the_language_server_reports_deep_repeats_as_a_diagnostic(tmp_path):
    pytest.importorskip("pygls")
    from nindsl.lsp.analysis import analyse

    analysis = analyse(tmp_path / "deep.nin", deep_repeats(490))
    assert [d.code for d in analysis.diagnostics] == ["E0401"]
    assert analysis.diagnostics[0].span.line == 35

    server = LspProcess(tmp_path)
    try:
        uri = (tmp_path / "deep.nin").as_uri()
        server.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "nin", "version": 1, "text": deep_repeats(490)}}})
        published = server.until(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        assert [d["code"] for d in published["params"]["diagnostics"]] == ["E0401"]
        assert not any("internal error" in json.dumps(m) for m in server.seen)
    finally:
        server.close()


# --- the language server given Content-Length: 99999999999 ---------------------------------


class LspProcess:
    """`nindsl lsp` on pipes, spoken to in raw JSON-RPC frames."""

    def __init__(self, folder: Path):
        self.process = subprocess.Popen([sys.executable, "-m", "nindsl", "lsp"], cwd=folder, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.seen: list[dict] = []
        self.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
        self.until(lambda m: m.get("id") == 1)
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def read(self) -> dict:
        length = None
        while True:
            line = self.process.stdout.readline()
            assert line, "the server ended"
            if line.strip() == b"" and length is not None:
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        message = json.loads(self.process.stdout.read(length))
        self.seen.append(message)
        return message

    def until(self, condition) -> dict:
        import threading

        timer = threading.Timer(30, self.process.kill)  # (a hang fails the read instead of the run)
        timer.start()
        try:
            while True:
                message = self.read()
                if condition(message):
                    return message
        finally:
            timer.cancel()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def test_the_language_server_refuses_a_message_longer_than_its_limit(tmp_path):
    pytest.importorskip("pygls")
    server = LspProcess(tmp_path)
    server.process.stdin.write(b"Content-Length: 99999999999\r\n\r\n{}")
    server.process.stdin.flush()
    try:
        _, err = server.process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        pytest.fail("the server neither refused nor read the message")
    err = err.decode(errors="replace")
    assert server.process.returncode == 1, err
    assert "99,999,999,999 bytes" in err and "error[E0401]" in err and "Traceback" not in err


def test_the_language_server_still_reads_a_message_within_its_limit(tmp_path):
    pytest.importorskip("pygls")
    server = LspProcess(tmp_path)
    try:
        text = "# " + "x" * 900_000 + "\n" + TINY  # a spec near the 1 MiB file limit
        server.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": (tmp_path / "big.nin").as_uri(), "languageId": "nin", "version": 1, "text": text}}})
        published = server.until(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        assert published["params"]["diagnostics"] == []
    finally:
        server.close()


# --- bfloat16 and other dtypes in --weights -----------------------------------------------


def _checkpoint(folder: Path, dtype: str) -> Path:
    """The tiny spec's initial weights saved as ``dtype`` (a PyTorch dtype name)."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    import nindsl
    from nindsl.weights import initial_weights

    weights = initial_weights(nindsl.load(folder / "tiny.nin"))
    path = folder / f"{dtype}.safetensors"
    save_file({k: torch.from_numpy(v).to(getattr(torch, dtype)) for k, v in weights.items()}, path)
    return path


@pytest.mark.slow  # (three commands, each importing PyTorch)
def test_bfloat16_weights_are_read_exactly_as_float32(tiny):
    torch = pytest.importorskip("torch")
    from nindsl.weights import read_tensors

    path = _checkpoint(tiny.parent, "bfloat16")
    from safetensors.torch import load_file

    expected = {k: v.to(torch.float32).numpy() for k, v in load_file(path).items()}
    tensors, _ = read_tensors(path)
    assert tensors.keys() == expected.keys()
    for name, value in tensors.items():
        assert value.dtype == np.float32 and np.array_equal(value, expected[name]), name
    for argv in (["compile", tiny, "--weights", path, "-o", tiny.parent / "m.onnx"],
                 ["run", tiny, "--weights", path, "-i", tiny.parent / "x.npy"],
                 ["run", tiny, "--backend", "torch", "--weights", path, "-i", tiny.parent / "x.npy"]):
        done = nindsl(tiny.parent, *argv)
        assert done.returncode == 0, done.stderr.decode()


@pytest.mark.parametrize("command", ["compile", "run", "run-torch"])
def test_a_dtype_nindsl_cannot_read_is_refused_by_name(tiny, command):
    torch = pytest.importorskip("torch")
    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("this torch has no float8")
    path = _checkpoint(tiny.parent, "float8_e4m3fn")
    argv = {"compile": ["compile", tiny, "--weights", path, "-o", tiny.parent / "m.onnx"],
            "run": ["run", tiny, "--weights", path, "-i", tiny.parent / "x.npy"],
            "run-torch": ["run", tiny, "--backend", "torch", "--weights", path, "-i", tiny.parent / "x.npy"]}[command]
    refused(tiny.parent, *argv, says="is F8_E4M3, which nindsl does not read")


# --- ONNX metadata that is not JSON, of the wrong types, or absurd --------------------------


BAD_METADATA = {
    "preprocess_not_json": ("preprocess", "{x"),
    "preprocess_list": ("preprocess", "[1]"),
    "preprocess_nested": ("preprocess", "[" * 100_000),
    "preprocess_resize_huge": ("preprocess", json.dumps({"resize": 10**9})),
    "preprocess_resize_text": ("preprocess", json.dumps({"resize": "big"})),
    "preprocess_resize_float": ("preprocess", json.dumps({"resize": 1e300})),
    "preprocess_resize_object": ("preprocess", json.dumps({"resize": {"a": 1}})),
    "preprocess_mean_text": ("preprocess", json.dumps({"mean": "abc"})),
    "preprocess_mean_5_values": ("preprocess", json.dumps({"mean": [1, 2, 3, 4, 5]})),
    "preprocess_std_nan": ("preprocess", '{"std": [NaN]}'),
    "preprocess_std_zero": ("preprocess", json.dumps({"std": [0]})),
    "preprocess_unknown_key": ("preprocess", json.dumps({"epochs": {"a": 1}})),
    "params_not_json": ("params", "{x"),
    "params_list": ("params", "[1]"),
    "params_nested": ("params", "[" * 100_000),
    "params_object_value": ("params", json.dumps({"classes": {"a": 1}})),
}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """The tiny spec compiled to ONNX once for the module (the cases change its metadata)."""
    folder = tmp_path_factory.mktemp("onnx")
    (folder / "tiny.nin").write_text(TINY)
    done = nindsl(folder, "compile", folder / "tiny.nin", "-o", folder / "tiny.onnx")
    assert done.returncode == 0, done.stderr.decode()
    return folder / "tiny.onnx"


def _model_with(folder: Path, original: Path, key: str, value: str) -> Path:
    import onnx

    model = onnx.load(original)
    props = {p.key: p.value for p in model.metadata_props} | {f"nindsl.{key}": value}
    del model.metadata_props[:]
    for name, text in props.items():
        model.metadata_props.add(key=name, value=text)
    path = folder / "bad.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("case", "command"), [(case, command) for case in BAD_METADATA
                                               for command in ("import", "run-image", "inspect")
                                               if not (command == "run-image" and case.startswith("params"))])
def test_damaged_onnx_metadata_is_refused_or_shown_never_a_crash(tiny, tiny_onnx, case, command):
    """(`run` reads no parameters; `inspect` shows what it can read: exit 0 or a refusal.)"""
    from PIL import Image

    model = _model_with(tiny.parent, tiny_onnx, *BAD_METADATA[case])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tiny.parent / "img.png")
    key = BAD_METADATA[case][0]
    if command == "inspect":
        refused(tiny.parent, "inspect", model, codes=(0, 1), says="")
        return
    argv = ["import", model, "-o", tiny.parent / "out.nin"] if command == "import" else \
        ["run", model, "-i", tiny.parent / "img.png", "-o", tiny.parent / "y.npy"]
    refused(tiny.parent, *argv, says=f"`nindsl.{key}`")


@pytest.mark.slow
def test_recorded_preprocessing_a_train_section_wrote_is_accepted(tiny):
    from PIL import Image

    tiny.write_text(TINY.replace("batch = 8", "batch = 8\n    resize = 10\n    mean = [0.5]\n    std = [0.25]"))
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tiny.parent / "img.png")
    assert nindsl(tiny.parent, "compile", tiny, "-o", tiny.parent / "m.onnx").returncode == 0
    done = nindsl(tiny.parent, "run", tiny.parent / "m.onnx", "-i", tiny.parent / "img.png")
    assert done.returncode == 0, done.stderr.decode()
    done = nindsl(tiny.parent, "import", tiny.parent / "m.onnx", "-o", tiny.parent / "back.nin")
    assert done.returncode == 0, done.stderr.decode()
    assert "resize = 10" in (tiny.parent / "back.nin").read_text()


def test_a_spec_resize_over_the_limit_is_refused_by_check(tmp_path):
    (tmp_path / "s.nin").write_text(TINY.replace("batch = 8", "batch = 8\n    resize = 1000000"))
    refused(tmp_path, "check", tmp_path / "s.nin", says="`resize = 1,000,000` is over the limit of 8,192")


# --- a Caffe stride of 0 ------------------------------------------------------------------


CAFFE = """name: "t"
input: "data"
input_dim: 1
input_dim: 3
input_dim: 8
input_dim: 8
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 CONV } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 POOL } }
"""


@pytest.mark.parametrize(("conv", "pool", "layer"), [("stride: 0", "", "conv1"), ("stride_h: 0 stride_w: 0", "", "conv1"),
                                                     ("", "stride: 0", "pool1")])
def test_a_caffe_stride_of_0_is_refused_at_its_layer(tmp_path, conv, pool, layer):
    pytest.importorskip("google.protobuf")
    (tmp_path / "net.prototxt").write_text(CAFFE.replace("CONV", conv).replace("POOL", pool))
    err = refused(tmp_path, "import", tmp_path / "net.prototxt", "-o", tmp_path / "net.nin",
                  says=f"layer `{layer}`")
    assert "stride 0 is not a step" in err and "net.prototxt:" in err


# --- draw --dpi 100000 ----------------------------------------------------------------------


@pytest.mark.parametrize("picture", ["d.png", "d.svg", "d.pdf"])
def test_draw_at_an_absurd_resolution_is_refused_before_drawing(tiny, picture):
    pytest.importorskip("matplotlib")
    refused(tiny.parent, "draw", tiny, "--dpi", "100000", "-o", tiny.parent / picture,
            says="--dpi 100,000 is over the limit of 1,200")


def test_draw_of_a_png_too_many_pixels_is_refused_before_drawing(tmp_path):
    pytest.importorskip("matplotlib")
    layers = "    relu()\n" * 100
    (tmp_path / "s.nin").write_text(f"network t() {{\n    input x: f32[N, 1, 8, 8]\n{layers}}}\n")
    refused(tmp_path, "draw", tmp_path / "s.nin", "--dpi", "1200", "-o", tmp_path / "d.png",
            says="pixels; `nindsl draw` writes at most 64,000,000")


# --- --threads 100000, and seeds no generator takes --------------------------------------------


@pytest.mark.parametrize("command", ["run", "train"])
def test_threads_beyond_the_machine_are_a_usage_error_before_anything_is_written(tiny, command):
    np.savez(tiny.parent / "data.npz", images=np.zeros((16, 1, 8, 8), np.float32), labels=np.arange(16) % 4)
    tail = ["--backend", "torch", "-i", tiny.parent / "x.npy"] if command == "run" else \
        ["--data", tiny.parent / "data.npz", "--epochs", "1", "--out", tiny.parent / "runs"]
    err = refused(tiny.parent, command, tiny, "--threads", "100000", *tail, codes=(2,),
                  says="100,000 threads is more than this machine can use")
    assert not (tiny.parent / "runs").exists()
    assert "per usable CPU" in err


def test_threads_in_the_python_api_are_bounded_too():
    from nindsl.kernel.diagnostics import NindslError
    from nindsl.kernel.machine import checked_threads, max_threads

    assert checked_threads(max_threads()) == max_threads()
    with pytest.raises(NindslError, match="the most this machine takes"):
        checked_threads(100_000)


def test_a_training_seed_beyond_64_bits_is_a_usage_error(tiny):
    """PyTorch's generators take 64 bits (train --seed 1e23 overflowed in them); numpy's, which
    compile and run draw weights with, take any whole number (the corpus runs one)."""
    np.savez(tiny.parent / "data.npz", images=np.zeros((16, 1, 8, 8), np.float32), labels=np.arange(16) % 4)
    refused(tiny.parent, "train", tiny, "--seed", str(10**23), "--data", tiny.parent / "data.npz", "--epochs", "1",
            "--out", tiny.parent / "runs", codes=(2,), says="over the largest seed training takes")
    assert not (tiny.parent / "runs").exists()


# --- the output's encoding, and an output that cannot be written -----------------------------


def test_an_ascii_terminal_gets_the_output_with_what_it_cannot_show_replaced(tiny):
    (tiny.parent / "uni.nin").write_text("# café × 2\n" + TINY)
    ascii_only = {"PYTHONIOENCODING": "ascii"}
    for argv in (["summary", tiny], ["explain", "E0401"], ["explain", "E0111"], ["check", tiny]):
        done = nindsl(tiny.parent, *argv, env=ascii_only)
        assert done.returncode == 0, done.stderr.decode()
        done.stdout.decode("ascii")  # (nothing it could not encode)
    done = nindsl(tiny.parent, "fmt", "--stdout", tiny.parent / "uni.nin", env=ascii_only)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode("utf-8").startswith("# café × 2\n")  # a spec is UTF-8, whatever the terminal


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["summary", "tiny.nin"], ["explain", "E0401"], ["fmt", "--stdout", "tiny.nin"],
                                  ["check", "tiny.nin"]], ids=["summary", "explain", "fmt", "check"])
def test_a_full_disk_under_stdout_is_the_users_error_not_a_bug(tiny, argv):
    with open("/dev/full", "wb") as full:
        done = nindsl(tiny.parent, *argv, stdout=full)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "cannot write the output: No space left on device" in err
    assert "internal error" not in err and "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.parametrize("argv", [["summary", "tiny.nin"], ["explain", "E0401"], ["fmt", "--stdout", "tiny.nin"]],
                         ids=["summary", "explain", "fmt"])
def test_a_closed_stdout_is_the_users_error_not_a_bug(tiny, argv):
    done = subprocess.run([sys.executable, "-m", "nindsl", *argv], cwd=tiny.parent, stderr=subprocess.PIPE,
                          preexec_fn=lambda: os.close(1), timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    err = done.stderr.decode()
    assert done.returncode == 1 and "cannot write the output: standard output is closed" in err, err
    assert "internal error" not in err and "Traceback" not in err


# --- rpc --host '' (TVM's traceback from its child) ----------------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    (["tracker", "--host", ""], "--host is empty"),
    (["tracker", "--host", " "], "--host is empty"),
    (["tracker", "--host", "nosuchhost.invalid"], "is not an address this machine can resolve"),
    (["tracker", "--host", "192.0.2.1"], "cannot listen on 192.0.2.1"),
    (["server", "--host", "", "--tracker", "127.0.0.1:9190", "--key", "k"], "--host is empty"),
    (["server", "--tracker", "nosuchhost.invalid:9190", "--key", "k"], "--tracker `nosuchhost.invalid`"),
], ids=["tracker-empty", "tracker-blank", "tracker-unknown", "tracker-not-here", "server-empty", "server-tracker"])
@pytest.mark.slow  # (each imports TVM: about 5 s)
def test_rpc_refuses_an_address_it_cannot_listen_on_before_tvm_starts(tmp_path, argv, says):
    pytest.importorskip("tvm")
    pytest.importorskip("tornado")
    refused(tmp_path, "rpc", *argv, says=says)


@pytest.mark.slow
def test_rpc_tracker_refuses_a_port_another_program_holds(tmp_path):
    pytest.importorskip("tvm")
    pytest.importorskip("tornado")
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        refused(tmp_path, "rpc", "tracker", "--port", port, says=f"cannot listen on 127.0.0.1:{port}")


# --- an artifact whose manifest was rehashed over other weights --------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    pytest.importorskip("tvm")
    folder = tmp_path_factory.mktemp("art")
    (folder / "tiny.nin").write_text(TINY)
    done = nindsl(folder, "compile", folder / "tiny.nin", "--target", "llvm", "-o", folder / "art")
    assert done.returncode == 0, done.stderr.decode()
    return folder / "art"


def _rehashed(artifact: Path, folder: Path, weights=None, manifest=None) -> Path:
    """A copy of ``artifact`` with its weights and manifest changed, the manifest's hashes made to agree."""
    import hashlib

    from safetensors.numpy import load_file, save_file

    copy = folder / "art"
    shutil.copytree(artifact, copy)
    tensors = load_file(copy / "weights.safetensors")
    save_file(weights(tensors) if weights else tensors, copy / "weights.safetensors")
    record = json.loads((copy / "manifest.json").read_text())
    if manifest:
        manifest(record)
    for name in record["files"]:
        record["files"][name] = hashlib.sha256((copy / name).read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(record))
    return copy


FIRST = "mlpconv1.0.weight"
REHASHED = {
    "shape": (lambda w: {**w, FIRST: np.zeros((8, 1, 5, 5), np.float32)}, None, "is float32 [8, 1, 5, 5]"),
    "rank": (lambda w: {**w, FIRST: np.zeros((72,), np.float32)}, None, "is float32 [72]"),
    "float64": (lambda w: {k: v.astype(np.float64) for k, v in w.items()}, None, "float64"),
    "int32": (lambda w: {k: v.astype(np.int32) for k, v in w.items()}, None, "int32"),
    "missing": (lambda w: {k: v for k, v in w.items() if k != FIRST}, None, f"lacks `{FIRST}`"),
    "bogus_parameter": (None, lambda m: m.update(parameters=["nope"]), "lacks `nope`"),
    "fewer_parameters": (None, lambda m: m.update(parameters=m["parameters"][:2]), "which the manifest does not list"),
    "repeated_parameters": (None, lambda m: m.update(parameters=m["parameters"] * 2), "parameters are malformed"),
    "no_parameters": (None, lambda m: m.update(parameters=[]), "which the manifest does not list"),
    "transform_params_text": (None, lambda m: m.update(transform_params="yes"), "`transform_params`"),
    "preprocess_resize": (None, lambda m: m.update(preprocess={"resize": 10**9}), "its preprocess `resize`"),
    "preprocess_list": (None, lambda m: m.update(preprocess=[1]), "its preprocess is list"),
    "forged_consistently": (lambda w: {k: w[k] for k in sorted(w)[:2]},
                            lambda m: m.update(parameters=sorted(m["parameters"])[:2],
                                               parameter_types={k: m["parameter_types"][k]
                                                                for k in sorted(m["parameters"])[:2]}),
                            "its library does not take these weights"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", REHASHED)
def test_an_artifact_rehashed_over_other_weights_is_refused(artifact, tmp_path, case):
    weights, manifest, says = REHASHED[case]
    copy = _rehashed(artifact, tmp_path, weights, manifest)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    refused(tmp_path, "run", copy, "-i", tmp_path / "x.npy", says=says)


@pytest.mark.slow
def test_an_artifact_whose_input_shape_was_rewritten_is_refused_at_the_call(artifact, tmp_path):
    from PIL import Image

    copy = _rehashed(artifact, tmp_path, manifest=lambda m: m["input"].update(shape=["N", 1, 16, 16]))
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "img.png")
    refused(tmp_path, "run", copy, "-i", tmp_path / "img.png", says="`main` parameter `x`")


@pytest.mark.slow
def test_an_artifact_as_built_still_runs(artifact, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    done = nindsl(tmp_path, "run", artifact, "-i", tmp_path / "x.npy")
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads((artifact / "manifest.json").read_text())["parameter_types"][FIRST] == ["float32", [8, 1, 3, 3]]
