"""Issue 34, "Unbounded work": an ONNX import numbers its layers in linear time, a zip bomb given
as weights or data is refused from what it declares before anything is decompressed, and
`nindsl draw` refuses a picture beyond its stated bounds before drawing (kernel/limits.py).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_SPEC

TINY = SMALL_SPEC


# Runs the command as its own child and reports the child's peak resident memory (in KiB) last
# on stderr: the peak of this one command, not of every child pytest has had.
_MEASURED = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)")


def nindsl(folder: Path, *argv) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run the command line; its result (stderr without the measurement), wall seconds and peak
    resident memory in bytes."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _MEASURED, sys.executable, "-m", "nindsl", *map(str, argv)],
                          cwd=folder, capture_output=True, timeout=300, env=dict(os.environ, NO_COLOR="1"),
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    err, _, peak = done.stderr.rstrip().rpartition(b"\n")
    done.stderr = err
    return done, seconds, int(peak) * 1024


# --- ONNX import: numbering layers is linear ------------------------------------------------------


def _chain(folder: Path, count: int) -> Path:
    """An ONNX model of ``count`` ReLUs in a chain, named as exporters name them (`/layers.7/Relu`,
    which is no nindsl label, so every layer takes a numbered `relu`)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", [f"t{i - 1}" if i else "x"], [f"t{i}" if i < count - 1 else "y"],
                              name=f"/layers.{i}/Relu") for i in range(count)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / f"chain{count}.onnx"
    onnx.save(model, path)
    return path


def test_numbering_imported_layers_looks_at_each_label_a_bounded_number_of_times(tmp_path, monkeypatch):
    """Every label tried is a membership test in the set of labels taken: counted, they grow
    linearly with the layers (they grew with their square: 184 s for 20,000 nodes)."""
    from nindsl.importers import from_onnx
    from nindsl.importers.spec import Labels

    class Counting(Labels):
        probes = 0

        def __contains__(self, item) -> bool:
            Counting.probes += 1
            return super().__contains__(item)

    monkeypatch.setattr(from_onnx, "Labels", Counting)
    imported = from_onnx.read_onnx(_chain(tmp_path, 5_000))
    assert imported.lines[0] == "relu1: relu()" and imported.lines[-1] == "relu5000: relu()"
    assert Counting.probes <= 3 * 5_000


def test_labels_number_on_from_where_they_got_to():
    from nindsl.importers.spec import Labels, label

    taken = Labels({"relu2", "x"})
    assert [label("", "relu", taken) for _ in range(3)] == ["relu1", "relu3", "relu4"]
    assert label("conv", "conv", taken) == "conv" and label("conv", "conv", taken) == "conv1"
    assert label("", "relu", {"relu1"}) == "relu2"  # (a plain set still works, without the shortcut)


@pytest.mark.slow
def test_importing_a_20000_node_chain_takes_seconds_not_minutes(tmp_path):
    model = _chain(tmp_path, 20_000)
    done, seconds, _ = nindsl(tmp_path, "import", model, "-o", tmp_path / "chain.nin")
    assert done.returncode == 0, done.stderr.decode()
    assert seconds < 60, f"{seconds:.0f} s (it was 184 s)"  # ~5 s here, with two checks of 20,000 layers
    assert "20000 layers" in done.stdout.decode() + done.stderr.decode()


# --- zip bombs as weights and data --------------------------------------------------------------


def _zip_of_zeros(path: Path, member: str, size: int, header: bytes = b"") -> Path:
    """An .npz whose one member decompresses to ``header`` and then ``size`` zero bytes, written
    without producing them: a deflate stream of one zero chunk repeated (each chunk flushed
    whole, so every copy is the same bytes). Its CRC is left 0: the check under test must refuse
    it from the sizes it declares, before reading a byte of the data."""
    chunk = 1 << 24
    assert size % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(b"\0" * chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = head + piece * (size // chunk) + compressor.flush()
    name = member.encode()
    total = len(header) + size
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(data), total, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, 0, len(data), total, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


def _npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


BOMB = 2_147_483_648  # 2 GiB of zeros: a ~2 MB file


@pytest.fixture
def bomb(tmp_path) -> Path:
    (tmp_path / "tiny.nin").write_text(TINY)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    return _zip_of_zeros(tmp_path / "bomb.npz", "mlpconv1.0.weight.npy", BOMB, _npy_header((BOMB // 4,)))


@pytest.mark.parametrize("command", ["compile", "run"])
def test_a_zip_bomb_as_weights_is_refused_before_it_is_decompressed(bomb, command):
    folder = bomb.parent
    assert bomb.stat().st_size < 3_000_000
    tail = ["-o", folder / "m.onnx"] if command == "compile" else ["-i", folder / "x.npy"]
    done, seconds, peak = nindsl(folder, command, folder / "tiny.nin", "--weights", bomb, *tail)
    err = done.stderr.decode()
    assert done.returncode == 1 and "error[E0401]" in err, err
    assert f"holds {BOMB + 128:,} bytes once decompressed" in err and "the most nindsl reads as these weights" in err
    assert peak < 1 << 30, f"{peak:,} bytes at its peak (it took 2.1 GB)"
    assert not (folder / "m.onnx").exists()


def test_a_zip_bomb_as_a_data_set_is_refused_before_it_is_decompressed(tmp_path, monkeypatch):
    """(The data set's bound is 8 GiB, the images it may hold as float32: the bomb here is
    measured against a smaller one, to stay quick.)"""
    from nindsl.torch import data
    from nindsl.kernel.diagnostics import NindslError

    bomb = _zip_of_zeros(tmp_path / "data.npz", "images.npy", 1 << 28, _npy_header((1 << 26,)))
    monkeypatch.setattr(data, "MAX_IMAGE_BYTES", 1 << 27)
    with pytest.raises(NindslError, match="once decompressed; the most nindsl reads as a data set"):
        data._npz(bomb)


@pytest.mark.parametrize("command", ["weights", "data"])
def test_an_npz_member_claiming_more_than_it_holds_is_refused_before_numpy_allocates_it(tmp_path, command):
    (tmp_path / "tiny.nin").write_text(TINY + "\ntrain {\n    epochs = 1\n}\n")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    member = "mlpconv1.0.weight.npy" if command == "weights" else "images.npy"
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as archive:  # 32 GB claimed in 192 bytes
        archive.writestr(member, _npy_header((10**9, 8)) + b"\0" * 64)
    argv = ["compile", tmp_path / "tiny.nin", "--weights", tmp_path / "liar.npz", "-o", tmp_path / "m.onnx"] \
        if command == "weights" else ["train", tmp_path / "tiny.nin", "--data", tmp_path / "liar.npz", "--out",
                                      tmp_path / "runs"]
    done, _, _ = nindsl(tmp_path, *argv)
    err = done.stderr.decode()
    assert done.returncode == 1 and "claims [1000000000, 8] float32 (32,000,000,000 bytes) but holds" in err, err
    assert "internal error" not in err and not (tmp_path / "runs").exists()


def test_weights_larger_than_the_spec_needs_are_refused_before_they_are_read(tmp_path):
    """A safetensors file is read whole: one far larger than the spec's parameters could need
    (16 bytes each) is refused from its size."""
    from safetensors.numpy import save_file

    (tmp_path / "tiny.nin").write_text(TINY)
    save_file({"mlpconv1.0.weight": np.zeros((8, 1, 3, 3), np.float32), "other": np.zeros(1 << 19, np.float32)},
              tmp_path / "w.safetensors")
    done, _, _ = nindsl(tmp_path, "compile", tmp_path / "tiny.nin", "--weights", tmp_path / "w.safetensors",
                        "-o", tmp_path / "m.onnx")
    err = done.stderr.decode()
    assert done.returncode == 1 and "bytes of tensors; the most nindsl reads as these weights is" in err, err


# --- draw: refused beyond its bounds, before drawing ----------------------------------------------


def _layers(count: int, layer: str = "relu()") -> str:
    return "network big() {\n    input x: f32[N, 1, 8, 8]\n" + f"    {layer}\n" * count + "}\n"


def test_draw_of_3000_layers_is_refused_in_about_the_time_check_takes(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "big.nin").write_text(_layers(3_000))
    done, seconds, _ = nindsl(tmp_path, "draw", tmp_path / "big.nin", "-o", tmp_path / "big.png")
    err = done.stderr.decode()
    assert done.returncode == 1 and "would be 3,000 boxes" in err and "draws at most 300" in err, err
    assert seconds < 30, f"{seconds:.0f} s (it took 88 s and 3.6 GB to draw)"
    assert not (tmp_path / "big.png").exists()


def test_draw_counts_an_mlpconvs_convolutions_each():
    import nindsl
    from nindsl.draw import check_drawable
    from nindsl.kernel.diagnostics import NindslError

    check_drawable(nindsl.check(_layers(300)))  # at the bound, at the default 200 dpi
    with pytest.raises(NindslError, match="would be 306 boxes"):
        check_drawable(nindsl.check(_layers(51, "mlpconv([4, 4, 4, 4, 4, 4], kernel = 3, pad = 1)")))


def test_check_drawable_is_linear_in_the_layers():
    """The refusal of a huge network costs no more than reading it (the block heights once
    searched every layer for the largest size, per layer)."""
    import nindsl
    from nindsl.draw import _blocks

    network = nindsl.check(_layers(20_000))
    start = time.monotonic()
    _blocks(network)
    assert time.monotonic() - start < 5
