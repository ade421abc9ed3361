"""Bounded work under hostile input: rendering many diagnostics splits the source once, and a
"did you mean" among thousands of names compares a bounded few (issue: "No surprises")."""

from __future__ import annotations

import difflib

import pytest

import nindsl
from nindsl.kernel import diagnostics
from nindsl.kernel.diagnostics import NindslError, Source, did_you_mean, render


def test_a_source_is_split_once_however_many_diagnostics_point_into_it():
    source = Source("x.nin", "\n".join(f"line {i}" for i in range(1000)))
    assert source.lines is source.lines  # computed once
    assert source.line(500) == "line 499" and source.line(0) == "" and source.line(5000) == ""


def test_an_error_renders_when_shown_not_when_raised(monkeypatch):
    calls = []
    monkeypatch.setattr(diagnostics, "render", lambda d, color=False: calls.append(d) or "x")
    error = NindslError.one("E0106", "unknown name `x`")
    assert calls == [] and str(error) == "x" and len(calls) == 1


def test_suggestions_among_thousands_of_names_compare_a_bounded_few(monkeypatch):
    seen = []
    real = difflib.get_close_matches
    monkeypatch.setattr(difflib, "get_close_matches", lambda word, names, **kw: seen.append(len(names)) or
                        real(word, names, **kw))
    names = [f"name_{i}" for i in range(5000)]
    assert did_you_mean("name_42x", names) is not None  # (a near name, within the bound)
    assert did_you_mean("zzz", names) is None
    assert max(seen) <= diagnostics._MANY
    assert did_you_mean("mlpcov", ["mlpconv", "conv", "maxpool"]) == "did you mean `mlpconv`?"  # few: all compared


def test_thousands_of_mistakes_are_all_reported():
    lets = "\n".join(f"let name_{i} = {i}" for i in range(2000))
    body = "\n".join(f"    dropout(nam_{i})" for i in range(2000))
    with pytest.raises(NindslError) as error:
        nindsl.check(f"{lets}\nnetwork t() {{\n    input x: f32[N, 1, 8, 8]\n{body}\n}}\n")
    assert len(error.value.diagnostics) == 2000
    assert all(render(d) for d in error.value.diagnostics[:5])
