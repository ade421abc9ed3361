"""Nothing of the user's is lost (issue 34, "Data loss"; README, "Trust").

The rule, for every option that writes: an output replaces only a file of the kind that
option writes (a spec, a twin, bench records or a folder only when nindsl wrote it), never
one of the command's inputs, never another output of the same command; all of it checked
before any work; outputs locked while a command writes them, and written all or none.
Each test names the victim, runs the real command line, and checks the victim's bytes.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SPECS, TINY_SPEC
from nindsl.kernel.diagnostics import NindslError
from nindsl.kernel.io import ANY_FILE, Kind, atomic_directory, atomic_write_text, starts_with
from nindsl.kernel.outputs import NPY, Output, claim

UNFORMATTED = "network t() {\n  input x: f32[N, 1, 8, 8]\n  conv(2, 3)\n}\n"
PRECIOUS = "years of work\n"
REFUSED = "nindsl replaces only what it wrote"


@pytest.fixture
def project(tmp_path, cli):
    """A folder with a spec, an input batch, an ONNX model of the spec and the user's notes."""
    (tmp_path / "tiny.nin").write_text(TINY_SPEC)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 3, 12, 12), np.float32))
    assert cli("compile", tmp_path / "tiny.nin", "-o", tmp_path / "model.onnx").code == 0
    (tmp_path / "notes.txt").write_text(PRECIOUS)
    return tmp_path


def _snapshot(folder):
    """Every file under ``folder`` with its bytes (what a refused command must leave as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(result, *words):
    assert result.code == 1, result.err
    assert "error[E0505]" in result.err and "Traceback" not in result.err
    for word in words:
        assert word in result.err


# --- an output replaces only its own kind of file ------------------------------------------------

# (command line with OUT where the output goes, what the option writes). Each writes no file but OUT.
KIND_CASES = {
    "run -o": ("run tiny.nin -i x.npy -o OUT", "a NumPy .npy array"),
    "compile -o (onnx)": ("compile tiny.nin -o OUT", "an ONNX model"),
    "compile -o (torch)": ("compile tiny.nin -t torch -o OUT", "a twin nindsl generated"),
    "import -o": ("import model.onnx -o OUT", "a spec nindsl imported"),
    "draw -o": ("draw tiny.nin -o OUT", "a picture"),
    "bench --json": ("bench tiny.nin --engines onnxruntime --batch 1 --rounds 1 --json OUT", "bench records"),
    "bench --plot": ("bench tiny.nin --engines onnxruntime --batch 1 --rounds 1 --plot OUT", "a PNG image"),
}
SUFFIX = {"draw -o": ".svg", "compile -o (torch)": ".py", "import -o": ".nin"}


@pytest.mark.parametrize("case", KIND_CASES)
def test_an_output_never_replaces_a_file_of_another_kind(cli, project, case):
    command, what = KIND_CASES[case]
    if "draw" in command or "--plot" in command:
        pytest.importorskip("matplotlib")
    victim = project / f"mine{SUFFIX.get(case, '.out')}"
    victim.write_text(PRECIOUS)
    before = _snapshot(project)
    _refused(cli(*command.replace("OUT", str(victim)).split(), cwd=project), what, f"`{victim}`")
    assert _snapshot(project) == before
    # and over its own earlier output, the same command succeeds (the rule is not "never replace")
    own = project / f"own{SUFFIX.get(case, '.out')}"
    assert cli(*command.replace("OUT", str(own)).split(), cwd=project).code == 0
    first = own.stat().st_mtime_ns
    assert cli(*command.replace("OUT", str(own)).split(), cwd=project).code == 0
    assert own.stat().st_mtime_ns >= first


def test_a_hand_written_spec_is_not_replaced_by_an_import(cli, project):
    """Specs are sources: import replaces one only when it wrote it (its `# Imported from` header)."""
    before = (project / "tiny.nin").read_bytes()
    _refused(cli("import", project / "model.onnx", "-o", project / "tiny.nin"), "a .nin spec")
    assert (project / "tiny.nin").read_bytes() == before


def test_plot_refuses_to_replace_a_file_that_is_not_a_png(cli, tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"network": "t", "history": [{"epoch": 1, "loss": 1.0, "acc": 0.5, '
                                      '"val_loss": 1.0, "val_acc": 0.5, "lr": 0.1}]}\n')
    (run / "curves.png").write_text(PRECIOUS)  # the default output, but not a picture
    _refused(cli("plot", run), "a PNG image")
    assert (run / "curves.png").read_text() == PRECIOUS
    assert cli("plot", run, "-o", run / "new.png").code == 0


# --- an output is never one of the command's inputs, nor another output ------------------------


INPUTS = "this command's input"
SAME = "both name"


@pytest.mark.parametrize("command, says", [
    ("run tiny.nin -i x.npy -o tiny.nin", INPUTS),
    ("run tiny.nin -i x.npy -o x.npy", INPUTS),  # the same kind (an .npy): only the input rule stops it
    ("run model.onnx -i x.npy -o ./x.npy", INPUTS),
    ("compile tiny.nin -o tiny.nin", INPUTS),
    ("import model.onnx -o new.nin --weights-out model.onnx", INPUTS),
    ("bench tiny.nin --engines onnxruntime --batch 1 --json tiny.nin", INPUTS),
    # two outputs of one command are different files
    ("import model.onnx -o same --weights-out same", SAME),
    ("import model.onnx -o same --weights-out ./same", SAME),
    ("bench tiny.nin --engines onnxruntime --batch 1 --json same --plot same", SAME),
])
def test_an_output_is_never_an_input_nor_another_output(cli, project, command, says):
    before = _snapshot(project)
    _refused(cli(*command.split(), cwd=project), says)
    assert _snapshot(project) == before


def test_an_input_reached_through_a_link_is_still_an_input(cli, project):
    (project / "alias.npy").symlink_to(project / "x.npy")
    before = (project / "x.npy").read_bytes()
    _refused(cli("run", "tiny.nin", "-i", "x.npy", "-o", "alias.npy", cwd=project), INPUTS)
    assert (project / "x.npy").read_bytes() == before


# --- folders: only what nindsl wrote (its manifest lists it) -----------------------------------


def test_compile_keeps_the_users_files_in_an_artifact_folder(cli, project):
    pytest.importorskip("tvm")
    art = project / "art"
    assert cli("compile", project / "tiny.nin", "-t", "llvm", "-o", art).code == 0
    (art / "NOTES.md").write_text(PRECIOUS)
    (art / "results").mkdir()
    (art / "results" / "table.csv").write_text(PRECIOUS)
    before = _snapshot(art)
    _refused(cli("compile", project / "tiny.nin", "-t", "llvm", "-o", art), "`NOTES.md`", "`results/table.csv`")
    assert _snapshot(art) == before
    shutil.rmtree(art / "results")
    (art / "NOTES.md").unlink()
    assert cli("compile", project / "tiny.nin", "-t", "llvm", "-o", art).code == 0  # its own folder: replaced


def test_compile_into_the_specs_own_folder_is_refused(cli, tmp_path):
    pytest.importorskip("tvm")
    project = tmp_path / "project"
    project.mkdir()
    spec = project / "net.nin"
    spec.write_text((SPECS / "nin_digits.nin").read_text())
    (project / "blocks.nin").write_text((SPECS / "blocks.nin").read_text())
    result = cli("compile", spec, "-t", "llvm", "-o", project)
    _refused(result, "holds this command's input")
    assert spec.read_text() == (SPECS / "nin_digits.nin").read_text()


def test_bundle_never_replaces_its_own_input_nor_the_users_files(cli, project):
    pytest.importorskip("tvm")
    art = project / "art"
    assert cli("compile", project / "tiny.nin", "-t", "llvm", "-o", art).code == 0
    out = project / "bundle"
    assert cli("bundle", art, "-o", out).code == 0
    before = _snapshot(out)
    _refused(cli("bundle", out / "artifacts" / "art", "-o", out), "holds this command's input")  # into itself
    assert _snapshot(out) == before
    (out / "README.md").write_text(PRECIOUS)
    _refused(cli("bundle", art, "-o", out), "`README.md`")
    assert (out / "README.md").read_text() == PRECIOUS
    (out / "README.md").unlink()
    assert cli("bundle", art, "-o", out).code == 0  # its own earlier bundle: replaced


@pytest.mark.parametrize("theirs", ["metrics.csv", "best.safetensors", "curves.png"])
def test_train_keeps_the_users_files_of_a_runs_names(cli, project, theirs):
    out = project / "runs"
    out.mkdir()
    (out / theirs).write_text(PRECIOUS)
    _refused(cli("train", project / "tiny.nin", "--out", out, "--epochs", "1", "--data", "digits"),
             f"`{theirs}`")
    assert sorted(p.name for p in out.iterdir()) == [theirs] and (out / theirs).read_text() == PRECIOUS


def test_train_keeps_other_files_beside_its_own(cli, tmp_path):
    spec = tmp_path / "digits.nin"
    spec.write_text((SPECS / "nin_digits.nin").read_text())
    (tmp_path / "blocks.nin").write_text((SPECS / "blocks.nin").read_text())
    out = tmp_path / "runs"
    out.mkdir()
    (out / "README.md").write_text(PRECIOUS)
    result = cli("train", spec, "--out", out, "--epochs", "1")
    assert result.code == 0, result.err
    assert (out / "README.md").read_text() == PRECIOUS and (out / "best.safetensors").is_file()


# --- locks: one writer at a time ----------------------------------------------------------------


@pytest.mark.parametrize("command", [
    "train tiny.nin --out OUT --epochs 1 --data digits",
    "run tiny.nin -i x.npy -o OUT",
    "compile tiny.nin -o OUT",
])
def test_an_output_being_written_by_another_nindsl_is_refused(cli, project, command):
    out = project / "busy"
    with claim([Output("-o", out, Kind("anything", lambda p: True, folder="train" in command))]):
        lock = project / ".busy.lock"
        assert lock.read_text().strip() == str(os.getpid())
        _refused(cli(*command.replace("OUT", str(out)).split(), cwd=project), "being written by another nindsl",
                 f"process {os.getpid()}")
        assert not os.path.lexists(out)
    assert not lock.exists()  # released and gone


@pytest.mark.slow
def test_two_trainings_into_one_folder_at_once_one_is_refused(tmp_path):
    spec = tmp_path / "digits.nin"
    spec.write_text((SPECS / "nin_digits.nin").read_text())
    (tmp_path / "blocks.nin").write_text((SPECS / "blocks.nin").read_text())
    command = [sys.executable, "-m", "nindsl", "train", str(spec), "--out", str(tmp_path / "runs"), "--epochs", "3"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / ".runs.lock").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.wait(timeout=300) == 0
    assert second.returncode == 1 and "being written by another nindsl" in second.stderr


def test_a_lock_left_by_a_killed_writer_does_not_block(tmp_path):
    (tmp_path / ".out.npy.lock").write_text("999999999\n")  # its process is gone: flock is free
    with claim([Output("-o", tmp_path / "out.npy", NPY)]) as claimed:
        claimed.write("-o", b"\x93NUMPY fake")
    assert (tmp_path / "out.npy").read_bytes() == b"\x93NUMPY fake" and not (tmp_path / ".out.npy.lock").exists()


# --- all outputs or none --------------------------------------------------------------------


def test_a_failed_import_writes_neither_output(cli, project, monkeypatch):
    """The spec's place cannot be written (a file where its folder should be): no weights either."""
    (project / "blocked").write_text(PRECIOUS)
    before = _snapshot(project)
    result = cli("import", project / "model.onnx", "-o", project / "blocked" / "x.nin", "--weights-out",
                 project / "w.safetensors")
    assert result.code == 1 and "Traceback" not in result.err
    assert _snapshot(project) == before


def test_when_the_second_rename_fails_the_first_output_gets_its_old_file_back(cli, project, monkeypatch):
    assert cli("import", project / "model.onnx", "-o", project / "net.nin", "--weights-out",
               project / "w.safetensors").code == 0
    (project / "net.nin").write_text((project / "net.nin").read_text() + "# an older import\n")
    before = _snapshot(project)
    real_replace = os.replace

    def failing(source, target):
        if str(target).endswith("w.safetensors"):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing)
    result = cli("import", project / "model.onnx", "-o", project / "net.nin", "--weights-out", project / "w.safetensors")
    assert result.code == 1 and "No space left on device" in result.err
    assert _snapshot(project) == before  # net.nin back as it was, no temporary files left


def test_folders_made_for_an_output_go_again_when_the_command_fails(cli, project):
    result = cli("run", project / "tiny.nin", "-i", project / "notes.txt", "-o", project / "new" / "deep" / "y.npy")
    assert result.code == 1
    assert not (project / "new").exists()
    assert cli("run", project / "tiny.nin", "-i", project / "x.npy", "-o", project / "new" / "deep" / "y.npy").code == 0
    assert np.load(project / "new" / "deep" / "y.npy").shape == (2, 10)


# --- checks before work -----------------------------------------------------------------------


def _must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the outputs were checked")


@pytest.mark.parametrize("command, work", [
    ("compile tiny.nin -t llvm -o notes.txt", "nindsl.tvm.deploy.artifact.compile_artifact"),
    ("bench tiny.nin --engines onnxruntime --json notes.txt", "nindsl.bench.bench"),
    ("run tiny.nin -i x.npy -o notes.txt", "nindsl.engines.prepare"),
    ("import model.onnx -o notes.txt", "nindsl.importers.from_onnx.read_onnx"),
    ("train tiny.nin --out notes.txt --epochs 1", "nindsl.torch.training._train"),
])
def test_an_output_is_refused_before_the_work_starts(cli, project, monkeypatch, command, work):
    if "llvm" in command:
        pytest.importorskip("tvm")
    if "train" in command:
        pytest.importorskip("torch")
    module, _, name = work.rpartition(".")
    __import__(module)
    monkeypatch.setattr(sys.modules[module], name, _must_not_run)
    _refused(cli(*command.split(), cwd=project), "`notes.txt`")
    assert (project / "notes.txt").read_text() == PRECIOUS


# --- fmt rewrites a spec in place, never swaps in another file ----------------------------------


def test_fmt_keeps_a_link_a_link_and_writes_its_target(cli, tmp_path):
    real = tmp_path / "real.nin"
    real.write_text(UNFORMATTED)
    link = tmp_path / "link.nin"
    link.symlink_to(real)
    assert cli("fmt", link).code == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() != UNFORMATTED and cli("fmt", "--check", real).code == 0


def test_fmt_keeps_the_files_permission_bits(cli, tmp_path):
    spec = tmp_path / "private.nin"
    spec.write_text(UNFORMATTED)
    spec.chmod(0o600)
    assert cli("fmt", spec).code == 0
    assert stat.S_IMODE(spec.stat().st_mode) == 0o600 and spec.read_text() != UNFORMATTED


def test_fmt_keeps_hard_links_one_file(cli, tmp_path):
    spec = tmp_path / "a.nin"
    spec.write_text(UNFORMATTED)
    os.link(spec, tmp_path / "b.nin")
    assert cli("fmt", spec).code == 0
    assert os.path.samefile(spec, tmp_path / "b.nin") and spec.stat().st_nlink == 2
    assert (tmp_path / "b.nin").read_text() != UNFORMATTED


NOBODY = 65534


def _as_nobody(*argv, cwd):
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
                           "-m", "nindsl", *map(str, argv)], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to act as another user (setpriv)")
def test_fmt_refuses_a_read_only_spec_in_a_folder_anyone_may_write():
    """As an ordinary user in a world-writable folder, a root-owned read-only spec could be swapped
    for the user's own file by a rename: fmt refuses instead, and a spec the user may write keeps
    its owner."""
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:  # (pytest's folders are root's alone)
        _fmt_as_nobody(Path(shared))


def _fmt_as_nobody(folder: Path) -> None:
    folder.chmod(0o1777)
    theirs, writable = folder / "theirs.nin", folder / "writable.nin"
    theirs.write_text(UNFORMATTED)
    theirs.chmod(0o444)
    writable.write_text(UNFORMATTED)
    writable.chmod(0o666)
    result = _as_nobody("fmt", theirs, writable, cwd=folder)
    assert result.returncode == 1 and "read-only for you" in result.stderr and "Traceback" not in result.stderr
    assert theirs.read_text() == UNFORMATTED and theirs.stat().st_uid == 0
    assert writable.read_text() != UNFORMATTED and writable.stat().st_uid == 0  # written in place: still root's
    assert "1 file formatted, 1 with errors" in result.stderr


# --- the writers underneath ---------------------------------------------------------------------


def test_a_folder_of_the_users_files_is_not_replaced_by_an_atomic_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text(PRECIOUS)
    with pytest.raises(NindslError, match=REFUSED):
        with atomic_directory(tmp_path / "mine", Kind("an artifact", lambda p: (p / "manifest.json").is_file(),
                                                       folder=True)):
            pass
    assert (tmp_path / "mine" / "thesis.tex").read_text() == PRECIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no leftovers


def test_a_file_is_not_replaced_by_a_folder_nor_a_folder_by_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(NindslError, match="is a text file"):
        with atomic_directory(tmp_path / "notes.txt", Kind("a folder", lambda p: True, folder=True)):
            pass
    (tmp_path / "dir").mkdir()
    with pytest.raises(NindslError, match="is a folder"):
        atomic_write_text(tmp_path / "dir", "x", ANY_FILE)
    assert (tmp_path / "notes.txt").read_text() == "keep" and (tmp_path / "dir").is_dir()


def test_a_twin_replaces_only_a_twin(tmp_path):
    twin = Kind("a twin", starts_with(b'"""PyTorch twin of'))
    (tmp_path / "out.py").write_text("print('my own script')\n")
    with pytest.raises(NindslError, match="not a twin"):
        atomic_write_text(tmp_path / "out.py", '"""PyTorch twin of x"""\n', twin)
    assert (tmp_path / "out.py").read_text() == "print('my own script')\n"
    (tmp_path / "twin.py").write_text('"""PyTorch twin of an older spec"""\n')
    atomic_write_text(tmp_path / "twin.py", '"""PyTorch twin of x"""\n', twin)
    assert "of x" in (tmp_path / "twin.py").read_text()
