"""Values and messages (issue 34): what a hostile or careless input holds is refused with a
located nindsl error, and what nindsl says is about the user's own file, in its own words.

- Non-finite numbers never pass through: an ONNX initializer or a caffemodel blob that is NaN,
  infinite, or overflows float32 (1e300) is refused by `import` and `run`; outputs that overflow
  are refused, not printed; a recorded preprocessing `std` of 0 is refused before it divides.
- Digits of other scripts (`৪`, `٤`, `４`) are not numbers: a located error shows the code point.
- What `check` accepts, every backend builds: a label the PyTorch twin cannot hold is refused by
  `check` itself.
- Names: a `let` that uses a name defined below it, an unused `let` holding an unknown name, two
  imports defining one name, a repeated `--set`: each reported where it is written.
- Messages: import errors name the user's model (not `<string>`), a CR-only prototxt reads as
  text, `run` says which input is which, numpy's advice to unpickle is never passed on, `rpc`
  warns only when others can connect, the language server answers every request, `bundle`
  refuses an artifact that fails its hashes, and a huge name is not echoed whole.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_SPEC

TINY = SMALL_SPEC


def _spec(folder: Path, text: str = TINY, name: str = "s.nin") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _x(folder: Path, value: float = 1.0) -> Path:
    np.save(folder / "x.npy", np.full((1, 1, 8, 8), value, np.float32))
    return folder / "x.npy"


def _no_traceback(result) -> None:
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err


# --- non-finite numbers --------------------------------------------------------------------


def _onnx(cli, folder: Path, text: str = TINY):
    """The spec compiled to ONNX, loaded (an editable ModelProto)."""
    onnx = pytest.importorskip("onnx")
    spec = _spec(folder, text, "m_source.nin")
    assert cli("compile", spec, "-o", folder / "base.onnx").code == 0
    model = onnx.load(folder / "base.onnx")
    os.unlink(folder / "base.onnx")
    os.unlink(spec)
    return model


def _poison(model, value: float, dtype=np.float32) -> str:
    """Set one value of the first initializer (stored as ``dtype``); return its name."""
    from onnx import numpy_helper

    tensor = model.graph.initializer[0]
    array = numpy_helper.to_array(tensor).astype(dtype)
    array.flat[0] = value
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return tensor.name


NON_FINITE = [pytest.param(np.nan, np.float32, id="nan"), pytest.param(np.inf, np.float32, id="inf"),
              pytest.param(1e300, np.float64, id="1e300-double")]


@pytest.mark.parametrize(("value", "dtype"), NON_FINITE)
def test_import_refuses_an_onnx_initializer_that_is_not_finite_as_float32(cli, tmp_path, value, dtype):
    import onnx

    model = _onnx(cli, tmp_path)
    name = _poison(model, value, dtype)
    onnx.save(model, tmp_path / "m.onnx")
    result = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "m.nin", "--weights-out", tmp_path / "w.safetensors")
    assert result.code == 1, result.err
    assert "NaN or infinite" in result.err and f"`{name}`" in result.err and "m.onnx" in result.err
    assert "RuntimeWarning" not in result.err
    _no_traceback(result)
    assert not (tmp_path / "m.nin").exists() and not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize(("value", "dtype"), NON_FINITE)
def test_run_refuses_an_onnx_model_whose_weights_are_not_finite(cli, tmp_path, value, dtype):
    import onnx

    model = _onnx(cli, tmp_path)
    name = _poison(model, value, dtype)
    onnx.save(model, tmp_path / "m.onnx")
    for backend in ("onnxruntime", "reference"):
        result = cli("run", tmp_path / "m.onnx", "-i", _x(tmp_path), "--backend", backend, "-o", tmp_path / "y.npy")
        assert result.code == 1, (backend, result.err)
        assert "NaN or infinite" in result.err and f"`{name}`" in result.err, result.err
        assert "nan" not in result.out.lower()
        _no_traceback(result)
        assert not (tmp_path / "y.npy").exists()


def test_run_refuses_outputs_that_overflow_instead_of_printing_nan(cli, tmp_path):
    """Finite weights and inputs whose products overflow float32: every engine ends in NaN."""
    import nindsl
    from nindsl.weights import initial_weights, save_weights

    spec = _spec(tmp_path)
    network = nindsl.load(spec)
    weights = {name: np.full_like(value, 1e30) for name, value in initial_weights(network).items()}
    save_weights(tmp_path / "w.safetensors", weights)
    for backend in ("onnxruntime", "torch"):
        result = cli("run", spec, "--weights", tmp_path / "w.safetensors", "-i", _x(tmp_path), "--backend", backend,
                     "-o", tmp_path / "y.npy")
        assert result.code == 1, (backend, result.out, result.err)
        assert "NaN or infinite" in result.err and "nan" not in result.out.lower(), result.out
        _no_traceback(result)
        assert not (tmp_path / "y.npy").exists()


def _preprocessed_onnx(cli, folder: Path, preprocess: str) -> Path:
    """A nindsl ONNX model whose recorded preprocessing is ``preprocess`` (JSON text)."""
    import onnx

    model = _onnx(cli, folder, TINY + "\ntrain {\n    mean = 0.5\n    std = 0.25\n}\n")
    entry = next(p for p in model.metadata_props if p.key == "nindsl.preprocess")
    entry.value = preprocess
    onnx.save(model, folder / "m.onnx")
    return folder / "m.onnx"


@pytest.mark.parametrize("preprocess", ['{"mean": [0.5], "std": [0]}', '{"mean": [0.5], "std": [-1]}',
                                        '{"mean": [NaN], "std": [0.25]}', '{"mean": [0.5], "std": [Infinity]}'],
                         ids=["std0", "std-negative", "mean-nan", "std-inf"])
def test_run_refuses_a_recorded_preprocessing_that_cannot_normalise(cli, tmp_path, preprocess):
    from PIL import Image

    model = _preprocessed_onnx(cli, tmp_path, preprocess)
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "a.png")
    with _no_warnings():
        result = cli("run", model, "-i", tmp_path / "a.png")
    assert result.code == 1, (result.out, result.err)
    assert "std" in result.err or "mean" in result.err, result.err
    _no_traceback(result)


class _no_warnings:
    """Fail on any warning raised inside (a RuntimeWarning from numpy's division, say)."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings(record=True)
        self.seen = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        assert not [w for w in self.seen if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in self.seen]
        return False


_PROTOTXT = """name: "small"
input: "data"
input_shape { dim: 1 dim: 1 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
"""


def _caffemodel(path: Path, value: float, double: bool) -> None:
    pytest.importorskip("google.protobuf")
    from nindsl.importers.caffe_schema import messages

    net = messages()["NetParameter"](name="small")
    layer = net.layer.add(name="conv1", type="Convolution")
    weight, bias = np.full((4, 1, 3, 3), 0.1), np.zeros(4)
    weight.flat[3] = value
    for array in (weight, bias):
        blob = layer.blobs.add()
        blob.shape.dim.extend(array.shape)
        (blob.double_data if double else blob.data).extend(array.ravel().tolist())
    path.write_bytes(net.SerializeToString())


@pytest.mark.parametrize(("value", "double"), [(np.nan, False), (np.inf, False), (1e300, True)],
                         ids=["nan", "inf", "1e300-double"])
def test_import_refuses_a_caffemodel_blob_that_is_not_finite_as_float32(cli, tmp_path, value, double):
    (tmp_path / "m.prototxt").write_text(_PROTOTXT)
    _caffemodel(tmp_path / "m.caffemodel", value, double)
    result = cli("import", tmp_path / "m.prototxt", "-o", tmp_path / "m.nin", "--weights", tmp_path / "m.caffemodel",
                 "--weights-out", tmp_path / "w.safetensors")
    assert result.code == 1, result.err
    assert "m.prototxt:4:9: error" in result.err and "NaN or infinite" in result.err and "m.caffemodel" in result.err
    assert "RuntimeWarning" not in result.err
    _no_traceback(result)
    assert not (tmp_path / "m.nin").exists() and not (tmp_path / "w.safetensors").exists()


# --- digits of other scripts ---------------------------------------------------------------

FOREIGN_DIGITS = [("\u09ea", "U+09EA"), ("\u0664", "U+0664"), ("\uff14", "U+FF14")]  # Bengali, Arabic-Indic, fullwidth 4


@pytest.mark.parametrize(("digit", "code"), FOREIGN_DIGITS, ids=["bengali", "arabic-indic", "fullwidth"])
def test_a_digit_of_another_script_is_refused_with_its_code_point(cli, tmp_path, digit, code):
    spec = _spec(tmp_path, TINY.replace("classes = 4", f"classes = {digit}"))
    before = spec.read_bytes()
    for command in ("check", "summary", "fmt"):
        result = cli(command, spec)
        assert result.code == 1, (command, result.err)
        assert "s.nin:1:24: error[E0001]" in result.err and code in result.err, result.err
        _no_traceback(result)
    assert cli("fmt", "--stdout", spec).code == 1
    assert spec.read_bytes() == before
    spec = _spec(tmp_path, TINY.replace("kernel = 3", f"kernel = 1{digit}"))  # after an ASCII digit, too
    result = cli("check", spec)
    assert result.code == 1 and "s.nin:3:40" in result.err and code in result.err, result.err
    result = cli("check", _spec(tmp_path), "--set", f"classes={digit}")
    assert result.code == 1 and code in result.err, result.err


def test_digits_of_other_scripts_in_comments_and_strings_are_text(cli, tmp_path):
    text = "# \u09ea layers, \u0664 stages\n" + TINY.replace("network tiny", "# \uff14\nnetwork tiny")
    assert cli("check", _spec(tmp_path, text)).code == 0


# --- labels every backend can build --------------------------------------------------------

TWIN_NAMES = ["forward", "training", "parameters", "to", "state_dict", "_modules", "__init__", "class", "None"]


@pytest.mark.parametrize("label", TWIN_NAMES)
def test_check_refuses_a_label_the_pytorch_twin_cannot_hold(cli, tmp_path, label):
    spec = _spec(tmp_path, TINY.replace("    mlpconv(", f"    {label}: mlpconv("))
    for argv in (("check", spec), ("compile", spec, "--target", "torch", "-o", tmp_path / "t.py"),
                 ("compile", spec, "-o", tmp_path / "t.onnx"), ("run", spec, "-i", _x(tmp_path), "--backend", "torch")):
        result = cli(*argv)
        assert result.code == 1, (argv, result.err)
        assert "s.nin:3:5: error[E0107]" in result.err and f"`{label}`" in result.err, result.err
        _no_traceback(result)
    assert not (tmp_path / "t.py").exists() and not (tmp_path / "t.onnx").exists()


def test_a_block_layer_labelled_like_a_module_attribute_is_refused_where_it_is_written(cli, tmp_path):
    text = "block b() {\n    to: relu()\n}\n" + TINY.replace("    global_avgpool()", "    b()\n    global_avgpool()")
    result = cli("check", _spec(tmp_path, text))
    assert result.code == 1 and "s.nin:2:5: error[E0107]" in result.err, result.err


def test_every_name_of_the_installed_torch_module_is_refused_by_check():
    """check cannot import torch: its list must hold what this torch's nn.Module has."""
    torch = pytest.importorskip("torch")
    from nindsl.language.elaborate import twin_cannot_hold

    names = set(dir(torch.nn.Module)) | set(vars(torch.nn.Module()))
    assert not {n for n in names if not twin_cannot_hold(n)}


# --- names: order, unused, defined twice ---------------------------------------------------


def test_a_let_using_a_name_defined_below_says_so_where_it_is_used(cli, tmp_path):
    text = "let a = b\nlet b = 3\n" + TINY.replace("kernel = 3", "kernel = a")
    result = cli("check", _spec(tmp_path, text))
    assert result.code == 1
    assert "s.nin:1:9: error[E0106]" in result.err and "defined below" in result.err, result.err
    assert "s.nin:2:5" in result.err  # the note: where it is defined
    assert "did you mean `b`" not in result.err
    assert result.err.count("error[") == 1, result.err  # not again at the use of `a`


def test_a_let_using_a_name_an_import_below_defines_says_so(cli, tmp_path):
    (tmp_path / "lib.nin").write_text("let b = 3\n")
    text = 'let a = b + 1\nimport "lib.nin"\n' + TINY.replace("kernel = 3", "kernel = a")
    result = cli("check", _spec(tmp_path, text))
    assert result.code == 1 and "s.nin:1:9: error[E0106]" in result.err and "defined below" in result.err, result.err


@pytest.mark.parametrize("value", ["nope", "[1, nope]", "nope + 1", "normal(std = nope)"])
def test_an_unused_let_holding_an_unknown_name_is_reported(cli, tmp_path, value):
    result = cli("check", _spec(tmp_path, f"let unused = {value}\n" + TINY))
    assert result.code == 1 and "E0106" in result.err and "unknown name `nope`" in result.err, result.err
    column = 14 + value.index("nope")
    assert f"s.nin:1:{column}: error" in result.err, result.err


@pytest.mark.parametrize("value", ["ceil", "relu", "xavier", "digits", "N", "[floor, ceil]"])
def test_an_unused_let_holding_a_word_the_language_knows_is_accepted(cli, tmp_path, value):
    result = cli("check", _spec(tmp_path, f"let unused = {value}\n" + TINY))
    assert result.code == 0, result.err


@pytest.mark.parametrize("kind", ["let k = {}", "block k() {{ conv({}, 1) }}"])
def test_two_imports_defining_one_name_are_reported(cli, tmp_path, kind):
    (tmp_path / "one.nin").write_text(kind.format(3) + "\n")
    (tmp_path / "two.nin").write_text(kind.format(5) + "\n")
    text = 'import "one.nin"\nimport "two.nin"\n' + TINY
    result = cli("check", _spec(tmp_path, text))
    assert result.code == 1 and "s.nin:2:1: error[E0108]" in result.err and "`k`" in result.err, result.err
    assert "one.nin:1:" in result.err and "two.nin:1:" in result.err  # where each defines it


def test_one_file_reached_through_two_imports_is_no_clash(cli, tmp_path):
    (tmp_path / "base.nin").write_text("let k = 3\nblock b() { relu() }\n")
    (tmp_path / "one.nin").write_text('import "base.nin"\n')
    (tmp_path / "two.nin").write_text('import "base.nin"\n')
    text = 'import "one.nin"\nimport "two.nin"\n' + TINY.replace("kernel = 3", "kernel = k")
    result = cli("check", _spec(tmp_path, text))
    assert result.code == 0, result.err


def test_a_let_redefining_an_imported_name_is_reported(cli, tmp_path):
    (tmp_path / "one.nin").write_text("let k = 3\n")
    result = cli("check", _spec(tmp_path, 'import "one.nin"\nlet k = 5\n' + TINY))
    assert result.code == 1 and "s.nin:2:5: error[E0108]" in result.err and "one.nin:1:5" in result.err, result.err


@pytest.mark.parametrize("command", ["check", "summary", "compile"])
def test_a_repeated_set_is_refused(cli, tmp_path, command):
    extra = ("-o", tmp_path / "o.onnx") if command == "compile" else ()
    result = cli(command, _spec(tmp_path), "--set", "classes=3", "--set", "classes = 5", *extra)
    assert result.code == 1 and "E0504" in result.err and "--set classes" in result.err, result.err
    assert "twice" in result.err
    assert not (tmp_path / "o.onnx").exists()


def test_did_you_mean_never_suggests_the_name_itself():
    from nindsl.kernel.diagnostics import did_you_mean

    assert did_you_mean("b", ["b", "c"]) is None
    assert did_you_mean("clases", ["classes", "clases"]) == "did you mean `classes`?"


# --- messages ------------------------------------------------------------------------------


def test_an_onnx_import_that_fails_check_names_the_model_not_a_string(cli, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((4, 1, 5, 5), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[5, 5], name="c1")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "small.onnx")
    result = cli("import", tmp_path / "small.onnx", "-o", tmp_path / "m.nin")
    assert result.code == 1 and "E0201" in result.err, result.err
    assert "<string>" not in result.err and "small.onnx" in result.err and "node `c1` (Conv)" in result.err
    assert not (tmp_path / "m.nin").exists()


def test_a_caffe_import_that_fails_check_is_located_in_the_prototxt(cli, tmp_path):
    text = _PROTOTXT.replace("kernel_size: 3", "kernel_size: 11")
    (tmp_path / "m.prototxt").write_text(text)
    result = cli("import", tmp_path / "m.prototxt", "-o", tmp_path / "m.nin")
    assert result.code == 1 and "E0201" in result.err, result.err
    assert "<string>" not in result.err and "m.prototxt:4:9: error[E0201]" in result.err, result.err


@pytest.mark.parametrize("ending", ["\r", "\r\n"], ids=["cr", "crlf"])
def test_a_prototxt_with_other_line_endings_reads_as_its_lines(cli, tmp_path, ending):
    text = "# a NiN, saved on an old Mac\n" + _PROTOTXT
    (tmp_path / "m.prototxt").write_bytes(text.replace("\n", ending).encode())
    result = cli("import", tmp_path / "m.prototxt", "-o", tmp_path / "m.nin")
    assert result.code == 0, result.err
    bad = text.replace("kernel_size: 3", "kernel_size: 11").replace("\n", ending)
    (tmp_path / "bad.prototxt").write_bytes(bad.encode())
    result = cli("import", tmp_path / "bad.prototxt", "-o", tmp_path / "bad.nin")
    assert result.code == 1 and "bad.prototxt:5:9: error" in result.err, result.err  # the lines as the user sees them


def _png(folder: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    return folder / "a.png"


def test_run_says_an_npy_array_is_given_alone_naming_it(cli, tmp_path):
    spec, x, png = _spec(tmp_path), _x(tmp_path), _png(tmp_path)
    for inputs in ((x, png), (png, x), (x, x)):
        result = cli("run", spec, "-i", *inputs)
        assert result.code == 1, result.err
        assert "`" + str(x) + "`" in result.err and "alone" in result.err, result.err
        assert "give .npy arrays or images" not in result.err


def _big_header_npy(path: Path) -> Path:
    """An .npy whose header is 20,000 bytes: numpy refuses it, advising allow_pickle=True."""
    header = ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 8), '" + "x" * 20_000 + "': 1}").encode()
    header += b" " * (63 - (12 + len(header)) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + b"\0" * 256)
    return path


def _object_npy(path: Path) -> Path:
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


def _npz(path: Path, member: Path, name: str = "mlpconv1.0.weight.npy") -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.write(member, name)
    return path


@pytest.mark.parametrize("make", [_big_header_npy, _object_npy], ids=["big-header", "object-array"])
def test_a_refused_npy_is_explained_in_nindsls_words(cli, tmp_path, make):
    spec = _spec(tmp_path)
    bad = make(tmp_path / "bad.npy")
    npz = _npz(tmp_path / "bad.npz", bad)
    data = _npz(tmp_path / "data.npz", bad, "images.npy")
    for argv in (("run", spec, "-i", bad), ("run", spec, "-i", _x(tmp_path), "--labels", bad),
                 ("compile", spec, "--weights", npz, "-o", tmp_path / "o.onnx"),
                 ("train", spec, "--data", data, "--epochs", "1", "--out", tmp_path / "runs")):
        result = cli(*argv)
        assert result.code == 1, (argv, result.err)
        assert "allow_pickle" not in result.err and "max_header_size" not in result.err, result.err
        assert ("header" in result.err) if make is _big_header_npy else ("never loads" in result.err), result.err
        _no_traceback(result)


@pytest.mark.parametrize(("host", "warns"), [("localhost", False), ("127.0.0.1", False), ("0.0.0.0", True)])
def test_rpc_warns_only_where_other_machines_can_connect(cli, tmp_path, monkeypatch, host, warns):
    pytest.importorskip("tornado")
    pytest.importorskip("tvm")
    from nindsl.tvm.tune import rpc

    started = []
    monkeypatch.setattr(rpc, "_supervise", lambda command: started.append(command) or 0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for argv in (("rpc", "tracker", "--host", host, "--port", port),
                 ("rpc", "server", "--host", host, "--tracker", f"127.0.0.1:{port}", "--key", "cpu")):
        result = cli(*argv)
        assert result.code == 0 and started, result.err
        said = result.out + result.err
        assert ("other machines" in said) == warns, said


# --- the language server -------------------------------------------------------------------


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class _Client:
    """A raw JSON-RPC client over the server's stdio (no library: its own checks would refuse
    to send what these tests send)."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "nindsl", "lsp"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer = b""

    def send(self, message: dict) -> None:
        self.process.stdin.write(_frame(message))
        self.process.stdin.flush()

    def answer(self, msg_id, timeout: float = 20.0) -> dict | None:
        """The response to request ``msg_id`` (notifications on the way are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\r\n\r\n" in self.buffer:
                head, rest = self.buffer.split(b"\r\n\r\n", 1)
                length = int(re.search(rb"Content-Length: (\d+)", head)[1])
                if len(rest) < length:
                    break
                message, self.buffer = json.loads(rest[:length]), rest[length:]
                if message.get("id") == msg_id and "method" not in message:
                    return message
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 1 << 16)
                if not chunk:
                    return None
                self.buffer += chunk
        return None

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def lsp_client():
    pytest.importorskip("pygls")
    client = _Client()
    yield client
    client.close()


HOVER = {"textDocument": {"uri": "file:///tmp/x.nin"}, "position": {"line": 0, "character": 0}}


def test_the_language_server_refuses_a_request_before_initialize(lsp_client):
    lsp_client.send({"jsonrpc": "2.0", "id": 1, "method": "textDocument/hover", "params": HOVER})
    answer = lsp_client.answer(1)
    assert answer is not None and answer.get("error", {}).get("code") == -32002, answer
    lsp_client.send({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"capabilities": {}}})
    assert "result" in (lsp_client.answer(2) or {})


def test_the_language_server_answers_a_request_with_ill_typed_params(lsp_client):
    lsp_client.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
    assert "result" in (lsp_client.answer(1) or {})
    lsp_client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    for msg_id, params in ((2, {"textDocument": 5, "position": "x"}), ("three", [1, 2]),
                           (4, {"textDocument": {"uri": "file:///tmp/x.nin"}, "position": {"line": -1}})):
        lsp_client.send({"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/hover", "params": params})
        answer = lsp_client.answer(msg_id)
        assert answer is not None and answer.get("error", {}).get("code") == -32602, (params, answer)
    lsp_client.send({"jsonrpc": "2.0", "id": 5, "method": "textDocument/hover", "params": HOVER})
    assert lsp_client.answer(5) == {"id": 5, "jsonrpc": "2.0", "result": None}  # and it still serves


# --- bundle, and bounded echoes ------------------------------------------------------------


def test_bundle_refuses_an_artifact_whose_library_fails_its_hash(cli, tmp_path):
    import hashlib

    art = tmp_path / "art"
    art.mkdir()
    files = {"model.so": b"\x7fELF not really", "weights.safetensors": b"{}", "model.onnx": b"onnx"}
    for name, data in files.items():
        (art / name).write_bytes(data)
    manifest = {"format": 1, "tvm_version": "0", "network": "tiny", "device": "cpu", "parameters": [],
                "input": {"name": "x", "shape": [1, 1, 8, 8]}, "output": {"name": "probs", "shape": [1, 4]},
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    (art / "manifest.json").write_text(json.dumps(manifest))
    (art / "model.so").write_bytes(b"\x7fELF changed after the build")
    result = cli("bundle", art, "-o", tmp_path / "b")
    assert result.code == 1, result.err
    assert "model.so" in result.err and "does not match" in result.err, result.err
    assert not (tmp_path / "b").exists()


def test_a_huge_network_name_is_refused_and_not_echoed_whole(cli, tmp_path):
    spec = _spec(tmp_path, TINY.replace("network tiny", "network " + "n" * 900_000))
    for argv in (("check", spec), ("summary", spec), ("compile", spec), ("fmt", "--check", spec)):
        result = cli(*argv, cwd=tmp_path)
        assert result.code == 1, (argv[0], result.err[:300])
        assert "s.nin:1:9: error[E0401]" in result.err, result.err[:300]
        assert len(result.out) + len(result.err) < 5_000, (argv[0], len(result.err))
        _no_traceback(result)
    assert not list(tmp_path.glob("n*"))


@pytest.mark.parametrize("argv", [("check", "{spec}", "--set", "{long}=3"), ("check", "{spec}", "--set", "classes={long}"),
                                  ("explain", "E{long}"), ("check", "{spec}", "--set", "classes=1+{long}")],
                         ids=["set-name", "set-value", "explain", "set-expression"])
def test_what_is_echoed_of_a_huge_argument_is_bounded(cli, tmp_path, argv):
    spec = _spec(tmp_path)
    result = cli(*(a.format(spec=spec, long="n" * 200_000) for a in argv))
    assert result.code == 1 and "error" in result.err
    assert len(result.out) + len(result.err) < 5_000, len(result.err)
