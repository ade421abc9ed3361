"""Nothing of the user's is lost: an output replaces only what that command writes, and a
file rewritten in place keeps its link and its permission bits (issue: "No surprises")."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import SPECS
from nindsl.kernel.diagnostics import NindslError
from nindsl.kernel.io import atomic_directory, atomic_write_text, starts_with

UNFORMATTED = "network t() {\n  input x: f32[N, 1, 8, 8]\n  conv(2, 3)\n}\n"


def test_a_folder_of_the_users_files_is_not_replaced_by_an_artifact(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(NindslError, match="does not replace what it did not write"):
        with atomic_directory(tmp_path / "mine", lambda p: (p / "manifest.json").is_file(), "an artifact"):
            pass
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no leftovers


def test_a_file_is_not_replaced_by_a_folder_nor_a_folder_by_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(NindslError):
        with atomic_directory(tmp_path / "notes.txt"):
            pass
    (tmp_path / "dir").mkdir()
    with pytest.raises(NindslError):
        atomic_write_text(tmp_path / "dir", "x")
    assert (tmp_path / "notes.txt").read_text() == "keep" and (tmp_path / "dir").is_dir()


def test_a_file_of_another_kind_is_refused(tmp_path):
    (tmp_path / "out.py").write_text("print('my own script')\n")
    with pytest.raises(NindslError, match="not a twin"):
        atomic_write_text(tmp_path / "out.py", '"""PyTorch twin of x"""\n', starts_with(b'"""PyTorch twin of'),
                          "a twin")
    assert (tmp_path / "out.py").read_text() == "print('my own script')\n"
    (tmp_path / "twin.py").write_text('"""PyTorch twin of an older spec"""\n')
    atomic_write_text(tmp_path / "twin.py", '"""PyTorch twin of x"""\n', starts_with(b'"""PyTorch twin of'), "a twin")
    assert "of x" in (tmp_path / "twin.py").read_text()


@pytest.mark.parametrize("target", ["onnx", "torch"])
def test_compile_refuses_to_overwrite_a_users_file(cli, tmp_path, target):
    victim = tmp_path / "important.txt"
    victim.write_text("not a model")
    result = cli("compile", SPECS / "nin_digits.nin", "-t", target, "-o", victim)
    assert result.code == 1 and "does not replace what it did not write" in result.err
    assert victim.read_text() == "not a model"
    assert cli("compile", SPECS / "nin_digits.nin", "-t", target, "-o", tmp_path / "m").code == 0
    assert cli("compile", SPECS / "nin_digits.nin", "-t", target, "-o", tmp_path / "m").code == 0  # its own: replaced


def test_compile_into_the_specs_own_folder_is_refused(cli, tmp_path):
    pytest.importorskip("tvm")
    project = tmp_path / "project"
    project.mkdir()
    spec = project / "net.nin"
    spec.write_text((SPECS / "nin_digits.nin").read_text())
    (project / "blocks.nin").write_text((SPECS / "blocks.nin").read_text())
    result = cli("compile", spec, "-t", "llvm", "-o", project)
    assert result.code == 1 and "not a nindsl artifact" in result.err
    assert spec.read_text() == (SPECS / "nin_digits.nin").read_text()


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
