"""Every diagnostic code is explained (nindsl/kernel/codes.py), in docs/errors.md and by
`nindsl explain CODE`, and every example really produces its code."""

from __future__ import annotations

import pickle
import re
import shlex

import numpy as np
import pytest

from conftest import ROOT

from nindsl import NindslError, load
from nindsl.kernel.codes import EXPLANATIONS, render_markdown, render_text
from nindsl.kernel.diagnostics import CODES

SPEC_EXAMPLES = [code for code in CODES if code < "E0500"]
CONSOLE_EXAMPLES = [code for code in CODES if code >= "E0500"]

# The spec the command-line examples (E05xx) run on, as their output shows it.
TINY = """\
network tiny(classes = 10) {
    input image: f32[N, 1, 8, 8]
    conv1: mlpconv([16, classes], kernel = 3, pad = 1)
    global_avgpool()
    output scores: f32[N, classes]
}
"""


def test_errors_md_is_generated_from_the_explanations():
    doc = ROOT / "docs" / "errors.md"
    assert doc.read_text(encoding="utf-8") == render_markdown(), \
        "docs/errors.md is stale: run `python -m nindsl.kernel.codes > docs/errors.md`"


def test_every_code_has_an_explanation_and_every_explanation_a_code():
    assert list(EXPLANATIONS) == list(CODES)
    for code, explanation in EXPLANATIONS.items():
        assert explanation.code == code
        assert explanation.meaning and explanation.fix
        if code in SPEC_EXAMPLES:
            assert explanation.files and explanation.console is None, f"{code} needs a spec example"
        else:
            assert explanation.console and not explanation.files, f"{code} needs a command-line example"


def test_the_markdown_has_one_section_per_code_in_order():
    text = render_markdown()
    headings = re.findall(r"^## (E\d{4}): (.+)$", text, flags=re.M)
    assert headings == list(CODES.items())
    assert text.count("```nin") == sum(len(e.files) for e in EXPLANATIONS.values())
    assert text.count("```console") == len(CONSOLE_EXAMPLES)


@pytest.mark.parametrize("code", SPEC_EXAMPLES)
def test_each_spec_example_produces_exactly_its_code(code, tmp_path):
    files = EXPLANATIONS[code].files
    for file in files:
        (tmp_path / file.name).write_bytes(file.content())
    with pytest.raises(NindslError) as caught:
        load(tmp_path / files[0].name)
    assert [d.code for d in caught.value.diagnostics] == [code], str(caught.value)


def _setup_console_example(code: str, folder) -> None:
    """The files each command-line example's `situation` describes."""
    (folder / "tiny.nin").write_text(TINY)
    if code == "E0501":
        from nindsl.weights import initial_weights

        np.savez(folder / "other.npz", **initial_weights(load(folder / "tiny.nin", {"classes": "100"})))
    elif code == "E0502":
        (folder / "model.pt").write_bytes(pickle.dumps({"conv1.0.weight": [0.0]}))
    elif code == "E0503":
        np.save(folder / "batch.npy", np.zeros((2, 3, 32, 32), np.float32))


@pytest.mark.parametrize("code", CONSOLE_EXAMPLES)
def test_each_command_line_example_prints_what_it_shows(cli, code, tmp_path):
    command, *shown = EXPLANATIONS[code].console.splitlines()
    assert command.startswith("$ nindsl ")
    _setup_console_example(code, tmp_path)
    result = cli("--color", "never", *shlex.split(command)[2:], cwd=tmp_path)
    assert result.code == 1
    assert result.err.splitlines() == shown
    assert re.findall(r"error\[(E\d{4})\]", result.err) == [code] * len(re.findall(r"error\[", result.err))


def test_explain_prints_the_explanation(cli):
    result = cli("explain", "E0203")
    assert result.code == 0
    assert result.out == render_text("E0203")
    assert result.out.startswith("E0203: declared output does not match\n")
    assert "output probs: f32[N, classes]" in result.out  # the example
    assert "Fix: " in result.out
    assert result.err == ""


def test_explain_takes_lower_case(cli):
    result = cli("explain", "e0302")
    assert result.code == 0
    assert result.out == render_text("E0302")


def test_explain_of_every_code_names_it(cli):
    for code in CODES:
        assert render_text(code).startswith(f"{code}: {CODES[code]}\n\n")


@pytest.mark.parametrize("argument, hint", [
    ("E0209", "help: did you mean `E0204`?"),
    ("e9999", "help: "),
    ("syntax", "help: the codes are E0001–E0006, E0101–E0111"),
])
def test_explain_refuses_an_unknown_code_with_a_hint(cli, argument, hint):
    result = cli("--color", "never", "explain", argument)
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(f"error[E0504]: unknown error code `{argument}`\n")
    assert hint in result.err
    assert "Traceback" not in result.err


def test_the_command_line_help_mentions_explain(cli, capsys):
    with pytest.raises(SystemExit):
        cli("--help")
    assert "nindsl explain" in capsys.readouterr().out
