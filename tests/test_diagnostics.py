"""Golden diagnostics: each broken spec in fixtures/diagnostics/ and exactly what
`nindsl check` prints for it. Set NINDSL_UPDATE_GOLDEN=1 to rewrite the .stderr
files, then read the diff: a golden file is a promise to users."""

from __future__ import annotations

import os
import re

import pytest

from conftest import FIXTURES

CASES = sorted((FIXTURES / "diagnostics").glob("*.nin"))
UPDATE = os.environ.get("NINDSL_UPDATE_GOLDEN") == "1"


def _project(spec, tmp_path):
    """Where to check ``spec`` from: in place, or for the symlink case a copy of it beside a
    link that leads out of the project (made here: a committed link would lead pytest out too)."""
    if spec.stem != "import_symlink":
        return spec.parent
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "x.nin").write_text("let x = 1\n")
    (project / spec.name).write_text(spec.read_text())
    (project / "link_outside").symlink_to(outside, target_is_directory=True)
    return project


@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_golden_diagnostics(cli, spec, tmp_path):
    result = cli("check", "--color", "never", spec.name, cwd=_project(spec, tmp_path))
    assert result.code == 1, "a user's mistake exits with status 1"
    assert "Traceback" not in result.err
    golden = spec.with_suffix(".stderr")
    if UPDATE:
        golden.write_text(result.err)
    assert result.err == golden.read_text()


@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_every_diagnostic_is_located(cli, spec):
    """Each error header names file:line:col and a known code, with a caret line below."""
    from nindsl.kernel.diagnostics import CODES

    result = cli("check", "--color", "never", spec.name, cwd=spec.parent)
    headers = re.findall(r"^(\S+):(\d+):(\d+): error\[(E\d{4})\]", result.err, flags=re.M)
    assert headers, result.err
    for _path, line, column, code in headers:
        assert int(line) >= 1 and int(column) >= 1
        assert code in CODES
    assert result.err.count("^") >= len(headers)


def test_every_code_in_the_table_is_documented():
    from nindsl.kernel.diagnostics import CODES

    assert all(re.fullmatch(r"E\d{4}", code) and text for code, text in CODES.items())


def test_caret_lines_up_under_tabs_and_crlf(cli):
    result = cli("check", "--color", "never", "crlf_tabs.nin", cwd=FIXTURES / "diagnostics")
    lines = result.err.splitlines()
    source = next(line for line in lines if "mlpconv([192]" in line)
    caret = lines[lines.index(source) + 1]
    assert caret.index("^") == source.index("c: mlpconv")
    assert "\r" not in result.err


def test_all_errors_of_a_file_are_reported(cli):
    result = cli("check", "names_and_arguments.nin", cwd=FIXTURES / "diagnostics")
    codes = re.findall(r"error\[(E\d+)\]", result.err)
    assert codes == ["E0101", "E0102", "E0107", "E0107", "E0106", "E0105", "E0103"]
    assert result.err.rstrip().endswith("7 errors")


def test_directory_and_device_are_refused(cli, tmp_path):
    result = cli("check", tmp_path)
    assert result.code == 1 and "is a folder, not a spec" in result.err
    result = cli("check", "/dev/null")
    assert result.code == 1 and "not a regular file" in result.err
    result = cli("check", tmp_path / "missing.nin")
    assert result.code == 1 and "no such file" in result.err


def test_internal_errors_are_not_user_errors(cli, monkeypatch, tmp_path):
    from dataclasses import replace

    from nindsl.language import layers

    broken = replace(layers.KINDS[layers.Relu], shape=lambda layer, shape: 1 / 0)
    monkeypatch.setitem(layers.KINDS, layers.Relu, broken)
    spec = "network t() {\n    input image: f32[N, 1, 8, 8]\n    relu()\n}\n"
    path = tmp_path / "internal.nin"
    path.write_text(spec)
    result = cli("check", path)
    assert result.code == 3
    assert "internal error" in result.err and "Traceback" not in result.err


WRITERS = {  # command → its arguments, writing under {out}
    "compile-onnx": ["compile", "{spec}", "--target", "onnx", "-o", "{out}/m.onnx"],
    "compile-torch": ["compile", "{spec}", "--target", "torch", "-o", "{out}/m.py"],
    "train": ["train", "{spec}", "--out", "{out}/run", "--epochs", "1", "--quiet"],
}  # (`fmt` formats any text that parses: test_fmt.py checks it leaves unparsable text alone)


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_no_command_writes_anything_for_a_broken_spec(cli, spec, command, tmp_path):
    """Every writing command refuses a broken spec the way `check` does, and writes nothing."""
    project = _project(spec, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    result = cli(*[a.format(spec=spec.name, out=out) for a in WRITERS[command]], "--color", "never", cwd=project)
    assert result.code == 1 and "Traceback" not in result.err
    assert re.search(r"^\S+:\d+:\d+: error\[E\d{4}\]", result.err, flags=re.M), result.err
    assert list(out.iterdir()) == []
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before
