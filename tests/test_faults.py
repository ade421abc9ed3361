"""Fault injection: processes killed mid-write, full and read-only disks, concurrent writers.

RELIABILITY.md rule 4: every output is written to a temporary name and renamed into
place, so a killed run leaves the previous output intact; the next run removes what the
killed one left behind (its temporary names carry its process id) and, for training and
tuning, resumes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nindsl.kernel.io import atomic_write_bytes, remove_leftovers
from nindsl.weights import read_tensors

HERE = Path(__file__).resolve().parent
TINY = """
network tiny(classes = 10) {
    input image: f32[N, 1, 8, 8]
    conv1: mlpconv([6, 6], kernel = 3, pad = 1)
    maxpool(2, round = ceil)
    head: mlpconv([6, classes], kernel = 1)
    global_avgpool()
    softmax()
    output probs: f32[N, classes]
}
"""


def nindsl_process(*argv, cwd: Path, point: str | None = None, marker: Path | None = None,
                   stop_at: str = "") -> subprocess.Popen:
    """`nindsl ARGV` in a child process; with ``point``, frozen there (see interrupt.py)."""
    env = {**os.environ, "STOP_AT_NAME": stop_at}
    if point is None:
        command = [sys.executable, "-m", "nindsl", *map(str, argv)]
    else:
        command = [sys.executable, str(HERE / "interrupt.py"), point, str(marker), "--", *map(str, argv)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` is true; fail if it finishes first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the process ended before the fault point:\n{process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the fault point was never reached")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def tiny(tmp_path) -> Path:
    spec = tmp_path / "tiny.nin"
    spec.write_text(TINY)
    return spec


@pytest.mark.parametrize("point", ["write", "rename"])
def test_onnx_killed_mid_write_keeps_the_previous_file(tmp_path, tiny, cli, point):
    out = tmp_path / "tiny.onnx"
    assert cli("compile", tiny, "-o", out).code == 0
    before = out.read_bytes()
    marker = tmp_path / "frozen"
    child = nindsl_process("compile", tiny, "-o", out, "--seed", "7", cwd=tmp_path, point=point, marker=marker)
    kill_when(child, marker.exists)
    assert out.read_bytes() == before
    assert len(leftovers(tmp_path)) == 1  # the killed writer's temporary file

    assert cli("compile", tiny, "-o", out, "--seed", "7").code == 0
    assert out.read_bytes() != before and leftovers(tmp_path) == []
    import onnx

    onnx.checker.check_model(onnx.load(out), full_check=True)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["write", "rename"])
def test_checkpoint_killed_mid_write_keeps_the_last_one_and_training_resumes(tmp_path, tiny, point):
    pytest.importorskip("torch")
    from nindsl import load
    from nindsl.torch import training
    from nindsl.torch.training import TrainOptions

    whole = tmp_path / "whole"
    training.train(load(tiny), TrainOptions(epochs=3, out=whole))

    run, marker = tmp_path / "run", tmp_path / "frozen"
    # Frozen while writing epoch 2's `last.safetensors`: epoch 1's must survive.
    child = nindsl_process("train", tiny, "--out", run, "--epochs", "3", "--quiet", cwd=tmp_path,
                           point=f"{point}:2", marker=marker, stop_at="last.safetensors")
    kill_when(child, marker.exists)
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1]
    weights, _ = read_tensors(run / "last.safetensors")  # complete and readable
    assert len(leftovers(run)) == 1

    resumed = nindsl_process("train", tiny, "--out", run, "--resume", "--quiet", cwd=tmp_path)
    assert resumed.wait(300) == 0, resumed.communicate()[1]
    assert leftovers(run) == []
    a, _ = read_tensors(whole / "last.safetensors")
    b, _ = read_tensors(run / "last.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.tvm
@pytest.mark.parametrize("point,stop_at", [("write", "weights"), ("rename", "artifact")])
def test_artifact_killed_mid_build_keeps_the_previous_one(tmp_path, tiny, cli, point, stop_at):
    pytest.importorskip("tvm")
    art = tmp_path / "artifact"
    assert cli("compile", tiny, "--target", "llvm", "-o", art).code == 0
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    marker = tmp_path / "frozen"
    child = nindsl_process("compile", tiny, "--target", "llvm", "-o", art, "--seed", "3", cwd=tmp_path,
                           point=point, marker=marker, stop_at=stop_at)
    kill_when(child, marker.exists)
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert len(leftovers(tmp_path)) == 1  # the killed build's staging folder

    np.save(tmp_path / "x.npy", np.ones((1, 1, 8, 8), np.float32))
    assert cli("run", art, "-i", tmp_path / "x.npy").code == 0
    assert cli("compile", tiny, "--target", "llvm", "-o", art, "--seed", "3").code == 0
    assert leftovers(tmp_path) == []
    assert cli("run", art, "-i", tmp_path / "x.npy").code == 0


@pytest.mark.tvm
@pytest.mark.slow
def test_tuning_killed_mid_run_keeps_its_records_and_resumes(tmp_path, tiny):
    pytest.importorskip("tvm")
    db = tmp_path / "db"
    child = nindsl_process("compile", tiny, "--target", "llvm", "--tune", "--trials", "12", "--db", db,
                           "-o", tmp_path / "art", cwd=tmp_path)

    def records() -> list[str]:
        files = list(db.glob("*/*/database_tuning_record.json"))
        return files[0].read_text().splitlines() if files else []

    kill_when(child, lambda: len(records()) >= 1, timeout=600)
    kept = len(records())
    assert not (tmp_path / "art").exists()
    with open(next(db.glob("*/*/database_tuning_record.json")), "a") as handle:
        handle.write('[0, {"trace": [')  # what a kill in the middle of TVM's append leaves

    again = nindsl_process("compile", tiny, "--target", "llvm", "--tune", "--trials", "12", "--db", db,
                           "-o", tmp_path / "art", cwd=tmp_path)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err
    assert "dropped 1 torn or foreign line" in err
    assert len(records()) >= kept and all(json.loads(line) for line in records())
    assert (tmp_path / "art" / "manifest.json").exists()


@pytest.mark.slow
@pytest.mark.tvm
def test_eight_concurrent_compiles_into_one_place_leave_one_complete_output(tmp_path, tiny, cli):
    """Each compile either finishes or is refused because another is writing the same output
    (the output's lock, issue 34): never a mix of two writers' files, never a leftover."""
    pytest.importorskip("tvm")
    outputs = {"onnx": tmp_path / "tiny.onnx", "llvm": tmp_path / "artifact"}
    children = [nindsl_process("compile", tiny, "--target", target, "-o", out, "--seed", str(seed), cwd=tmp_path)
                for target, out in outputs.items() for seed in range(8)]
    finished = {target: 0 for target in outputs}
    for target, child in zip([target for target in outputs for _ in range(8)], children):
        _, err = child.communicate(timeout=600)
        if child.returncode == 0:
            finished[target] += 1
        else:
            assert child.returncode == 1 and "being written by another nindsl" in err, err
    assert all(finished.values()), finished
    assert leftovers(tmp_path) == [] and not list(tmp_path.glob(".*.lock"))
    import onnx

    onnx.checker.check_model(onnx.load(outputs["onnx"]), full_check=True)
    np.save(tmp_path / "x.npy", np.ones((1, 1, 8, 8), np.float32))
    assert cli("run", outputs["llvm"], "-i", tmp_path / "x.npy").code == 0  # checks every file's sha256
    # one writer's files, not a mix: the weights are the ones its ONNX model holds
    import onnx.numpy_helper

    from nindsl.onnx.model import read_model

    model = read_model(outputs["llvm"] / "model.onnx")
    weights, _ = read_tensors(outputs["llvm"] / "weights.safetensors")
    assert all(np.array_equal(weights[t.name], onnx.numpy_helper.to_array(t)) for t in model.graph.initializer)


def test_concurrent_writers_of_one_file_never_expose_a_partial_one(tmp_path):
    """Threads stand in for processes: many writers, one reader, every read is whole."""
    import threading

    path, payloads = tmp_path / "out.bin", [bytes([i]) * 200_000 for i in range(8)]
    stop, seen = threading.Event(), set()

    def read():
        while not stop.is_set():
            if path.exists():
                seen.add(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=lambda p=p: [atomic_write_bytes(path, p) for _ in range(20)])
               for p in payloads]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert seen and seen <= set(payloads) and path.read_bytes() in payloads
    assert leftovers(tmp_path) == []


def test_leftovers_of_live_writers_are_kept(tmp_path):
    target = tmp_path / "m.onnx"
    live = tmp_path / f".m.onnx.{os.getppid()}.abc.tmp"  # our parent: alive
    dead = tmp_path / ".m.onnx.999999999.abc.tmp"  # beyond any pid
    other = tmp_path / ".n.onnx.999999999.abc.tmp"  # another output's
    for path in (live, dead, other):
        path.write_bytes(b"x")
    assert remove_leftovers(target) == 1
    assert live.exists() and not dead.exists() and other.exists()


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full(*args, **kwargs):
    raise ENOSPC


def test_disk_full_while_formatting_leaves_the_spec(tmp_path, cli, monkeypatch):
    spec = tmp_path / "messy.nin"
    spec.write_text(TINY.replace("    conv1", "  conv1"))
    before = spec.read_bytes()
    monkeypatch.setattr(os, "fsync", _full)
    result = cli("fmt", spec)
    assert result.code == 1 and "No space left" in result.err and "messy.nin" in result.err
    assert spec.read_bytes() == before and leftovers(tmp_path) == []


def test_disk_full_while_training_keeps_the_previous_checkpoint(tmp_path, tiny, cli, monkeypatch):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    assert cli("train", tiny, "--out", out, "--epochs", "1", "--quiet").code == 0
    before = (out / "last.safetensors").read_bytes()
    monkeypatch.setattr(os, "fsync", _full)
    result = cli("train", tiny, "--out", out, "--resume", "--epochs", "2", "--quiet")
    assert result.code == 1 and "No space left" in result.err and "Traceback" not in result.err
    assert (out / "last.safetensors").read_bytes() == before and leftovers(out) == []


@pytest.mark.slow
@pytest.mark.tvm
def test_disk_full_while_writing_an_artifact_keeps_the_previous_one(tmp_path, tiny, cli, monkeypatch):
    pytest.importorskip("tvm")
    art = tmp_path / "artifact"
    assert cli("compile", tiny, "--target", "llvm", "-o", art).code == 0
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    monkeypatch.setattr(os, "fsync", _full)
    result = cli("compile", tiny, "--target", "llvm", "-o", art, "--seed", "2")
    assert result.code == 1 and "No space left" in result.err
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before and leftovers(tmp_path) == []


def _read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_read_only_training_folder_is_refused_cleanly(tmp_path, tiny, cli, monkeypatch):
    """Root ignores permission bits, so the refusal is injected where the OS would raise it."""
    monkeypatch.setattr(Path, "mkdir", _read_only)
    result = cli("train", tiny, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert result.code == 1 and "Read-only file system" in result.err and "run" in result.err
    assert "Traceback" not in result.err and not (tmp_path / "run").exists()


@pytest.mark.tvm
def test_read_only_artifact_folder_is_refused_cleanly(tmp_path, tiny, cli, monkeypatch):
    pytest.importorskip("tvm")
    import tempfile

    monkeypatch.setattr(tempfile, "mkdtemp", _read_only)
    result = cli("compile", tiny, "--target", "llvm", "-o", tmp_path / "artifact")
    assert result.code == 1 and "Read-only file system" in result.err and "artifact" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.nin"]
