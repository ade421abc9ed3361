"""`nindsl fmt`: canonical, idempotent, comment-preserving, and the parser's inverse."""

from __future__ import annotations

import pytest

import nindsl
from nindsl.language.fmt import format_module
from nindsl.language.parser import parse_file

from conftest import FIXTURES, SPECS

ALL_SPECS = sorted(SPECS.glob("*.nin")) + sorted((FIXTURES / "language").glob("*.nin"))
PARSEABLE = [p for p in sorted((FIXTURES / "diagnostics").glob("*.nin"))
             if p.stem not in {"unclosed_paren", "unclosed_brace", "bidi_control", "invalid_utf8", "huge_number",
                               "single_quotes"}]


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.nin")), ids=lambda p: p.name)
def test_shipped_specs_are_formatted(spec):
    module = parse_file(spec)
    assert format_module(module) == module.source.text


@pytest.mark.parametrize("spec", ALL_SPECS + PARSEABLE, ids=lambda p: p.name)
def test_round_trip_and_idempotence(spec):
    module = parse_file(spec)
    once = format_module(module)
    again = nindsl.parse(once, path=str(spec))
    assert again == module
    assert format_module(again) == once
    comments = [c.text.rstrip() for c in module.comments]
    assert [c.text.rstrip() for c in again.comments] == comments


def test_messy_text_becomes_canonical():
    messy = ("# head\nlet   x=1+2*( 3-1 )   # trailing\n\n\n\nblock b( w , k=3 ){mlpconv([w,w],kernel=k)\n"
             "  # inside\n}\nnetwork n(){input i:f32[N,1,8,8]\nb(4) repeat 2{relu()}\n\n\n global_avgpool()}\n"
             "train{epochs=3 optimizer=sgd(lr=0.1)}\n# tail\n")
    expected = """# head
let x = 1 + 2 * (3 - 1)  # trailing

block b(w, k = 3) {
    mlpconv([w, w], kernel = k)
    # inside
}

network n() {
    input i: f32[N, 1, 8, 8]
    b(4)
    repeat 2 {
        relu()
    }

    global_avgpool()
}

train {
    epochs    = 3
    optimizer = sgd(lr = 0.1)
}
# tail
"""
    assert format_module(nindsl.parse(messy)) == expected


def test_fmt_check_and_write(cli, tmp_path):
    spec = tmp_path / "x.nin"
    spec.write_text("network t(){input i:f32[N,1,8,8]}\n")
    assert cli("fmt", "--check", spec).code == 1
    assert spec.read_text() == "network t(){input i:f32[N,1,8,8]}\n"  # --check writes nothing
    assert cli("fmt", spec).code == 0
    assert spec.read_text() == "network t() {\n    input i: f32[N, 1, 8, 8]\n}\n"
    assert cli("fmt", "--check", spec).code == 0
    assert list(tmp_path.iterdir()) == [spec]  # no temporary file left behind


def test_fmt_says_how_many_files_it_found_formatted(cli, tmp_path):
    done = tmp_path / "done.nin"
    done.write_text("network t() {\n    input i: f32[N, 1, 8, 8]\n}\n")
    assert cli("fmt", "--check", done).err == "1 file already formatted\n"  # was: nothing at all
    assert cli("fmt", done).err == "1 file already formatted\n"
    messy, broken = tmp_path / "messy.nin", tmp_path / "broken.nin"
    messy.write_text("network t(){input i:f32[N,1,8,8]}\n")
    broken.write_text("network t( {\n")
    result = cli("fmt", "--check", done, messy, broken)
    assert result.code == 1 and result.err.endswith("1 file not formatted, 1 already formatted, 1 with errors (above)\n")
    result = cli("fmt", messy, done)
    assert result.code == 0 and result.err == f"formatted {messy}\n1 file formatted, 1 already formatted\n"
    assert cli("fmt", "--stdout", done).err == ""  # the text alone, for pipes


def test_fmt_of_broken_spec_changes_nothing(cli, tmp_path):
    spec = tmp_path / "x.nin"
    spec.write_text("network t( {\n")
    result = cli("fmt", spec)
    assert result.code == 1 and "error[E0001]" in result.err
    assert spec.read_text() == "network t( {\n"


def test_a_definition_without_parameters_may_leave_out_the_parentheses(cli, tmp_path):
    bare = "block b {\n    conv(2, 3)\n}\n\nnetwork t {\n    input x: f32[N, 1, 8, 8]\n    b()\n    global_avgpool()\n}\n"
    written = bare.replace("b {", "b() {").replace("t {", "t() {")
    assert nindsl.parse(bare) == nindsl.parse(written)
    assert format_module(nindsl.parse(bare)) == written  # fmt writes the canonical `()`
    spec = tmp_path / "bare.nin"
    spec.write_text(bare)
    result = cli("check", spec)
    assert result.code == 0 and "t: 2 layers" in result.out
