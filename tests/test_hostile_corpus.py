"""A corpus of hostile inputs, each run through the real command line in a subprocess (issue 19).

The contract (../shared/RELIABILITY.md): a user's mistake or a damaged input gives a located
nindsl error and exit 1 (2 for a bad command line), never exit 3 ("internal error") and never
a traceback; no hang (every run has a timeout); and no file changes in the folder the command
runs in apart from the output it was asked to write, which must not appear on a refusal.
Each case expects exactly one exit status: 1 unless it says otherwise, and where it says 0 a
comment says why the input is one nindsl may accept.

Each case builds its inputs in a fresh folder and returns the command line; cases are grouped
by what they attack and parametrized, so a failure names the case.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import SMALL_SPEC_TRAINED_BRIEFLY, SPECS

pytestmark = pytest.mark.slow

TIMEOUT = 60
DIGITS = SPECS / "nin_digits.nin"

TINY = SMALL_SPEC_TRAINED_BRIEFLY


@dataclass
class Case:
    name: str
    build: Callable[[Path], list]  # makes the inputs in the folder, returns argv after `nindsl`
    outputs: tuple[str, ...] = ()  # paths the command may write (checked absent after a refusal)
    code: int = 1  # the exit status: 1 a refusal, 2 argparse's usage error, 0 accepted


# --- builders of hostile files -------------------------------------------------------------


def _write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _tiny(folder: Path) -> Path:
    return _write(folder, "tiny.nin", TINY)


def _x(folder: Path, shape=(1, 1, 8, 8), dtype=np.float32, name: str = "x.npy") -> Path:
    np.save(folder / name, np.zeros(shape, dtype))
    return folder / name


def _data(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", images=rng.random((16, 1, 8, 8), dtype=np.float32),
             labels=np.arange(16, dtype=np.int64) % 4)
    return folder / "data.npz"


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


def _onnx(folder: Path, kind: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    opset = [helper.make_opsetid("", 17)]
    if kind == "no_input":
        value = helper.make_tensor("c", f32, [1, 4], [0.1, 0.2, 0.3, 0.4])
        nodes = [helper.make_node("Constant", [], ["y"], value=value)]
        inputs = []
        outputs = [helper.make_tensor_value_info("y", f32, [1, 4])]
    elif kind == "int64_input":
        nodes = [helper.make_node("Identity", ["x"], ["y"])]
        inputs = [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 4])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 4])]
    elif kind == "two_inputs":
        nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
        inputs = [helper.make_tensor_value_info(n, f32, [1, 1, 8, 8]) for n in ("a", "b")]
        outputs = [helper.make_tensor_value_info("y", f32, [1, 1, 8, 8])]
    elif kind == "custom_domain":
        nodes = [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")]
        inputs = [helper.make_tensor_value_info("x", f32, [1, 1, 8, 8])]
        outputs = [helper.make_tensor_value_info("y", f32, [1, 1, 8, 8])]
        opset.append(helper.make_opsetid("com.example", 1))
    elif kind == "opset9":
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
        inputs = [helper.make_tensor_value_info("x", f32, [1, 1, 8, 8])]
        outputs = [helper.make_tensor_value_info("y", f32, [1, 1, 8, 8])]
        opset = [helper.make_opsetid("", 9)]
    else:
        raise AssertionError(kind)
    model = helper.make_model(helper.make_graph(nodes, "foreign", inputs, outputs), opset_imports=opset)
    model.ir_version = 7
    path = folder / f"{kind}.onnx"
    onnx.save(model, path)
    return path


def _png_bomb(folder: Path, side: int = 30000) -> Path:
    """A 1-bit greyscale PNG of side×side pixels: ~110 KB on disk, 900 M pixels decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return _write(folder, "bomb.png", png)


def _artifact(folder: Path, manifest: bytes | str) -> Path:
    art = folder / "art"
    art.mkdir()
    _write(art, "manifest.json", manifest)
    return art


def _run_folder(folder: Path, state: bytes) -> Path:
    run = folder / "run"
    run.mkdir()
    _write(run, "last.state.safetensors", state)
    return run


def _real_state(folder: Path) -> bytes:
    """The resume state of a real one-epoch run of the tiny spec (made once per session)."""
    cache = _real_state.__dict__
    if "bytes" not in cache:
        scratch = folder / "scratch"
        scratch.mkdir()
        spec, data = _tiny(scratch), _data(scratch)
        done = subprocess.run([sys.executable, "-m", "nindsl", "train", str(spec), "--data", str(data), "--epochs", "1",
                               "--out", str(scratch / "run"), "--quiet"], capture_output=True, text=True,
                              timeout=TIMEOUT, cwd=scratch)
        assert done.returncode == 0, done.stderr
        cache["bytes"] = (scratch / "run" / "last.state.safetensors").read_bytes()
        # leave nothing of it in the case's folder
        import shutil

        shutil.rmtree(scratch)
    return cache["bytes"]


def _state_with_metadata(metadata: dict) -> bytes:
    from safetensors.numpy import save

    return save({"w": np.zeros((2,), np.float32)}, metadata=metadata)


def _long_sum(terms: int = 50_000) -> str:
    return "+".join(["1"] * terms)


def _nested_parens(depth: int = 10_000) -> str:
    return "(" * depth + "1" + ")" * depth


def _fifo(folder: Path, name: str) -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def _symlink_loop(folder: Path) -> Path:
    os.symlink(folder / "b.nin", folder / "a.nin")
    os.symlink(folder / "a.nin", folder / "b.nin")
    return folder / "a.nin"


def _spec_importing(folder: Path, target: str) -> Path:
    return _write(folder, "main.nin", f'import "{target}"\n' + TINY)


# --- the corpus ----------------------------------------------------------------------------

ON_SPECS = ("check", "summary", "fmt", "compile", "draw", "train", "run", "bench")


def _on_spec(command: str, spec: Path, folder: Path) -> tuple[list, tuple[str, ...]]:
    """The command line that gives ``spec`` to ``command``, and the output it may write."""
    if command in ("check", "summary"):
        return [command, spec], ()
    if command == "fmt":
        return ["fmt", spec], ()
    if command == "compile":
        return ["compile", spec, "-o", folder / "out.onnx"], ("out.onnx",)
    if command == "draw":
        return ["draw", spec, "-o", folder / "out.png"], ("out.png",)
    if command == "train":
        return ["train", spec, "--epochs", "1", "--data", _data(folder), "--out", folder / "runs", "--quiet"], ("runs",)
    if command == "run":
        return ["run", spec, "-i", _x(folder), "-o", folder / "y.npy"], ("y.npy",)
    if command == "bench":
        return ["bench", spec, "--engines", "onnxruntime", "--rounds", "1", "--batch", "1", "--quiet",
                "--json", folder / "b.json"], ("b.json",)
    raise AssertionError(command)


def _spec_case(name: str, make: Callable[[Path], Path], command: str) -> Case:
    def build(folder: Path) -> list:
        argv, _ = _on_spec(command, make(folder), folder)
        return argv

    accepted = name in VALID_SPECS or command == "fmt" and name in FMT_ACCEPTS
    return Case(f"{name}-{command}", build, _on_spec_outputs(command), 0 if accepted else 1)


def _on_spec_outputs(command: str) -> tuple[str, ...]:
    return {"fmt": ("s.nin", "main.nin"), "compile": ("out.onnx",), "draw": ("out.png",), "train": ("runs",), "run": ("y.npy",),
            "bench": ("b.json",)}.get(command, ())


BAD_SPECS: dict[str, Callable[[Path], Path]] = {
    "long_let": lambda f: _write(f, "s.nin", f"let x = {_long_sum()}\n" + TINY),
    "nested_parens": lambda f: _write(f, "s.nin", f"let x = {_nested_parens()}\n" + TINY),
    "nul_byte": lambda f: _write(f, "s.nin", TINY.replace("tiny", "ti\0ny", 1)),
    "invalid_utf8": lambda f: _write(f, "s.nin", TINY.encode().replace(b"tiny", b"ti\xff\xfeny", 1)),
    "no_parens": lambda f: _write(f, "s.nin", TINY.replace("tiny(classes = 4)", "tiny")),
    "fifo": lambda f: _fifo(f, "s.nin"),
    "dev_zero": lambda f: Path("/dev/zero"),
    "directory": lambda f: (f / "dir.nin").mkdir() or f / "dir.nin",
    "empty": lambda f: _write(f, "s.nin", ""),
    "import_symlink_loop": lambda f: (_symlink_loop(f), _spec_importing(f, "a.nin"))[1],
    "import_long_name": lambda f: _spec_importing(f, "n" * 300 + ".nin"),
    "import_dev_zero": lambda f: _spec_importing(f, "/dev/zero"),
    "two_billion_params": lambda f: _write(f, "s.nin", TINY.replace(
        "mlpconv([8, 8, classes], kernel = 3, pad = 1)",
        "conv(50000, 3, pad = 1)\n    conv(5000, 3, pad = 1)\n    conv(classes, 1)")),
    "astronomical_input": lambda f: _write(f, "s.nin", TINY.replace(
        "f32[N, 1, 8, 8]", "f32[N, 1048576, 1048576, 1048576]")),
    "astronomical_conv_chain": lambda f: _write(f, "s.nin", TINY.replace(
        "f32[N, 1, 8, 8]", "f32[N, 1, 4096, 4096]").replace(
        "mlpconv([8, 8, classes], kernel = 3, pad = 1)",
        "conv(1048576, 1)\n    conv(1048576, 1)\n    conv(classes, 1)")),
}

# Deep parentheses leave no trace in the syntax tree, so they are no hazard: a spec may use them.
VALID_SPECS = {"nested_parens"}
# fmt prints the syntax tree of the file it is given: it resolves no name and reads no import,
# so these it formats (exit 0); what it cannot read or parse it refuses (exit 1) as check does.
FMT_ACCEPTS = {
    "no_parens",  # `network tiny {`: the parentheses are optional; the error is an unknown name (E0106)
    "empty",  # nothing to format: "1 file already formatted" (check refuses it, E0006)
    "import_symlink_loop",  # the importing file is well formed; the loop is in what it imports
    "import_long_name",
}
# What no backend can build: check refuses it (limits.MAX_PARAMETERS, MAX_ACTIVATION), so every
# command that elaborates the spec does.
LIMITS = {"two_billion_params", "astronomical_input", "astronomical_conv_chain"}
SPEC_COMMANDS = {name: ON_SPECS for name in BAD_SPECS}
SPEC_COMMANDS.update({name: ("check", "summary", "compile", "run") for name in LIMITS})
SPEC_COMMANDS.update({"dev_zero": ON_SPECS, "import_dev_zero": ("check", "compile")})


def _spec_cases():
    for name, make in BAD_SPECS.items():
        for command in SPEC_COMMANDS[name]:
            case = _spec_case(name, make, command)
            yield pytest.param(case, id=case.name)


def _c(name: str, build: Callable[[Path], list], outputs: tuple[str, ...] = (), code: int = 1) -> Case:
    return Case(name, build, outputs, code)


FOREIGN = ("no_input", "int64_input", "two_inputs", "custom_domain", "opset9")

OTHER: list[Case] = [
    # --set and command-line values
    _c("set_long_sum-check", lambda f: ["check", _tiny(f), "--set", f"classes={_long_sum()}"]),
    _c("set_long_sum-compile", lambda f: ["compile", _tiny(f), "--set", f"classes={_long_sum()}", "-o", f / "o.onnx"],
       ("o.onnx",)),
    _c("set_nested_parens-summary", lambda f: ["summary", _tiny(f), "--set", f"classes={_nested_parens()}"],
       code=0),  # as the nested_parens spec: deep parentheses are a valid expression (of 1 class)
    _c("set_unknown-check", lambda f: ["check", _tiny(f), "--set", "nope=3"]),
    _c("set_no_equals-check", lambda f: ["check", _tiny(f), "--set", "classes"]),
    _c("seed_negative-compile", lambda f: ["compile", _tiny(f), "--seed", "-1", "-o", f / "o.onnx"], ("o.onnx",),
       code=2),  # argparse's: "expected a whole number of 0 or more"
    _c("seed_negative-train", lambda f: ["train", _tiny(f), "--seed", "-1", "--data", _data(f), "--epochs", "1",
                                        "--out", f / "runs"], ("runs",), code=2),
    _c("seed_huge-run", lambda f: ["run", _tiny(f), "--seed", str(10**30), "-i", _x(f), "-o", f / "y.npy"],
       ("y.npy",), code=0),  # any whole number seeds numpy's generator: it runs (and says the weights are untrained)
    _c("batch_zero-compile", lambda f: ["compile", _tiny(f), "--target", "llvm", "--batch", "0", "-o", f / "a"],
       ("a",)),
    _c("batch_huge-compile", lambda f: ["compile", _tiny(f), "--target", "llvm", "--batch", str(10**12),
                                        "-o", f / "a"], ("a",)),
    _c("batch_garbage-compile", lambda f: ["compile", _tiny(f), "--target", "llvm", "--batch", "1,x",
                                           "-o", f / "a"], ("a",)),
    _c("batch_zero-bench", lambda f: ["bench", _tiny(f), "--batch", "0", "--json", f / "b.json"], ("b.json",)),
    _c("batch_huge-bench", lambda f: ["bench", _tiny(f), "--batch", str(10**12), "--json", f / "b.json"],
       ("b.json",)),
    _c("batch_negative-bench", lambda f: ["bench", _tiny(f), "--batch", "1,-4", "--json", f / "b.json"],
       ("b.json",)),
    _c("engines_unknown-bench", lambda f: ["bench", _tiny(f), "--engines", "tensorflow", "--json", f / "b.json"],
       ("b.json",)),
    _c("batch_zero-train", lambda f: ["train", _tiny(f), "--batch", "0", "--data", _data(f), "--out", f / "runs"],
       ("runs",), code=2),  # argparse's: "expected a positive int"
    _c("target_typo-compile", lambda f: ["compile", _tiny(f), "--target", "lvvm", "-o", f / "a"], ("a",)),
    _c("rpc_port_70000", lambda f: ["rpc", "server", "--port", "70000"]),
    _c("rpc_port_negative", lambda f: ["rpc", "tracker", "--port", "-5"]),
    _c("rpc_tracker_port_99999", lambda f: ["rpc", "server", "--tracker", "localhost:99999"]),
    _c("rpc_tracker_no_port", lambda f: ["rpc", "server", "--tracker", "localhost"]),
    _c("compile_rpc_port_99999", lambda f: ["compile", _tiny(f), "--target", "llvm", "--tune", "--rpc",
                                            "localhost:99999", "-o", f / "a"], ("a",)),
    _c("explain_unknown", lambda f: ["explain", "E9999"]),
    _c("explain_garbage", lambda f: ["explain", "E" + "x" * 10_000]),
    # TVM builds (seconds each): only what gets past checking
    Case("nested_parens-llvm", lambda f: ["compile", BAD_SPECS["nested_parens"](f), "--target", "llvm", "--batch",
                                          "1", "-o", f / "a"], ("a",), code=0),
    _c("weights_nested_header-llvm", lambda f: ["compile", _tiny(f), "--target", "llvm", "--weights", _write(
        f, "w.safetensors", _safetensors(b"[" * 100_000)), "-o", f / "a"], ("a",)),
    # inspect on things that are not an .onnx
    _c("inspect_folder", lambda f: ["inspect", (f / "d").mkdir() or f / "d"]),
    _c("inspect_spec", lambda f: ["inspect", _tiny(f)]),
    _c("inspect_empty", lambda f: ["inspect", _write(f, "e.onnx", b"")]),
    _c("inspect_empty_no_suffix", lambda f: ["inspect", _write(f, "e", b"")]),
    _c("inspect_dev_zero", lambda f: ["inspect", "/dev/zero"]),
    _c("inspect_garbage_onnx", lambda f: ["inspect", _write(f, "g.onnx", b"\xff" * 1000)]),
    # damaged artifact manifests
    _c("manifest_not_json-run", lambda f: ["run", _artifact(f, "{not json"), "-i", _x(f), "-o", f / "y.npy"],
       ("y.npy",)),
    _c("manifest_not_json-inspect", lambda f: ["inspect", _artifact(f, "{not json")]),
    _c("manifest_list-run", lambda f: ["run", _artifact(f, "[1, 2]"), "-i", _x(f)]),
    _c("manifest_list-inspect", lambda f: ["inspect", _artifact(f, "[1, 2]")]),
    _c("manifest_missing_keys-run", lambda f: ["run", _artifact(f, '{"format": 1}'), "-i", _x(f)]),
    _c("manifest_missing_keys-inspect", lambda f: ["inspect", _artifact(f, '{"format": 1}')]),
    _c("manifest_wrong_types-inspect", lambda f: ["inspect", _artifact(f, json.dumps(
        {"format": 1, "files": [], "input": "x", "parameters": 3, "network": 5}))]),
    _c("manifest_nested-inspect", lambda f: ["inspect", _artifact(f, "[" * 100_000)]),
    _c("manifest_invalid_utf8-run", lambda f: ["run", _artifact(f, b'{"format": "\xff\xfe"}'), "-i", _x(f)]),
    _c("manifest_missing-bundle", lambda f: ["bundle", (f / "art").mkdir() or f / "art", "-o", f / "b"], ("b",)),
    # damaged resume state
    _c("resume_truncated", lambda f: ["train", _tiny(f), "--resume", "--data", _data(f), "--epochs", "2", "--out",
                                      _run_folder(f, _real_state(f)[:-100]), "--quiet"]),
    _c("resume_truncated_header", lambda f: ["train", _tiny(f), "--resume", "--data", _data(f), "--epochs", "2",
                                             "--out", _run_folder(f, _real_state(f)[:20]), "--quiet"]),
    _c("resume_bad_metadata", lambda f: ["train", _tiny(f), "--resume", "--data", _data(f), "--epochs", "2", "--out",
                                         _run_folder(f, _state_with_metadata({"epoch": "many", "nindsl": "[["})),
                                         "--quiet"]),
    _c("resume_no_metadata", lambda f: ["train", _tiny(f), "--resume", "--data", _data(f), "--epochs", "2", "--out",
                                        _run_folder(f, _state_with_metadata({})), "--quiet"]),
    _c("resume_nested_header", lambda f: ["train", _tiny(f), "--resume", "--data", _data(f), "--epochs", "2",
                                          "--out", _run_folder(f, _safetensors(b"[" * 100_000)), "--quiet"]),
    _c("resume_state_is_folder", lambda f: ["train", _tiny(f), "--resume", "--data", _data(f), "--out",
                                            (f / "run" / "last.state.safetensors").mkdir(parents=True) or f / "run",
                                            "--quiet"]),
    # lying or damaged weights
    _c("weights_nested_header-compile", lambda f: ["compile", _tiny(f), "--weights", _write(
        f, "w.safetensors", _safetensors(b"[" * 100_000)), "-o", f / "o.onnx"], ("o.onnx",)),
    _c("weights_nested_object-run", lambda f: ["run", _tiny(f), "--weights", _write(
        f, "w.safetensors", _safetensors(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)), "-i", _x(f)]),
    _c("weights_header_too_long-compile", lambda f: ["compile", _tiny(f), "--weights", _write(
        f, "w.safetensors", struct.pack("<Q", 2**63) + b"{}"), "-o", f / "o.onnx"], ("o.onnx",)),
    _c("weights_npz_member_not_npy-compile", lambda f: ["compile", _tiny(f), "--weights", _npz_not_npy(f),
                                                        "-o", f / "o.onnx"], ("o.onnx",)),
    _c("weights_npz_member_not_npy-run", lambda f: ["run", _tiny(f), "--weights", _npz_not_npy(f), "-i", _x(f)]),
    _c("weights_npz_pickle-compile", lambda f: ["compile", _tiny(f), "--weights", _npz_pickle(f),
                                                "-o", f / "o.onnx"], ("o.onnx",)),
    _c("data_npz_member_not_npy-train", lambda f: ["train", _tiny(f), "--data", _npz_not_npy(f, "images.npy"),
                                                   "--epochs", "1", "--out", f / "runs"], ("runs",)),
    # images
    _c("png_bomb-run", lambda f: ["run", _tiny(f), "-i", _png_bomb(f), "-o", f / "y.npy"], ("y.npy",)),
    _c("png_truncated-run", lambda f: ["run", _tiny(f), "-i", _write(f, "t.png", _png_bomb(f, 64).read_bytes()[:60]),
                                       "-o", f / "y.npy"], ("y.npy",)),  # (all but its IEND chunk)
    _c("png_truncated_data-run", lambda f: ["run", _tiny(f), "-i", _write(f, "t.png",
                                                                          _png_bomb(f, 64).read_bytes()[:45]),
                                            "-o", f / "y.npy"], ("y.npy",)),
    _c("input_int64-run", lambda f: ["run", _tiny(f), "-i", _x(f, dtype=np.int64), "-o", f / "y.npy"], ("y.npy",)),
    _c("input_wrong_shape-run", lambda f: ["run", _tiny(f), "-i", _x(f, shape=(2, 3)), "-o", f / "y.npy"], ("y.npy",)),
    _c("input_empty_batch-run", lambda f: ["run", _tiny(f), "-i", _x(f, shape=(0, 1, 8, 8)), "-o", f / "y.npy"],
       ("y.npy",), code=0),  # a batch of none is well formed: it writes outputs [0, 4]
    # import of hostile things
    _c("import_empty_onnx", lambda f: ["import", _write(f, "e.onnx", b""), "-o", f / "o.nin"], ("o.nin",)),
    _c("import_folder", lambda f: ["import", (f / "m.onnx").mkdir() or f / "m.onnx", "-o", f / "o.nin"],
       ("o.nin",)),
    _c("import_dev_zero", lambda f: ["import", "/dev/zero", "-o", f / "o.nin"], ("o.nin",)),
    _c("import_fifo", lambda f: ["import", _fifo(f, "m.onnx"), "-o", f / "o.nin"], ("o.nin",)),
    _c("import_prototxt_nested", lambda f: ["import", _write(f, "m.prototxt", "layer {" * 50_000),
                                            "-o", f / "o.nin"], ("o.nin",)),
    _c("import_output_is_folder", lambda f: ["import", _onnx(f, "opset9"), "-o", (f / "o.nin").mkdir() or f / "o.nin"]),
    # plot
    _c("plot_nested_metrics", lambda f: ["plot", _write(f, "metrics.json", "[" * 100_000), "-o", f / "c.png"],
       ("c.png",)),
]


def _npz_not_npy(folder: Path, member: str = "conv.weight") -> Path:
    path = folder / "w.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, b"this is not an npy file")
    return path


def _npz_pickle(folder: Path) -> Path:
    path = folder / "p.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("conv.weight.npy", buffer.getvalue())
    return path


for kind in FOREIGN:
    OTHER += [
        _c(f"foreign_{kind}-run", lambda f, k=kind: ["run", _onnx(f, k), "-i", _x(f), "-o", f / "y.npy"],
           ("y.npy",)),
        _c(f"foreign_{kind}-import", lambda f, k=kind: ["import", _onnx(f, k), "-o", f / "o.nin",
                                                         "--weights-out", f / "w.safetensors"],
           ("o.nin", "w.safetensors")),
    ]

# Foreign ONNX files that nindsl can describe or run answer with exit 0: a Relu over an image
# runs (opset 9 included), and `inspect` describes any model, saying "not built by nindsl".
for case in OTHER:
    if case.name == "foreign_opset9-run":
        case.code = 0
OTHER += [Case(f"foreign_{kind}-inspect", lambda f, k=kind: ["inspect", _onnx(f, k)], code=0)
          for kind in FOREIGN]


# --- the harness ---------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    seen = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            seen[str(path.relative_to(folder))] = (info.st_size if not path.is_dir() else 0, info.st_mtime_ns)
    return seen


def _check(case: Case, folder: Path) -> None:
    argv = [str(a) for a in case.build(folder)]
    before = _snapshot(folder)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", NO_COLOR="1")
    try:
        done = subprocess.run([sys.executable, "-m", "nindsl", *argv], cwd=folder, capture_output=True,
                              timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case.name}: no answer within {TIMEOUT} s (a hang)")
    err = done.stderr.decode(errors="replace")
    shown = f"{case.name}: exit {done.returncode}\n{err[-3000:]}"
    assert done.returncode == case.code, shown
    assert "Traceback" not in err and "internal error" not in err, shown
    if done.returncode != 0:
        assert "error" in err, shown  # a refusal says why
    after = _snapshot(folder)
    allowed = case.outputs if done.returncode == 0 else ()
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    changed = {name for name in changed if not any(name == o or name.startswith(o + os.sep) for o in allowed)}
    # `import` of a model nindsl cannot express refuses, writing neither spec nor weights
    assert not changed, f"{shown}\nfiles changed: {sorted(changed)[:10]}"


@pytest.mark.parametrize("case", list(_spec_cases()))
def test_a_hostile_spec_is_refused_cleanly(case, tmp_path):
    _check(case, tmp_path)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in OTHER])
def test_a_hostile_input_is_refused_cleanly(case, tmp_path):
    _check(case, tmp_path)
